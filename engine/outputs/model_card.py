"""The model card (README.md) of a trained or exported model: Hub metadata, how to load it, base
model, task, its inputs (prompts, chat template, max length), data, settings, metrics, and the export
self-check (what was compared, the largest difference, pooling / normalisation / prompts in effect)."""
from __future__ import annotations

import json
import re

from engine.defaults import DEFAULT_MODEL_NAME
from engine.tasks import TASKS

LIBRARIES = {"sentence-transformers": "sentence-transformers", "pylate": "PyLate", "transformers": "transformers"}
PIPELINES = {"sentence-similarity": "sentence-similarity", "feature-extraction": "sentence-similarity",
             "text-classification": "text-classification", "token-classification": "token-classification",
             "masked-lm": "fill-mask"}
SETTINGS = ("learning_rate", "num_train_epochs", "max_steps", "batch_size", "gradient_accumulation_steps",
            "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay", "max_grad_norm", "max_length",
            "loss", "matryoshka_dims", "matryoshka_weights", "use_late_interaction", "late_interaction_dim", "seed")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def base_model_name(name: str | None) -> str | None:
    if name in (None, ""):
        return None
    return DEFAULT_MODEL_NAME if name in ("default", "all-MiniLM-L6-v2") else str(name)


def _hub_id(name: str | None) -> str | None:
    return name if name and _HUB_ID.match(name) and not name.startswith((".", "/", "~")) else None


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}".rstrip("0").rstrip(".")
    return "—" if value is None else str(value)


def _table(rows, header=("", "")) -> list[str]:
    out = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    out += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    return out


def _front_matter(fmt: str, task: str, base: str | None, record: dict) -> list[str]:
    tags = ["raclate-tuner", "mlx"]
    if fmt == "pylate":
        tags += ["ColBERT", "PyLate", "sentence-transformers", "late-interaction"]
    elif fmt == "sentence-transformers":
        tags += ["sentence-transformers", "feature-extraction"]
    lines = ["---", f"library_name: {LIBRARIES[fmt]}", f"pipeline_tag: {PIPELINES.get(task, 'feature-extraction')}"]
    if _hub_id(base):
        lines.append(f"base_model: {base}")
    data = (record.get("data") or {}).get("data")
    paths = [e["path"] for e in data] if isinstance(data, list) else [data]   # several datasets: each entry's path
    hub = [p for p in paths if _hub_id(p) and "." not in p.rsplit("/", 1)[-1]]
    if hub:
        lines += ["datasets:"] + [f"- {p}" for p in hub]
    lines += ["tags:"] + [f"- {t}" for t in tags] + ["---", ""]
    return lines


def _usage(fmt: str, task: str, name: str, cls: str = "AutoModel") -> list[str]:
    """How to load the folder; ``cls``: the transformers class that loads a transformers-format one."""
    if fmt == "sentence-transformers":
        code = ["from sentence_transformers import SentenceTransformer", "",
                f'model = SentenceTransformer("{name}")',
                'embeddings = model.encode(["The weather is lovely today.", "It is sunny outside."])',
                "print(model.similarity(embeddings, embeddings))"]
    elif fmt == "pylate":
        code = ["from pylate import models", "", f'model = models.ColBERT("{name}")',
                'queries = model.encode(["What is a light-year?"], is_query=True)',
                'documents = model.encode(["A light-year is a distance."], is_query=False)']
    else:
        code = [f"from transformers import AutoTokenizer, {cls}", "",
                f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
                f'model = {cls}.from_pretrained("{name}")']
        if task in ("text-classification", "token-classification", "masked-lm") and cls == TASKS[task].auto_class:
            pipe = {"text-classification": "text-classification", "token-classification": "token-classification",
                    "masked-lm": "fill-mask"}[task]
            code += ["", "from transformers import pipeline",
                     f'pipe = pipeline("{pipe}", model="{name}")']
    return ["## Usage", "", "```python", *code, "```", ""]


def _model_section(model, fmt: str) -> list[str]:
    info = model.info
    cfg = info.config
    rows = [("architecture", f"{cfg.get('model_type')} ({cfg.get('num_hidden_layers')} layers, hidden size "
                             f"{cfg.get('hidden_size')})"), ("task", info.task)]
    if info.colbert:
        dense = model.dense[-1].linear.weight.shape[0] if getattr(model, "dense", None) else None
        c = info.colbert
        rows += [("token vector size", dense), ("similarity", "MaxSim"), ("normalised", "yes, per token"),
                 ("query prefix / length", f"{c['query_prefix']!r} / {c['query_length']}"),
                 ("document prefix / length", f"{c['document_prefix']!r} / {c['document_length']}"),
                 ("query expansion", c["do_query_expansion"]), ("skiplist", f"{len(c['skiplist_words'])} words")]
    elif hasattr(model, "pooling") and fmt != "transformers":
        rows += [("pooling", model.pooling), ("normalised", "yes" if model.normalize else "no"),
                 ("dense layers", len(model.dense)), ("similarity", "cosine")]
    if "id2label" in cfg and info.task != "masked-lm":
        labels = [cfg["id2label"][k] for k in sorted(cfg["id2label"], key=int)]
        rows.append(("labels", ", ".join(labels[:20]) + (" …" if len(labels) > 20 else "")))
        if cfg.get("problem_type"):
            rows.append(("problem type", cfg["problem_type"]))
    return ["## Model", "", *_table(rows, ("", "")), ""]


def _inputs_section(model, fmt: str) -> list[str]:
    """What a text goes through before the model reads it, as in training (engine/data/inputs.py):
    prompts, chat template, max length."""
    info = model.info
    prompted = bool(info.prompts and any(info.prompts.values()))
    rows = []
    if prompted:
        rows.append(("prompts", json.dumps(info.prompts, ensure_ascii=False)))
        if info.default_prompt_name:
            rows.append(("default prompt", info.default_prompt_name))
    if info.use_chat_template:
        rows.append(("chat template", "yes: each text is one user message of the tokenizer's chat template"))
    if info.max_seq_length:
        rows.append(("max sequence length", info.max_seq_length))
    if not rows:
        return []
    lines = ["## Inputs", "", *_table(rows, ("", "")), ""]
    if prompted or info.use_chat_template:
        lines += ["Give the model its texts the way it was trained on them, or its outputs change.", ""]
    if prompted and fmt != "transformers":
        lines += ["sentence-transformers applies the prompts by name: `model.encode_query(texts)`, "
                  "`model.encode_document(texts)` or `model.encode(texts, prompt_name=\"query\")`.", ""]
    if info.use_chat_template:
        lines += ["It was trained with the chat template: wrap each text in it and let the template write the special "
                  "tokens (sentence-transformers and the transformers pipelines do not do this by themselves; "
                  "`raclate predict` and `raclate eval` do it for this folder):", "", "```python",
                  'text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False)',
                  'inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt")', "```", ""]
    return lines


def _training_section(record: dict) -> list[str]:
    if not record.get("training"):
        return []
    data = record.get("data") or {}
    lines = ["## Training data", ""]
    if isinstance(data.get("data"), list):   # several datasets: each batch comes from one of them
        lines.append(f"- {len(data['data'])} datasets, batches drawn {data.get('sampling', 'proportional')}, "
                     "each batch from one dataset:")
        for e in data["data"]:
            columns = ", ".join(f"{c} → {r}" for r, c in e.get("columns", {}).items() if c)
            lines.append(f"  - {e['name']}: `{e['path']}`" + (f"; columns {columns}" if columns else "")
                         + (f"; loss {e['loss']}" if e.get("loss") else "")
                         + (f"; validation `{e['eval_data']}`" if e.get("eval_data") else ""))
    elif data.get("data"):
        lines.append(f"- data: `{data['data']}`" + (f" (subset {data['subset']})" if data.get("subset") else ""))
    if data.get("eval_data"):
        lines.append(f"- validation data: `{data['eval_data']}`")
    elif data.get("validation_split"):
        lines.append(f"- validation: {data['validation_split']:.0%} of the rows held out (seed {data.get('seed')})")
    mapped = {r: c for r, c in (data.get("columns") or {}).items() if c}   # None: a role left unmapped
    if mapped:
        lines.append("- columns: " + ", ".join(f"{c} → {r}" for r, c in mapped.items()))
    fingerprints = {k: v for k, v in (record.get("data_fingerprints") or {}).items() if v}
    if fingerprints:
        lines.append("- fingerprints: " + ", ".join(f"{k} `{v}`" for k, v in fingerprints.items()))
    lines.append("")
    training = record.get("training") or {}
    always = ("learning_rate", "batch_size", "seed")
    rows = [(k, training[k]) for k in SETTINGS
            if k in training and (k in always or training[k] not in (None, 0, -1))]
    if record.get("final_step") is not None:
        rows.append(("steps trained", record["final_step"]))
    lines += ["## Training settings", "", *_table(rows, ("setting", "value")), ""]
    return lines


def _metrics_section(record: dict) -> list[str]:
    metrics = {k: v for k, v in (record.get("metrics") or {}).items() if isinstance(v, (int, float))}
    if not metrics:
        return []
    return ["## Metrics", "", "On the validation split at the end of training:", "",
            *_table(metrics.items(), ("metric", "value")), ""]


def _check_section(check: dict | None) -> list[str]:
    if not check:
        return []
    lines = ["## Export check", "",
             f"After writing this folder it was loaded again with **{check['reference']}** and its outputs "
             f"compared with the live MLX model on {check['rows']} texts: "
             f"{'**passed**' if check['ok'] else '**FAILED**'}.", ""]
    rows = [("compared", check["compared"]), ("max abs difference", check["max_abs_diff"])]
    if check.get("min_cosine") is not None:
        rows.append(("min cosine", f"{check['min_cosine']:.6f}"))
    rows.append(("tolerance", check["tolerance"]))
    for key in ("pooling", "normalize", "prompts"):
        if key in check:
            value = check[key]
            rows.append((key, json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value))
    return lines + _table(rows, ("", "")) + [""]


def render_card(model, fmt: str, record: dict | None = None, check: dict | None = None,
                name: str | None = None) -> str:
    """README.md text for a folder in format ``fmt`` (sentence-transformers | pylate | transformers)."""
    record = record or {}
    task = model.info.task
    base = base_model_name(record.get("model") or model.info.source)
    title = name or "Fine-tuned model"
    lines = _front_matter(fmt, task, base, record)
    lines += [f"# {title}", ""]
    what = "a late-interaction (ColBERT) model" if model.info.colbert else f"a {task} model"
    origin = f"fine-tuned from `{base}`" if record.get("training") else f"exported from `{base}`"
    lines += [f"This is {what}, {origin} with RACLATE Tuner (MLX). It loads with "
              f"{LIBRARIES[fmt]} as is, no custom code.", ""]
    lines += _usage(fmt, task, name or "path/to/this/folder", model.info.family.SPEC.auto_class(task))
    lines += _model_section(model, fmt)
    lines += _inputs_section(model, fmt)
    lines += _training_section(record)
    lines += _metrics_section(record)
    lines += _check_section(check)
    versions = record.get("versions") or {}
    if versions:
        lines += ["## Reproducing", "", "`raclate_run.json` holds the full configuration, data fingerprints, seed "
                  "and final metrics. Library versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()
                                                                      if k != "platform") + ".", ""]
    return "\n".join(lines)
