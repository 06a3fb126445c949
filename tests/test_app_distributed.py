"""The Distributed section (raclate_app/widgets/distributed.py): launcher options from the host list,
SSH checks off the GUI thread, and a TrainingSupervisor run through `raclate launch -n 2` whose
rank-0 events arrive as the usual signals."""
import json
import sys
import time

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from raclate_app.widgets.distributed import DistributedSection, launch_command, use_launcher  # noqa: E402

pytestmark = pytest.mark.gui

FAKE_SSH = """#!/bin/bash
# ssh -o BatchMode=yes -o ConnectTimeout=N HOST CMD
host="$5"
sleep 0.3
case "$host" in
  good) exit 0 ;;
  nopython) exit 1 ;;
  *) echo "ssh: connect to host $host port 22: Connection refused" >&2; exit 255 ;;
esac
"""


@pytest.fixture
def fake_ssh(tmp_path):
    path = tmp_path / "ssh"
    path.write_text(FAKE_SSH)
    path.chmod(0o755)
    return str(path)


def test_launch_args_follow_the_settings(qtbot):
    section = DistributedSection(python="/venv/bin/python")
    qtbot.addWidget(section)
    assert section.launch_args() is None                         # off: one process, as before
    section.setChecked(True)
    assert section.launch_args() is None                         # nothing to distribute over yet
    section.processes.setValue(2)
    assert section.launch_args() == ["-n", "2"]                  # two processes on this machine
    section.hosts_edit.setText("mac-a=10.10.0.1, mac-b")
    section.processes.setValue(1)
    assert section.launch_args() == ["--hosts", "mac-a=10.10.0.1,mac-b", "--python", "/venv/bin/python"]
    values = section.values()
    other = DistributedSection()
    qtbot.addWidget(other)
    other.set_values(values)
    assert other.values() == values and other.isChecked()


def test_check_hosts_runs_off_the_gui_thread(qtbot, fake_ssh, tmp_path):
    section = DistributedSection(python=sys.executable, ssh=(fake_ssh,))
    qtbot.addWidget(section)
    section.setChecked(True)
    section.hosts_edit.setText("good, nopython, down, 127.0.0.1")
    started = time.perf_counter()
    with qtbot.waitSignal(section.hosts_checked, timeout=20_000) as blocker:
        section.check()
        assert time.perf_counter() - started < 0.1 and not section.check_button.isEnabled()
    results = {r["host"]: r for r in blocker.args[0]}
    assert results["good"]["ok"] and results["127.0.0.1"]["ok"]
    assert not results["nopython"]["ok"] and "missing there" in results["nopython"]["message"]
    assert not results["down"]["ok"] and "Connection refused" in results["down"]["message"]
    text = section.status.text()
    assert "✓ good" in text and "✗ down" in text and section.check_button.isEnabled()
    section.grab().save(str(tmp_path / "distributed.png"))


def test_the_supervisor_starts_its_child_through_the_launcher(tmp_path):
    from raclate_app.supervisor import TrainingSupervisor
    sup = TrainingSupervisor(tmp_path / "run.json")
    plain = sup.command()
    use_launcher(sup, ["-n", "2"])
    at = plain.index("train")
    assert sup.command() == [*plain[:at], "launch", "-n", "2", "--", *plain[at:]]
    assert plain[at - 2:at] == ["-m", "engine.cli"]


@pytest.mark.slow
def test_a_supervised_run_on_two_local_processes(qtbot, tmp_path, tmp_path_factory):
    """Events from rank 0 drive the same signals as a one-process run."""
    from raclate_app.supervisor import TrainingSupervisor
    from tests.trainer_helpers import sentiment_rows, tiny_bert_dir
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "label": ["neg", "pos"][r["label"]]}) + "\n"
                            for r in sentiment_rows(48)))
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "model": str(tiny_bert_dir(tmp_path_factory)), "task": "text-classification", "data": {"data": str(data)},
        "training": {"output_dir": str(tmp_path / "out"), "batch_size": 4, "max_steps": 6, "logging_steps": 1,
                     "save_steps": 0, "max_length": 32, "learning_rate": 1e-3}}))
    sup = TrainingSupervisor(config, nice=0)
    use_launcher(sup, ["-n", "2"])
    steps, started, finished, failed, log = [], [], [], [], []
    sup.step_logged.connect(steps.append)
    sup.run_started.connect(started.append)
    sup.run_finished.connect(finished.append)
    sup.run_failed.connect(failed.append)
    sup.log_received.connect(log.append)
    sup.start()
    try:   # a failed rank ends the run too: wait for either, so a failure shows its message and log
        qtbot.waitUntil(lambda: bool(finished or failed), timeout=240_000)
    finally:
        if not (finished or failed):
            sup.request_kill()
        sup.wait(30_000)
    assert not failed and finished, (failed, log[-40:])
    assert started[0]["world_size"] == 2 and [s["step"] for s in steps] == list(range(1, 7))
    assert (tmp_path / "out" / "model.safetensors").exists()
