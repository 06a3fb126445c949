"""`make run`: the app with the demo dataset where there is a display, else the headless demo."""
from __future__ import annotations

import os
import sys


def has_display() -> bool:
    if sys.platform == "darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main() -> int:
    if has_display() and os.environ.get("RACLATE_HEADLESS") != "1":
        try:
            from raclate_app.main import main as app_main
        except ImportError:
            app_main = None
        if app_main is not None:
            return app_main(["--demo"])
    from engine.demo import main as demo_main
    return demo_main([])


if __name__ == "__main__":
    sys.exit(main())
