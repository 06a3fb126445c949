"""What the Model page knows about a model before loading it: its config.json, parameter count and
the preset settings for its architecture. Qt-free and cheap (no weights are read)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from engine.defaults import resolve_model_name
from engine.models import family_specs, spec_for
from engine.models.loading import find_config, local_model_dir, safetensors_parameters
from engine.models.memory import formula_parameters


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


HUB_TIMEOUT_S = 6   # one metadata request; offline it fails at once (no name resolution)
# Any of these lets AutoTokenizer load a folder (fast tokenizer, its config, or a vocabulary file).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")


@dataclass
class ModelCheck:
    """Whether training can start from what the model box holds, checked before the page says ready."""
    name: str
    where: str                           # "built in", "folder", "cache" (HF cache), "hub" (downloaded at Start) or ""
    summary: ModelSummary | None = None
    problem: str | None = None           # why Start would fail, with what to do instead; None: it would not


def looks_like_path(name: str) -> bool:
    """A folder rather than a Hub id (owner/name): starts like a path or has more than one slash."""
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1) or name.count("/") > 1


def check_model(name: str) -> ModelCheck:
    """Check a model box entry without downloading weights: 'default', a local folder (config.json and
    safetensors weights), or a Hub id (in the local Hugging Face cache, else asked of the Hub)."""
    name = name.strip() or "default"
    try:
        embedded = resolve_model_name(name) != name
    except FileNotFoundError as exc:   # the embedded model's package is missing
        return ModelCheck(name, "built in", problem=str(exc))
    if embedded:
        return _local(name, "built in")
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            return ModelCheck(name, "", problem=f"There is no folder {name}. Choose the folder that holds "
                              "config.json, or type a Hub id such as BAAI/bge-small-en-v1.5.")
        return _local(name, "folder")
    # huggingface_hub only for a Hub id: the app does not import it at start-up
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id
    try:
        validate_repo_id(name)
    except HFValidationError:
        return ModelCheck(name, "", problem=f"“{name}” is neither a folder nor a Hub id (owner/name such as "
                          "BAAI/bge-small-en-v1.5).")
    summary = summarize(name)
    if summary is not None and summary.config and _has(summary, "*.safetensors"):
        return _local(name, "cache", summary)
    return _from_hub(name)


def _local(name: str, where: str, summary: ModelSummary | None = None) -> ModelCheck:
    summary = summary or summarize(name)
    if summary is None or not summary.config:
        folder = summary.folder if summary else name
        return ModelCheck(name, where, summary, f"{folder} has no config.json: choose the folder that holds it.")
    if spec_for(summary.model_type) is None:
        return ModelCheck(name, where, summary, _unsupported(summary))
    if not _has(summary, "*.safetensors"):
        return ModelCheck(name, where, summary, f"{summary.folder} has no .safetensors weights: choose a folder "
                          "with model.safetensors (pickled .bin weights are not loaded).")
    if not any(_has(summary, f) for f in TOKENIZER_FILES):
        return ModelCheck(name, where, summary, f"{summary.folder} has no tokenizer (tokenizer.json or "
                          "tokenizer_config.json): choose the folder the model was saved to with its tokenizer.")
    return ModelCheck(name, where, summary)


def _unsupported(summary: ModelSummary) -> str:
    families = ", ".join(s.name for s in family_specs().values())
    return f"{summary.family_name} models cannot be trained here; the families that can: {families}."


def _has(summary: ModelSummary, pattern: str) -> bool:
    """A file matching ``pattern`` next to config.json or at the top (a sentence-transformers folder)."""
    config = find_config(summary.folder)
    folders = {summary.folder, config.parent if config else summary.folder}
    return any(next(folder.glob(pattern), None) for folder in folders)


def _from_hub(name: str) -> ModelCheck:
    """A Hub id that is not (fully) in the cache: ask the Hub whether it exists, and read its config.json."""
    offline = (f"{name} is not on this machine and there is no internet to get it from the Hugging Face Hub: "
               "download it first, or choose a model folder.")
    from huggingface_hub import constants, hf_hub_download, model_info
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    if constants.HF_HUB_OFFLINE:
        return ModelCheck(name, "", problem=offline)
    try:
        info = model_info(name, timeout=HUB_TIMEOUT_S)
        hf_hub_download(name, "config.json")   # a few KB, for the preset and the memory estimate
    except GatedRepoError:
        return ModelCheck(name, "", problem=f"{name} is gated on the Hugging Face Hub: accept its terms on its "
                          "page and log in (huggingface-cli login), or choose a model folder.")
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return ModelCheck(name, "", problem=f"There is no model {name} on the Hugging Face Hub (or it is private): "
                          "check the id, or choose a model folder.")
    except EntryNotFoundError:
        return ModelCheck(name, "", problem=f"{name} on the Hugging Face Hub has no config.json: it is not a "
                          "transformers model.")
    except Exception:  # noqa: BLE001 — no name resolution, refused connection, timeout: offline
        return ModelCheck(name, "", problem=offline)
    summary = summarize(name)
    if summary is not None and getattr(info, "safetensors", None) and info.safetensors.total:
        summary.parameters = info.safetensors.total   # the real count; the cache holds no weights yet
    if summary is not None and summary.config and spec_for(summary.model_type) is None:
        return ModelCheck(name, "hub", summary, _unsupported(summary))
    return ModelCheck(name, "hub", summary)
