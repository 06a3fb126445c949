"""What the Model page knows about a model before loading it: its config.json, parameter count and
the preset settings for its architecture. Qt-free and cheap (no weights are read)."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.models import spec_for
from engine.models.loading import find_config, local_model_dir


@dataclass
class ModelSummary:
    name: str                  # what the user typed: "default", a folder or a Hub id
    folder: Path | None        # where config.json was found (None: not local / not cached)
    config: dict
    parameters: int | None

    @property
    def model_type(self) -> str:
        spec = spec_for(self.config.get("model_type", ""))
        return spec.model_type if spec else self.config.get("model_type", "")

    @property
    def family_name(self) -> str:
        """What the app calls the architecture ("Gemma 3"); the raw model_type when unsupported."""
        spec = spec_for(self.model_type)
        return spec.name if spec else self.model_type or "unknown architecture"

    @property
    def preset(self) -> dict | None:
        spec = spec_for(self.model_type)
        return dict(spec.presets) if spec else None

    def describe(self) -> str:
        c = self.config
        parts = [self.family_name]
        if self.parameters:
            parts.append(f"{self.parameters / 1e6:.1f}M parameters")
        if c.get("num_hidden_layers"):
            parts.append(f"{c['num_hidden_layers']} layers")
        if c.get("hidden_size"):
            parts.append(f"hidden size {c['hidden_size']}")
        if c.get("max_position_embeddings"):
            parts.append(f"up to {c['max_position_embeddings']} tokens")
        return " · ".join(parts)


def safetensors_parameters(folder: Path) -> int | None:
    """Sum of tensor sizes from the safetensors headers (8-byte length + JSON); no weights are read."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for f in files:
            with open(f, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
            for key, value in header.items():
                if key != "__metadata__":
                    n = 1
                    for d in value.get("shape", []):
                        n *= d
                    total += n
    except (OSError, ValueError, struct.error):
        return None
    return total


def formula_parameters(config: dict) -> int | None:
    """Rough count from config sizes when there are no weights to read."""
    h, n = config.get("hidden_size"), config.get("num_hidden_layers")
    if not h or not n:
        return None
    inter = config.get("intermediate_size") or 4 * h
    vocab = config.get("vocab_size") or 0
    pos = config.get("max_position_embeddings") or 0 if config.get("model_type") == "bert" else 0
    return vocab * h + pos * h + n * (4 * h * h + 2 * h * inter + 6 * h)


def summarize(name: str) -> ModelSummary | None:
    """config.json + parameter count of a local (or Hub-cached) model; None when it is not on disk."""
    folder = local_model_dir(name)
    if folder is None:
        return None
    config_file = find_config(folder)
    if config_file is None:
        return ModelSummary(name, folder, {}, None)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    params = safetensors_parameters(config_file.parent) or formula_parameters(config)
    return ModelSummary(name, folder, config, params)
