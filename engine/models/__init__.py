"""Model registry and `load_model`.

A family is one module in this package named after the HF ``model_type``. It provides: ``SPEC``
(its `FamilySpec`: names, aliases, HF architectures, pooling, presets, key prefixes), ``ModelArgs.
from_config(config)``, ``Model`` (backbone → hidden states, ``.layers``, ``.grad_checkpoint``),
``TASK_MODELS`` {task: build(args, num_labels) → task model}, ``configure(config, **overrides)``,
``sanitize(weights)`` (HF → ours), ``to_hf(weights, config)`` and ``DROPOUT_KEYS`` (the config keys
of its dropout probabilities, engine/models/dropout.py); optionally ``task_error``.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from engine.errors import ModelError
from engine.models.base import ModelInfo, TaskModel, normalize_task
from engine.tasks import EMBEDDING_TASKS
from engine.models import memory, pylate
from engine.models.heads import Dense, EmbeddingModel, LateInteractionModel
from engine.models.peft_format import adapter_labels, load_adapter
from engine.models.loading import (adapter_base, find_config, local_model_dir, read_config, read_json,
                                   read_sentence_transformers, read_weights, resolve_model_dir,
                                   safetensors_parameters)
from engine.models.spec import FamilySpec

REMOTE_CODE_KEYS = ("auto_map", "trust_remote_code")
TOKENIZER_CLASS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*Tokenizer(Fast)?")
FAMILIES = ("bert", "modernbert", "qwen3", "gemma3_text", "t5gemma", "lfm2")  # module = model_type

__all__ = ["load_model", "get_family", "supported_model_types", "family_specs", "spec_for", "preset_for",
           "local_config", "task_refusal", "FamilySpec", "ModelError", "TaskModel"]


def family_specs() -> dict[str, FamilySpec]:
    """{model_type: FamilySpec} of every family, in FAMILIES order."""
    return {name: importlib.import_module(f"engine.models.{name}").SPEC for name in FAMILIES}


def spec_for(model_type: str) -> FamilySpec | None:
    """The spec of a ``model_type`` or one of its aliases (``embeddinggemma`` → gemma3_text)."""
    return next((s for s in family_specs().values() if model_type == s.model_type or model_type in s.aliases),
                None)


def supported_model_types() -> list[str]:
    specs = family_specs().values()
    return [s.model_type for s in specs] + [a for s in specs for a in s.aliases]


def get_family(model_type: str):
    spec = spec_for(model_type)
    if spec is None:
        raise ModelError(f"Model type {model_type!r} is not supported. Supported model types: "
                         f"{', '.join(supported_model_types())}.")
    return importlib.import_module(f"engine.models.{spec.model_type}")


def local_config(model_name_or_dir: str) -> dict:
    """config.json of a local folder, ``"default"`` or a Hub id already in the cache (no weights, no
    network); {} when it is not on this machine or cannot be read."""
    folder = local_model_dir(str(model_name_or_dir))
    config_file = find_config(folder) if folder is not None else None
    try:
        config = read_json(config_file) if config_file is not None else {}
    except (OSError, ValueError, ModelError):
        return {}
    return config if isinstance(config, dict) else {}


def preset_for(model_name_or_dir: str) -> dict:
    """The family preset (batch_size, learning_rate, max_length) of a local folder, ``"default"`` or
    a Hub id already in the cache, with max_length capped at the model's max_position_embeddings.
    Reads config.json only (no weights, no network); {} when it is not on this machine or its
    architecture is not supported."""
    config = local_config(model_name_or_dir)
    spec = spec_for(config.get("model_type", ""))
    if spec is None:
        return {}
    preset = dict(spec.presets)
    if isinstance(config.get("max_position_embeddings"), int):
        preset["max_length"] = min(preset["max_length"], config["max_position_embeddings"])
    return preset


def task_refusal(model_type: str, task: str) -> str | None:
    """Why ``task`` may not be trained (or exported) on this family: its head has no transformers
    class, so the output would load nowhere but here. None when it may (or the family is unknown:
    the loader says so)."""
    spec = spec_for(model_type)
    task = normalize_task(task)
    if spec is None or task not in spec.no_transformers_class:
        return None
    others = [s.model_type for s in family_specs().values() if task in s.exportable_tasks]
    works = spec.exportable_tasks
    return (f"{spec.name} has no {task} class in transformers {_transformers_version()}, so the trained model "
            f"could not be loaded outside this app. Train {spec.name} for "
            f"{', '.join(works[:-1])} or {works[-1]}, or pick a family that supports {task}: {', '.join(others)}.")


def _transformers_version() -> str:
    try:   # the installed version only: importing transformers costs seconds
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def load_model(path_or_id: str, task: str = "feature-extraction", *, num_labels: int | None = None,
               id2label=None, is_regression: bool | None = None, is_multi_label: bool | None = None,
               use_late_interaction: bool | None = None,
               late_interaction_dim: int = 128, pooling: str | None = None, normalize: bool | None = None,
               bidirectional: bool | None = None, dropout: float | None = None, revision: str | None = None,
               training: dict | None = None):
    """Load a checkpoint (folder, Hub id, or ``"default"``) for ``task`` → ``(model, tokenizer)``.

    ``bidirectional`` overrides the attention direction of families that have the switch (Gemma3).
    ``dropout`` sets every dropout probability of the family (its ``DROPOUT_KEYS``) in the config, so
    a saved folder says what was trained (None: the config's own). The model comes back in eval mode
    (dropout off), as transformers' from_pretrained; the Trainer switches to train mode for its steps.
    ``is_multi_label`` makes a classifier multi-label (config ``problem_type``; None with no labels
    given: the checkpoint's own).
    ``use_late_interaction=None`` means: a ColBERT model when the folder is a PyLate one. A
    late-interaction model follows PyLate's conventions (engine/models/pylate.py): its tokenizer
    gains the [Q]/[D] prefix tokens and pads on the right.
    A head the checkpoint lacks (e.g. a classifier on a base model) is initialised fresh and listed
    in ``model.info.new_weights``.
    Before anything is built, config.json's sizes are checked and the memory the model needs (with
    ``training``, `engine.models.memory.estimate`'s keyword arguments, a training step's) is compared
    with this machine's: a model that cannot fit is refused (engine/models/memory.py).
    The configs the model and tokenizer carry (and save) lose ``auto_map``: the engine runs no remote
    code, so an output must not point at modules it does not hold.
    A PEFT adapter folder (adapter_config.json) loads its base model, then the adapter on it
    (engine/models/peft_format.py `load_adapter`): its layers train, the rest stays frozen.
    """
    task = normalize_task(task)
    root = resolve_model_dir(path_or_id, revision)
    base = adapter_base(root)
    if base is not None:
        model, tokenizer = load_model(
            base, task, num_labels=num_labels or (None if id2label else adapter_labels(root, task)),
            id2label=id2label, is_regression=is_regression, is_multi_label=is_multi_label,
            use_late_interaction=use_late_interaction, late_interaction_dim=late_interaction_dim, pooling=pooling,
            normalize=normalize, bidirectional=bidirectional, dropout=dropout, training=training)
        load_adapter(model, root)
        return model, tokenizer
    st = read_sentence_transformers(root)
    if use_late_interaction is None:
        use_late_interaction = task in EMBEDDING_TASKS and pylate.is_pylate_dir(root)
    model_dir = root / st.get("transformer_path", "")
    config = read_config(model_dir)
    family = get_family(config["model_type"])
    memory.check_config(config, model_dir / "config.json")
    config = family.configure(without_remote_code(config), bidirectional=bidirectional, dropout=dropout)
    memory.check_fits(config, model_dir / "config.json", safetensors_parameters(model_dir), training)
    args = family.ModelArgs.from_config(config)

    if task in EMBEDDING_TASKS:
        backbone = family.Model(args)
        dense = [Dense(**_dense_kwargs(cfg, root)) for cfg, _ in st.get("dense", [])]
        for layer, (_, weights) in zip(dense, st.get("dense", [])):
            layer.load_weights(list(weights.items()))
        if use_late_interaction:
            model = LateInteractionModel(backbone, args.hidden_size, late_interaction_dim, dense=dense or None)
        else:
            mode = pooling or st.get("pooling") or family.SPEC.default_pooling
            norm = normalize if normalize is not None else (st.get("normalize", False) if st else True)
            model = EmbeddingModel(backbone, mode, dense, norm)
        target, heads_may_be_new = model.backbone, False
    else:
        if task not in family.TASK_MODELS:
            raise ModelError(family.task_error(task, config) if hasattr(family, "task_error") else
                             f"{config['model_type']} models do not support the {task} task.")
        config = _label_config(config, task, num_labels, id2label, is_regression, is_multi_label)
        model = family.TASK_MODELS[task](args, len(config.get("id2label", {})) or 1)
        target, heads_may_be_new = model, True

    weights, files = read_weights(model_dir)
    new = _assign_weights(target, family.sanitize(weights), family, heads_may_be_new, model_dir, args)
    if task in EMBEDDING_TASKS and "pooler" in backbone:
        backbone.pooler.freeze()  # kept so saved folders load in transformers without warnings; unused
    model.info = ModelInfo(family=family, config=config, args=args, task=task, source=str(path_or_id),
                           prompts=st.get("prompts", {}), default_prompt_name=st.get("default_prompt_name"),
                           max_seq_length=st.get("max_seq_length"), st_modules=st.get("extra", []),
                           late_interaction=bool(use_late_interaction), new_weights=new)
    tokenizer = _load_tokenizer(model_dir, family)
    if use_late_interaction and task in EMBEDDING_TASKS:
        tokenizer = pylate.prepare(model, tokenizer, pylate.read_colbert_config(root))
    mx.eval(model.parameters())
    model.eval()
    return model, tokenizer


def _dense_kwargs(cfg: dict, root: Path) -> dict:
    """A Dense module's config.json → ``Dense`` arguments (PyLate adds ``use_residual``)."""
    cfg = dict(cfg)
    if cfg.pop("use_residual", False):
        raise ModelError(f"{root} has a PyLate Dense layer with use_residual=true, which this tool does not "
                         "implement; use a checkpoint without the residual projection.")
    return cfg


def _label_config(config, task, num_labels, id2label, is_regression, is_multi_label=None) -> dict:
    """id2label / label2id / problem_type for classification heads, as transformers writes them."""
    if task == "masked-lm":
        return config
    if is_regression:
        id2label = {0: "score"}
    elif id2label is not None:
        id2label = dict(enumerate(id2label)) if isinstance(id2label, (list, tuple)) else id2label
    elif num_labels:
        id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    else:  # a fine-tuned checkpoint's own labels, or transformers' default of two
        id2label = config.get("id2label") or {0: "LABEL_0", 1: "LABEL_1"}
        is_regression = config.get("problem_type") == "regression"
        if is_multi_label is None:
            is_multi_label = config.get("problem_type") == "multi_label_classification"
    id2label = {int(k): str(v) for k, v in id2label.items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise ModelError(f"id2label keys must be 0..N-1, got {sorted(id2label)}.")
    config = dict(config, id2label={str(k): v for k, v in id2label.items()},
                  label2id={v: k for k, v in id2label.items()})
    config.pop("num_labels", None)
    if task == "text-classification":
        config["problem_type"] = ("regression" if is_regression else "multi_label_classification" if is_multi_label
                                  else "single_label_classification")
    return config


def _assign_weights(target, weights: dict, family, heads_may_be_new: bool, where: Path, args) -> list[str]:
    """Strict loading: every backbone weight must be present with the right shape; a task head
    (``heads_may_be_new``) or a ``spec.optional_keys`` weight the checkpoint lacks is initialised
    fresh; keys of other tasks' heads are skipped; anything else is an error."""
    expected = dict(tree_flatten(target.parameters()))
    spec = family.SPEC
    base = spec.base_prefix + "."
    loaded, unexpected = {}, []
    for key, value in weights.items():
        bare = key[len(base):] if key.startswith(base) else key
        name = next((c for c in (key, bare, base + key) if c in expected), None)
        if name is None:
            if not bare.startswith(spec.ignored_keys):
                unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ModelError(f"Weight {key} in {where} has shape {tuple(value.shape)} but the config "
                             f"asks for {tuple(expected[name].shape)}. config.json and the weights do not "
                             "belong together; re-export the checkpoint or fix config.json.")
        loaded[name] = value.astype(expected[name].dtype)
    if unexpected:
        raise ModelError(f"{where} has weights this {spec.model_type} model does not "
                         f"expect: {', '.join(sorted(unexpected)[:8])}{' …' if len(unexpected) > 8 else ''}. "
                         "Is config.json from a different architecture?")
    missing = [k for k in expected if k not in loaded]
    backbone_missing = [k for k in missing if not (heads_may_be_new and not k.startswith(base))
                        and not k.removeprefix(base).startswith(spec.optional_keys)]
    if backbone_missing:
        raise ModelError(f"{where} lacks weights the model needs: {', '.join(backbone_missing[:8])}"
                         f"{' …' if len(backbone_missing) > 8 else ''}. The checkpoint is incomplete or "
                         "belongs to another architecture.")
    std = getattr(args, "initializer_range", 0.02)
    for k in missing:  # a new task head
        shape, dtype = expected[k].shape, expected[k].dtype
        if k.endswith("bias"):
            loaded[k] = mx.zeros(shape, dtype)
        elif len(shape) == 1:
            loaded[k] = mx.ones(shape, dtype)
        else:
            loaded[k] = (mx.random.normal(shape) * std).astype(dtype)
    target.update(tree_unflatten(list(loaded.items())))
    return missing


def without_remote_code(config: dict) -> dict:
    """``config`` without the keys that point transformers at code shipped beside a checkpoint."""
    return {k: v for k, v in config.items() if k not in REMOTE_CODE_KEYS}


def _tokenizer_class(model_dir: Path):
    """The class tokenizer_config.json (else config.json, as AutoTokenizer reads them) names, when
    transformers has it: loading through it skips AutoTokenizer's config machinery, which imports
    torch (~190 MB of a training process's memory). Only a tokenizer class may be named: any other
    class (``AutoModel``) would load whatever it loads, pickled weights included."""
    import transformers
    for path in (model_dir / "tokenizer_config.json", model_dir / "config.json"):
        try:
            name = json.loads(path.read_text(encoding="utf-8")).get("tokenizer_class")
        except (OSError, ValueError, AttributeError):
            continue
        if name is None:
            continue
        if not (isinstance(name, str) and TOKENIZER_CLASS.fullmatch(name) and hasattr(transformers, name)):
            raise ModelError(f"{path}: tokenizer_class {name!r} is not a tokenizer class of transformers "
                             "(a name ending in Tokenizer or TokenizerFast, such as BertTokenizerFast). "
                             "Fix the field or restore the file from the original checkpoint.")
        try:
            cls = getattr(transformers, name)
        except (ImportError, RuntimeError):   # its optional dependency is missing: AutoTokenizer's way
            return None
        return cls if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedTokenizerBase) else None
    return None


def _load_tokenizer(model_dir: Path, family):
    cls = _tokenizer_class(model_dir)
    try:
        try:
            tokenizer = cls.from_pretrained(str(model_dir)) if cls is not None else None
        except Exception:  # anything unusual: AutoTokenizer's way
            tokenizer = None
        if tokenizer is None:
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as exc:
        raise ModelError(f"Could not load the tokenizer from {model_dir} ({type(exc).__name__}: {exc}). "
                         "The folder needs tokenizer.json or the tokenizer files of its model.") from None
    for key in REMOTE_CODE_KEYS:   # else save_pretrained writes them into the output's tokenizer_config.json
        tokenizer.init_kwargs.pop(key, None)
    if family.SPEC.padding_side:
        tokenizer.padding_side = family.SPEC.padding_side
    return tokenizer
