"""Issue 17, app: every run started from the app left a `raclate-run-*` folder with its run.json in the
temp dir (13 after one afternoon); the folder now goes when the run ends, however it ends."""
import json

import pytest

from raclate_app.supervisor import TrainingSupervisor
from tests.test_app_support import app_settings, window  # noqa: F401

pytestmark = pytest.mark.gui

EVENT = {"event": "finished", "output_dir": "", "metrics": {}, "stopped_early": False}


@pytest.mark.parametrize("child", [f"echo '{json.dumps(EVENT)}'", "echo boom >&2; exit 3"])
def test_the_run_config_folder_goes_when_the_run_ends(qtbot, window, tmp_path, monkeypatch, child):
    # the child reads its --config, then ends (finished, or crashed)
    monkeypatch.setattr(TrainingSupervisor, "command",
                        lambda self: ["/bin/sh", "-c", f'test -s "{self.config_path}" && {child}'])
    train = window.pages["train"]
    config = {"model": "default", "training": {"output_dir": str(tmp_path / "out")}}
    assert train.start_config(config, tmp_path / "out")
    folder = train.config_path.parent
    assert folder.name.startswith("raclate-run-") and json.loads(train.config_path.read_text()) == config
    qtbot.waitUntil(lambda: not train.running, timeout=30_000)
    assert train.result is not None and bool(train.result.get("failed")) == ("exit 3" in child)
    assert not folder.exists()
    assert train.last_config == config   # what diagnostics report stays in memory
