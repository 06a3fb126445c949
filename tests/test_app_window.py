"""Main window: page flow, menus and shortcuts, remembered geometry and recent files (versioned
QSettings keys holding values), Help → Copy diagnostics, the icon, palette-aware colours, the
entry points (`main --demo`, each page runnable alone)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_app_support import app_settings, screenshots, shot, wait_checked, wait_idle, window  # noqa: F401

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parent.parent


def test_pages_in_flow_order_and_next_buttons(qtbot, window, screenshots):
    from raclate_app.pages import PAGES
    assert [s.key for s in PAGES] == ["data", "model", "train", "evaluate", "playground", "runs"]
    assert [window.sidebar.item(i).text().split()[1] for i in range(6)] == ["Data", "Model", "Train", "Evaluate",
                                                                          "Playground", "Runs"]
    assert window.current_page_key() == "data"
    for key in ("data", "model", "train"):
        window.go_to(key)
        shot(window, screenshots, f"window_empty_{key}")
    window.go_to("data")
    # before any data, Next on the Data and Model & Task pages leads nowhere useful
    assert not window.pages["data"].next_button.isEnabled() and not window.pages["model"].next_button.isEnabled()
    window.load_demo()
    qtbot.waitUntil(lambda: window.project.preview is not None, timeout=20_000)
    window.pages["data"].next_button.click()
    assert window.current_page_key() == "model"
    window.pages["model"].next_button.click()
    assert window.current_page_key() == "train"
    window.go_to("evaluate")
    window.pages["evaluate"].next_button.click()
    assert window.current_page_key() == "playground"
    window.pages["playground"].next_button.click()
    assert window.current_page_key() == "runs"
    assert window.statusBar().isVisible() and window.status_label.text()
    wait_idle(qtbot, window.project)


def test_menus_have_the_usual_shortcuts(window):
    from PySide6.QtGui import QKeySequence
    assert window.open_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Open)
    assert window.open_action.shortcut().toString() == "Ctrl+O"
    assert window.quit_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Quit)
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert list(menus) == ["File", "Training", "View", "Help"]
    view = {a.text(): a.shortcut().toString() for a in menus["View"].actions()}
    assert view == {"Data": "Ctrl+1", "Model & Task": "Ctrl+2", "Train": "Ctrl+3", "Evaluate": "Ctrl+4",
                    "Playground": "Ctrl+5", "Runs": "Ctrl+6"}
    assert any(a.text() == "&Export Model…" and a.shortcut().toString() == "Ctrl+E" for a in menus["File"].actions())
    assert any("Diagnostics" in a.text() for a in menus["Help"].actions())
    assert not window.windowIcon().isNull()


def test_geometry_page_and_recent_files_are_remembered(qtbot, app_settings, tmp_path):
    from raclate_app.window import MainWindow
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\n' * 3)
    first = MainWindow(settings=app_settings)
    qtbot.addWidget(first)
    first.show()
    first.resize(first.minimumSizeHint())   # small enough for the offscreen screen (800×800), not the default
    first.project.open_source(str(data))
    qtbot.waitUntil(lambda: first.project.preview is not None, timeout=10_000)
    first.go_to("model")
    wait_idle(qtbot, first.project)
    size = first.size()
    assert first.close()
    q = app_settings.q
    keys = q.allKeys()
    assert all(k.startswith("v1/") for k in keys), keys
    assert q.value("v1/window/page") == "model"                       # a value, not an index
    assert json.loads(q.value("v1/recent/files")) == [str(data.resolve())]
    assert q.value("v1/task/last") in (None, "sentence-similarity") and q.value("v1/model/last") in (None, "default")
    second = MainWindow(settings=app_settings)
    qtbot.addWidget(second)
    assert q.value("v1/window/geometry") is not None and second.size() == size
    assert second.current_page_key() == "model"
    second.fill_recent_menu()
    assert [a.text() for a in second.recent_menu.actions()][0] == "pairs.jsonl"
    second.recent_menu.actions()[0].trigger()
    qtbot.waitUntil(lambda: second.project.preview is not None, timeout=10_000)
    assert second.current_page_key() == "data"
    wait_idle(qtbot, second.project)


def test_copy_diagnostics(qtbot, window):
    from PySide6.QtGui import QGuiApplication
    window.load_demo()
    wait_checked(qtbot, window.project)
    text = window.copy_diagnostics()
    assert QGuiApplication.clipboard().text() == text
    for part in ("## Versions", "transformers", "PySide6", "## Machine", "## Run config", '"task": "sentence-similarity"',
                 "demo/commands", "## Log"):
        assert part in text, part


def test_main_demo_builds_a_ready_window(qtbot, app_settings, monkeypatch):
    from raclate_app import main as main_module
    from raclate_app.window import MainWindow
    monkeypatch.setattr("raclate_app.window.AppSettings", lambda: app_settings)
    args = main_module.parse_args(["--demo"])
    win = main_module.build_window(args)
    qtbot.addWidget(win)
    assert isinstance(win, MainWindow)
    qtbot.waitUntil(lambda: win.project.preview is not None, timeout=20_000)
    wait_checked(qtbot, win.project)
    assert win.project.blocking_problem() is None and win.pages["train"].start_button.isEnabled()


@pytest.mark.parametrize("page", ["data", "model", "train"])
def test_each_page_runs_alone(page, tmp_path, screenshots):
    out = screenshots / f"alone_{page}.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path), HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", f"raclate_app.pages.{page}", "--screenshot", str(out)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.exists() and out.stat().st_size > 10_000
    print(f"screenshot: {out}")


def test_icon_svg_and_png(qtbot):
    from PySide6.QtGui import QImage

    from raclate_app.icon import PNG, SVG, render_png
    assert SVG.exists() and PNG.exists()
    image = QImage(str(render_png(png=Path(qtbot._request.node.name + ".png").absolute(), size=64)))
    try:
        assert image.width() == 64 and image.pixelColor(32, 32).alpha() == 255 and image.pixelColor(0, 0).alpha() == 0
    finally:
        Path(qtbot._request.node.name + ".png").unlink(missing_ok=True)


def test_role_colours_are_readable_in_light_and_dark(qtbot):
    from PySide6.QtGui import QColor, QPalette

    from raclate_app import theme

    def luminance(c: QColor) -> float:
        def ch(v):
            v /= 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * ch(c.red()) + 0.7152 * ch(c.green()) + 0.0722 * ch(c.blue())

    def contrast(a, b) -> float:
        la, lb = sorted((luminance(a), luminance(b)), reverse=True)
        return (la + 0.05) / (lb + 0.05)

    for base, text in (("#ffffff", "#000000"), ("#1e1e1e", "#f0f0f0")):
        pal = QPalette()
        pal.setColor(QPalette.ColorRole.Base, QColor(base))
        pal.setColor(QPalette.ColorRole.Text, QColor(text))
        for role in theme.ROLE_HUES:
            assert contrast(theme.role_color(role, pal), QColor(text)) >= 4.5, (base, role)
        for level in ("ok", "tight", "over"):
            assert contrast(theme.status_color(level, pal), QColor(base)) >= 3.0, (base, level)
    assert theme.role_color("ignore") is None


def test_pyside_612_refcount_bug_is_neutralised(qapp):
    """PySide6 6.12 on Python < 3.12 releases True once per signal emit and None once per slot
    return; without raclate_app's guard, a few hundred emits can abort the interpreter."""
    import raclate_app
    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        fired = Signal(bool)

    emitter = Emitter()
    emitter.fired.connect(lambda _on: None)
    for _ in range(20_000):
        emitter.fired.emit(True)
    if raclate_app.SINGLETONS_IMMORTALIZED:
        assert sys.getrefcount(True) > 1 << 39 and sys.getrefcount(None) > 1 << 39
