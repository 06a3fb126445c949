"""Finding and reading checkpoints: local folder or Hub id, config.json, safetensors shards,
and the sentence-transformers files (modules.json, pooling, Dense, prompts)."""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import mlx.core as mx

from engine.defaults import resolve_model_name
from engine.errors import ModelError
from engine.models.peft_format import PEFT_CONFIG, read_adapter_config


def resolve_model_dir(path_or_id: str, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a Hub id fetched (or found in the cache) by huggingface_hub."""
    name = resolve_model_name(str(path_or_id))
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path} is a file; pass the model folder that holds config.json.")
        return path
    looks_local = name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1) \
        or name.count("/") > 1
    if looks_local:
        raise ModelError(f"Model folder {name} does not exist. Check the path, or pass a Hub id "
                         "such as 'sentence-transformers/all-MiniLM-L6-v2', or 'default' for the embedded model.")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(name, revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                      "*/*.json", "*/*.safetensors", "README.md"]))
    except Exception as exc:  # offline, unknown repo, gated repo, ...
        raise ModelError(
            f"Could not get model {name!r} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no details'}). If you are offline, download it "
            f"first on a connected machine (`huggingface-cli download {name}`) or pass a local folder; "
            "'default' uses the embedded all-MiniLM-L6-v2.") from None


def local_model_dir(name: str) -> Path | None:
    """The folder for ``name`` without touching the network: 'default', a path, or a cached Hub id."""
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


def adapter_base(folder: Path, download: bool = True) -> str | None:
    """The base model of a PEFT adapter folder, as `load_model` takes it: its adapter_config.json's
    base_model_name_or_path (a folder, 'default', or a Hub id from the cache or else, with ``download``,
    the Hub), or that folder relative to the adapter's. None when ``folder`` is not an adapter folder
    (or, without ``download``, its base is not on this machine)."""
    config_file = Path(folder) / PEFT_CONFIG
    if (Path(folder) / "config.json").exists() or not config_file.is_file():
        return None
    base = read_json(config_file).get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{config_file} names no base model (base_model_name_or_path). Set it to the folder or Hub "
                         "id of the model the adapter was trained on.")
    for candidate in (base, str(Path(folder) / base)):
        if local_model_dir(candidate) is not None:
            return candidate
    if not download:
        return None
    try:
        resolve_model_dir(base)
    except ModelError as exc:
        raise ModelError(f"The base model of the adapter in {folder}, {base!r} (base_model_name_or_path in "
                         f"{config_file}), cannot be found: {exc} Edit that key to point at the base model's "
                         "folder.") from None
    return base


def adapter_settings(name: str) -> dict:
    """The adapter settings (TrainingArgs fields) a run started from a PEFT adapter folder continues with,
    so that it records and saves itself as a LoRA run; {} for any other model."""
    folder = local_model_dir(str(name))
    config = read_adapter_config(folder) if folder is not None and not (folder / "config.json").exists() else None
    if not config:
        return {}
    return {"lora_rank": int(config.get("r") or 8), "lora_alpha": float(config.get("lora_alpha", 8)),
            "lora_dropout": float(config.get("lora_dropout") or 0), "dora": bool(config.get("use_dora"))}


def find_config(folder: Path) -> Path | None:
    """config.json of a model folder: at the top, in a sentence-transformers module folder, or (an adapter
    folder) its base model's; None when there is none or an adapter's base is not on this machine."""
    if (folder / "config.json").exists():
        return folder / "config.json"
    if (folder / PEFT_CONFIG).is_file():
        try:
            base = adapter_base(folder, download=False)
        except ModelError:
            return None
        return find_config(local_model_dir(base)) if base is not None else None
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


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}). "
                         "Restore the file from the original checkpoint.") from None


def read_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.exists():
        raise ModelError(f"{model_dir} has no config.json, so it is not a Hugging Face model folder. "
                         "Pass the folder that holds config.json and model.safetensors.")
    config = read_json(path)
    if "model_type" not in config:
        raise ModelError(f"{path} has no 'model_type' key; cannot tell which architecture it is.")
    return config


def read_weights(model_dir: Path) -> tuple[dict, list[Path]]:
    """All tensors of model.safetensors or its shards → {name: mx.array}. Refuses pickles."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        pickles = [p.name for p in model_dir.glob("*.bin")] + [p.name for p in model_dir.glob("*.pt*")]
        if pickles:
            raise ModelError(
                f"{model_dir} has only PyTorch pickle weights ({', '.join(sorted(pickles))}). Pickles can run "
                "arbitrary code, so only safetensors are loaded. Convert once with transformers: "
                "`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`.")
        raise ModelError(f"{model_dir} has no model.safetensors. Pass a folder with safetensors weights.")
    weights: dict = {}
    for f in files:
        try:
            weights.update(mx.load(str(f)))
        except Exception as exc:
            raise ModelError(f"{f} could not be read as safetensors ({exc}). The file is damaged or "
                             "incomplete; download or copy it again.") from None
    return weights, files


def safetensors_parameters(folder: Path) -> int | None:
    """Parameters in a folder's safetensors files, from their headers alone (8-byte length + JSON):
    no weight is read. None without safetensors files or when a header is damaged."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for f in files:
            with open(f, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(min(size, 100 * 2 ** 20)))   # a damaged length must not read GBs
            total += sum(math.prod(v.get("shape", [])) for k, v in header.items() if k != "__metadata__")
    except (OSError, ValueError, TypeError, AttributeError, struct.error):
        return None
    return total


def read_sentence_transformers(model_dir: Path) -> dict:
    """modules.json & co → {'transformer_path', 'pooling', 'dense': [(cfg, weights)], 'normalize',
    'prompts', 'default_prompt_name', 'max_seq_length', 'extra'} (empty dict when not an ST model)."""
    modules_file = model_dir / "modules.json"
    if not modules_file.exists():
        return {}
    out = {"transformer_path": "", "pooling": None, "dense": [], "normalize": False, "extra": []}
    for module in read_json(modules_file):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        sub = model_dir / module.get("path", "")
        if kind == "Transformer":
            out["transformer_path"] = module.get("path", "")
            cfg_file = sub / "sentence_bert_config.json"
            if cfg_file.exists():
                out["max_seq_length"] = read_json(cfg_file).get("max_seq_length")
        elif kind == "Pooling":
            out["pooling"] = pooling_mode(read_json(sub / "config.json"), sub)
        elif kind == "Dense":
            cfg = read_json(sub / "config.json")
            weights, _ = read_weights(sub)
            out["dense"].append((cfg, weights))
        elif kind == "Normalize":
            out["normalize"] = True
        else:
            out["extra"].append(module)
    st_cfg = model_dir / "config_sentence_transformers.json"
    if st_cfg.exists():
        cfg = read_json(st_cfg)
        out["prompts"] = {k: v for k, v in (cfg.get("prompts") or {}).items()}
        out["default_prompt_name"] = cfg.get("default_prompt_name")
    return out


def pooling_mode(cfg: dict, where: Path) -> str:
    if cfg.get("pooling_mode") in ("mean", "cls", "max", "lasttoken"):
        return cfg["pooling_mode"]
    for key, mode in (("pooling_mode_lasttoken", "lasttoken"), ("pooling_mode_cls_token", "cls"),
                      ("pooling_mode_max_tokens", "max"), ("pooling_mode_mean_tokens", "mean")):
        if cfg.get(key):
            return mode
    raise ModelError(f"{where}/config.json asks for a pooling this tool does not implement ({cfg}); "
                     "supported: mean, cls, max, lasttoken.")
