"""What the Model page knows about a model before loading it: its config.json, parameter count and
the preset settings for its architecture. Qt-free and cheap (no weights are read)."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

# Starting points per HF model_type: batch size, peak learning rate, max length. Encoders train
# with larger batches and rates than the decoder families.
PRESETS: dict[str, dict] = {
    "bert": {"batch_size": 32, "learning_rate": 5e-5, "max_length": 256},
    "modernbert": {"batch_size": 16, "learning_rate": 8e-5, "max_length": 512},
    "qwen3": {"batch_size": 8, "learning_rate": 2e-5, "max_length": 512},
    "gemma3_text": {"batch_size": 8, "learning_rate": 2e-5, "max_length": 512},
    "t5gemma": {"batch_size": 8, "learning_rate": 3e-5, "max_length": 512},
    "lfm2": {"batch_size": 8, "learning_rate": 2e-5, "max_length": 512},
}
ALIASES = {"gemma3": "gemma3_text", "embeddinggemma": "gemma3_text"}
FAMILY_NAMES = {"bert": "BERT", "modernbert": "ModernBERT", "qwen3": "Qwen3", "gemma3_text": "Gemma 3",
                "t5gemma": "T5Gemma", "lfm2": "LFM2"}


@dataclass
class ModelSummary:
    name: str                  # what the user typed: "default", a folder or a Hub id
    folder: Path | None        # where config.json was found (None: not local / not cached)
    config: dict
    parameters: int | None

    @property
    def model_type(self) -> str:
        return ALIASES.get(self.config.get("model_type", ""), self.config.get("model_type", ""))

    @property
    def preset(self) -> dict | None:
        return PRESETS.get(self.model_type)

    def describe(self) -> str:
        c = self.config
        parts = [FAMILY_NAMES.get(self.model_type, self.model_type or "unknown architecture")]
        if self.parameters:
            parts.append(f"{self.parameters / 1e6:.1f}M parameters")
        if c.get("num_hidden_layers"):
            parts.append(f"{c['num_hidden_layers']} layers")
        if c.get("hidden_size"):
            parts.append(f"hidden size {c['hidden_size']}")
        if c.get("max_position_embeddings"):
            parts.append(f"up to {c['max_position_embeddings']} tokens")
        return " · ".join(parts)


def find_config(folder: Path) -> Path | None:
    """config.json of a model folder: at the top, or in a sentence-transformers module folder."""
    if (folder / "config.json").exists():
        return folder / "config.json"
    modules = folder / "modules.json"
    if modules.exists():
        try:
            for module in json.loads(modules.read_text()):
                if module.get("type", "").endswith("Transformer"):
                    candidate = folder / module.get("path", "") / "config.json"
                    if candidate.exists():
                        return candidate
        except (OSError, ValueError):
            return None
    return None


def local_folder(name: str) -> Path | None:
    """The folder for ``name`` without touching the network: 'default', a path, or a cached Hub id."""
    from engine.defaults import resolve_model_name
    try:
        resolved = resolve_model_name(name)
    except FileNotFoundError:
        return None
    path = Path(resolved).expanduser()
    if path.is_dir():
        return path
    if "/" in name and not name.startswith((".", "/", "~")):
        try:
            from huggingface_hub import try_to_load_from_cache
            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # noqa: BLE001 — a malformed id
            return None
        if isinstance(cached, str):
            return Path(cached).parent
    return None


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
    folder = local_folder(name)
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
