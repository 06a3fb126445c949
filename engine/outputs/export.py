"""Export: write a model folder that its task's library loads with no custom code, reload it there
and compare outputs with the live MLX model (a mismatch is an error), write the model card, and
optionally push it to the Hub.

    sentence similarity (dense)  → sentence-transformers  SentenceTransformer(out)
    late interaction             → pylate                 pylate.models.ColBERT(out)
    classification / regression / token classification / masked LM
                                 → transformers           AutoModelFor…from_pretrained(out)
    any model, bare encoder      → transformers           AutoModel.from_pretrained(out)
    BERT/ModernBERT/Gemma3/Qwen3 embeddings / classifier → onnx
                                                          onnxruntime.InferenceSession(out/onnx/model.onnx)
                                                          (engine/outputs/onnx.py; the library files beside it)
    BERT/ModernBERT/EmbeddingGemma embeddings → gguf      llama.cpp (out/model.gguf; engine/outputs/gguf.py)
    a LoRA/DoRA run's checkpoint → peft                   PeftModel.from_pretrained(Auto…(base), out)
                                                          (the adapter alone; engine/outputs/peft_adapter.py)
    BERT/ModernBERT/Qwen3 embeddings → mlx                mlx_embeddings.load(out) (engine/outputs/mlx_export.py)
    BERT/ModernBERT embeddings / classifier → coreml      ct.models.MLModel(out/model.mlpackage)
                                                          (engine/outputs/coreml.py)

The self-check uses the reference library when it (and torch) is installed, else the engine's own
loader; the report says which, and the largest difference seen.
"""
from __future__ import annotations

import contextlib
import importlib.util
import shutil
from functools import partial
from pathlib import Path

import numpy as np

import mlx.core as mx

from engine.data.inputs import tokenize_texts
from engine.models.heads import EmbeddingModel, LateInteractionModel
from engine.errors import ExportError
from engine.files import atomic_write, is_inside, lock_holder, sibling, swap_folder, write_json
from engine.inference import load_for_task
from engine.models import task_refusal
from engine.outputs import coreml
from engine.outputs import gguf as gguf_export
from engine.outputs import mlx_export
from engine.outputs import onnx as onnx_export
from engine.outputs import peft_adapter
from engine.run_record import RUN_FILE, is_run_folder, write_run_record

FORMATS = ("sentence-transformers", "pylate", "transformers", "onnx", "gguf", "peft", "mlx", "coreml")
# Formats for another runtime: each module has missing(), refusal(model, quantize), write(...), check(...),
# card_section(...) and WITH_LIBRARY_FILES (the folder also holds the task library's files).
RUNTIMES = {"onnx": onnx_export, "gguf": gguf_export, "peft": peft_adapter, "mlx": mlx_export,
            "coreml": coreml}
QUANTIZE = ("int8", "int4", "f16", "q8_0")   # every runtime's --quantize names; each refusal() says which it takes
COSINE_MIN = 0.9999     # embeddings: per row (per token for late interaction)
LOGITS_ATOL = 1e-4      # logits: |Δ| ≤ 1e-4 · max(1, largest |logit|)
SAMPLE_TEXTS = ("What is the capital of France?",
                "Fine-tuning adapts a pretrained model to one task, using a much smaller dataset; it's quick!",
                "The quick brown fox jumps over the lazy dog.",
                "ok")


# -- what a folder holds ------------------------------------------------------------------------
def default_format(model) -> str:
    if isinstance(model, LateInteractionModel):
        return "pylate"
    return "sentence-transformers" if isinstance(model, EmbeddingModel) else "transformers"


# -- writing ------------------------------------------------------------------------------------
def check_format(model, fmt: str, quantize: str | None = None) -> str:
    fmt = {"st": "sentence-transformers", "sentence_transformers": "sentence-transformers",
           "colbert": "pylate", "hf": "transformers"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}.", f"Use one of: {', '.join(FORMATS)}.", refused=True)
    if fmt in RUNTIMES:
        refusal = RUNTIMES[fmt].refusal(model, quantize)
        if refusal:
            raise ExportError(refusal, "Export it as --format " + default_format(model) + " instead.", refused=True)
        return fmt
    if quantize:
        raise ExportError(f"--quantize applies to {', '.join(RUNTIMES)} exports, not to {fmt}.",
                          "Leave out --quantize.", refused=True)
    natural = default_format(model)
    if fmt != natural and fmt != "transformers":
        what = {"pylate": "a late-interaction (ColBERT) model", "sentence-transformers": "a dense embedding model",
                "transformers": f"a {model.info.task} model"}[natural]
        raise ExportError(f"This is {what}; it cannot be written in the {fmt} format.",
                          f"Use --format {natural} (or --format transformers for the bare encoder / HF head).",
                          refused=True)
    refusal = None if natural != "transformers" else task_refusal(model.info.config["model_type"], model.info.task)
    if refusal:
        raise ExportError(refusal, "This model still works here: raclate predict and raclate eval load it.",
                          refused=True)
    return fmt


def format_choices(source: str, task: str | None = None) -> dict[str, dict]:
    """What ``export_model(source, fmt=…, quantize=…)`` would take, before any work (the app's Export
    dialog offers it): per format, ``refused`` (the engine's message, or None) and the ``quantize``
    names its runtime takes for this model."""
    model, _tokenizer, _task, _record = load_for_task(source, task)
    choices = {}
    for fmt in FORMATS:
        runtime = RUNTIMES.get(fmt)
        try:
            if runtime and runtime.missing():
                raise ExportError(runtime.missing() + ".", "Install it, then export again.", refused=True)
            check_format(model, fmt)
        except ExportError as exc:
            choices[fmt] = {"refused": " ".join(filter(None, (str(exc), exc.hint))), "quantize": []}
            continue
        choices[fmt] = {"refused": None, "quantize": [q for q in QUANTIZE if runtime and not runtime.refusal(model, q)]}
    return choices


def complete_config(model, tokenizer) -> None:
    """transformers' last-token classifiers find the last real token by ``pad_token_id``: make sure
    the config names the tokenizer's pad token."""
    config = model.info.config
    if config.get("pad_token_id") is None and tokenizer.pad_token_id is not None and \
            model.info.task == "text-classification":
        config["pad_token_id"] = int(tokenizer.pad_token_id)


def write_folder(model, tokenizer, out: Path, fmt: str) -> None:
    """config.json, model.safetensors, tokenizer files and the format's own files into ``out``."""
    from engine.models.saving import hf_weights, write_safetensors
    out = Path(out)
    complete_config(model, tokenizer)
    if fmt == "transformers" and isinstance(model, (EmbeddingModel, LateInteractionModel)):
        weights, arch = hf_weights(model)  # the bare encoder: AutoModel
        config = dict(model.info.config, architectures=[arch], dtype="float32")
        config.pop("torch_dtype", None)
        write_json(out / "config.json", config)
        write_safetensors(out / "model.safetensors", weights)
    else:
        model.save_pretrained(out)
    tokenizer.save_pretrained(str(out))


# -- the self-check -----------------------------------------------------------------------------
def _installed(*names) -> bool:
    """Importable, not just present: a library that fails to import (e.g. PyLate with a
    sentence-transformers it does not support) leaves the check to the engine's loader."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            return False
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 — any import-time failure means "not usable here"
            return False
    return True


def _version(name: str) -> str:
    import importlib.metadata as md
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def _compare_vectors(ours, theirs, what: str) -> dict:
    """Rows (or per-text token matrices) → max |Δ|, min cosine; a shape mismatch fails."""
    diffs, cosines = [], []
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != b.shape:
            return {"compared": what, "max_abs_diff": float("inf"), "min_cosine": -1.0,
                    "detail": f"shapes differ: {a.shape} here vs {b.shape} in the reference"}
        diffs.append(float(np.abs(a - b).max()) if a.size else 0.0)
        cosines.append(float(_cosines(a, b).min()) if a.size else 1.0)
    return {"compared": what, "max_abs_diff": max(diffs), "min_cosine": min(cosines)}


def _prompt_modes(info) -> list[tuple[str, dict, str, dict]]:
    """Each way sentence-transformers puts a prompt before texts, as (name, our encode() keywords, its
    method, its keywords): none asked (the default prompt), queries, documents, each named prompt."""
    modes = [("no prompt given", {}, "encode", {}), ("queries", {"is_query": True}, "encode_query", {}),
             ("documents", {"is_query": False}, "encode_document", {})]
    return modes + [(f"prompt {name!r}", {"prompt_name": name}, "encode", {"prompt_name": name})
                    for name in info.prompts or {}]


def _check_sentence_transformers(model, tokenizer, out: Path, texts) -> dict:
    from engine.inference import encode
    modes = _prompt_modes(model.info)
    if _installed("torch", "sentence_transformers"):
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Normalize, Pooling
        st = SentenceTransformer(str(out), device="cpu", local_files_only=True)
        theirs = [getattr(st, method)(list(texts), convert_to_numpy=True, **kw) for _, _, method, kw in modes]
        pooling = next((m.get_pooling_mode_str() for m in st if isinstance(m, Pooling)), None)
        report = {"reference": f"sentence-transformers {_version('sentence-transformers')}", "pooling": pooling,
                  "normalize": any(isinstance(m, Normalize) for m in st), "prompts": dict(st.prompts),
                  "default_prompt_name": st.default_prompt_name}
    else:
        from engine.models import load_model
        again, tok2 = load_model(str(out), model.info.task)
        theirs = [encode(again, tok2, texts, **kw) for _, kw, _, _ in modes]
        report = {"reference": "engine loader (sentence-transformers not installed)", "pooling": again.pooling,
                  "normalize": again.normalize, "prompts": dict(again.info.prompts),
                  "default_prompt_name": again.info.default_prompt_name}
    # sentence-transformers applies no chat template: compare the texts as it reads them (the card says to wrap them)
    parts = [_compare_vectors(encode(model, tokenizer, texts, use_chat_template=False, **kw), ref, name)
             for (name, kw, _, _), ref in zip(modes, theirs)]
    report.update(compared="sentence embeddings (" + ", ".join(p["compared"] for p in parts) + ")",
                  max_abs_diff=max(p["max_abs_diff"] for p in parts), min_cosine=min(p["min_cosine"] for p in parts))
    details = [f"{p['compared']}: {p['detail']}" for p in parts if "detail" in p]
    if details:
        report["detail"] = "; ".join(details)
    report["ok"] = report["min_cosine"] >= COSINE_MIN
    report["tolerance"] = f"cosine ≥ {COSINE_MIN}"
    if report["pooling"] != model.pooling and not (report["pooling"] or "").startswith(model.pooling):
        report["ok"], report["detail"] = False, f"pooling {report['pooling']} there vs {model.pooling} here"
    return report


def _check_pylate(model, tokenizer, out: Path, texts) -> dict:
    from engine.inference import encode
    if _installed("torch", "pylate"):
        from pylate import models
        ref = models.ColBERT(str(out), device="cpu")
        run = lambda is_query: ref.encode(list(texts), is_query=is_query)  # noqa: E731
        report = {"reference": f"pylate {_version('pylate')}"}
    else:
        from engine.models import load_model
        again, tok2 = load_model(str(out), "sentence-similarity", use_late_interaction=True)
        run = lambda is_query: encode(again, tok2, texts, is_query=is_query)  # noqa: E731
        report = {"reference": "engine loader (pylate not installed)"}
    parts = [_compare_vectors(encode(model, tokenizer, texts, is_query=q), run(q), kind)
             for q, kind in ((True, "query"), (False, "document"))]
    report.update(compared="query and document token vectors",
                  max_abs_diff=max(p["max_abs_diff"] for p in parts), min_cosine=min(p["min_cosine"] for p in parts),
                  tolerance=f"cosine ≥ {COSINE_MIN} per token", pooling="none (one vector per token)",
                  normalize="per token", prompts=dict(model.info.prompts), colbert=dict(model.info.colbert))
    details = [p["detail"] for p in parts if "detail" in p]
    if details:
        report["detail"] = "; ".join(details)
    report["ok"] = report["min_cosine"] >= COSINE_MIN
    return report


def _check_transformers(model, tokenizer, out: Path, texts) -> dict:
    task = model.info.task
    from engine.inference import max_length_of
    limit = min(128, max_length_of(model, tokenizer))
    template = {"use_chat_template": model.info.use_chat_template, "max_length": limit}   # as in training
    embedding = isinstance(model, (EmbeddingModel, LateInteractionModel))
    # A classifier reads pairs too: the second text's token type (BERT) must count the same on both sides.
    inputs = [(list(texts),)] + ([(list(texts), list(texts)[::-1])] if task == "text-classification" else [])
    keys = ("input_ids", "attention_mask") + (("token_type_ids",) if getattr(model, "token_types", False) else ())
    if _installed("torch"):
        import torch
        import transformers
        from transformers import AutoTokenizer
        cls = getattr(transformers, model.info.family.SPEC.auto_class(task))   # embeddings: the bare encoder
        ref = cls.from_pretrained(str(out), dtype=torch.float32).eval()
        saved_tokenizer = AutoTokenizer.from_pretrained(str(out))

        def reference(arrays):
            with torch.no_grad():
                res = ref(**{k: torch.tensor(v, dtype=torch.long) for k, v in arrays.items()})
            return (res.last_hidden_state if embedding else res.logits).float().numpy()
        report = {"reference": f"transformers {_version('transformers')} ({cls.__name__})"}
    else:
        from engine.models import load_model
        again, saved_tokenizer = load_model(str(out), task, use_late_interaction=False)
        reference = partial(_engine_outputs, again, embedding)
        report = {"reference": "engine loader (torch not installed)"}
    diff, scale, same_tokens = 0.0, 1.0, True
    for args in inputs:
        enc = tokenize_texts(tokenizer, *args, padding=True, return_tensors="np", **template)
        arrays = {k: enc[k].astype(np.int32) for k in keys if k in enc}
        ids, mask = arrays["input_ids"], arrays["attention_mask"]
        ours, theirs = _engine_outputs(model, embedding, arrays), reference(arrays)
        saved_ids = tokenize_texts(saved_tokenizer, *args, **template)["input_ids"]
        same_tokens &= [list(map(int, r[m > 0])) for r, m in zip(ids, mask)] == [list(map(int, r)) for r in saved_ids]
        if ours.shape != theirs.shape:
            diff = float("inf")
            continue
        sel = (mask > 0) if ours.ndim == 3 else slice(None)  # token-level outputs: real positions only
        diff = max(diff, float(np.abs(ours[sel] - theirs[sel]).max()))
        scale = max(scale, float(np.abs(theirs[sel]).max()))
    tol = LOGITS_ATOL * scale
    compared = "hidden states" if embedding else "logits" + (" (texts and pairs)" if len(inputs) > 1 else "")
    report.update(compared=compared, max_abs_diff=diff, min_cosine=None, tolerance=f"|Δ| ≤ {tol:.2g}",
                  ok=diff <= tol and same_tokens)
    if not same_tokens:
        report["detail"] = "the saved tokenizer gives other token ids than the live one"
    if "id2label" in model.info.config and task != "masked-lm":
        report["labels"] = [model.info.config["id2label"][k] for k in sorted(model.info.config["id2label"], key=int)]
        report["problem_type"] = model.info.config.get("problem_type")
    return report


def _engine_outputs(model, embedding: bool, arrays: dict) -> np.ndarray:
    """Hidden states (embedding models: the bare encoder) or the head's outputs, as float32 numpy."""
    fn = model.hidden_states if embedding else model
    return np.array(fn(*(mx.array(v) for v in arrays.values())).astype(mx.float32))


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading weights" progress bars from transformers while the reference model loads."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def self_check(model, tokenizer, out, fmt: str, texts=None, quantize: str | None = None) -> dict:
    """Reload ``out`` in its library (or the engine; another format: its runtime) and compare with
    ``model`` on a few texts.
    Returns the report ({reference, compared, rows, max_abs_diff, min_cosine, tolerance, ok, ...});
    it does not raise — the caller writes the result, then fails on ``ok == False``."""
    texts = [t for t in (texts or SAMPLE_TEXTS) if str(t).strip()][:8] or list(SAMPLE_TEXTS)
    model.eval()
    check = {"sentence-transformers": _check_sentence_transformers, "pylate": _check_pylate,
             "transformers": _check_transformers}.get(fmt)
    if fmt in RUNTIMES:
        check = partial(RUNTIMES[fmt].check, quantize=quantize)
    try:
        with _quiet_loading():
            report = check(model, tokenizer, Path(out), texts)
    except Exception as exc:  # noqa: BLE001 — a folder its library cannot load fails the check
        first = str(exc).splitlines()[0] if str(exc) else ""
        report = {"reference": {"sentence-transformers": "sentence-transformers", "pylate": "pylate",
                                "onnx": "onnxruntime", "gguf": "gguf", "peft": "peft",
                                "mlx": "mlx-embeddings", "coreml": "coremltools"}.get(fmt, "transformers"), "compared": "loading the folder", "max_abs_diff": float("inf"),
                  "min_cosine": None, "tolerance": "loads", "ok": False,
                  "detail": f"it does not load: {type(exc).__name__}: {first}"}
    report.update(format=fmt, rows=len(texts))
    return report


def check_failed(report: dict, out, kept: bool = False) -> ExportError:
    hint = ("The earlier folder there was kept as it was; nothing was replaced. Please report this with --debug output."
            if kept else "The folder was written but does not reproduce this model. Please report it with --debug output.")
    return ExportError(
        f"Export self-check failed for {out}: reloaded with {report['reference']}, {report['compared']} differ "
        f"(max |Δ| = {report['max_abs_diff']:.3g}" + (f", min cosine {report['min_cosine']:.6f}"
                                                      if report.get("min_cosine") is not None else "")
        + f"; needs {report['tolerance']})" + (f": {report['detail']}" if report.get("detail") else "") + ".", hint)


def summary(report: dict) -> str:
    """One line for people: the check's result."""
    cos = f", min cosine {report['min_cosine']:.6f}" if report.get("min_cosine") is not None else ""
    state = "ok" if report["ok"] else "FAILED"
    return (f"self-check {state}: {report['compared']} via {report['reference']} on {report['rows']} texts, "
            f"max |Δ| {report['max_abs_diff']:.2e}{cos}")


# -- the two entry points -----------------------------------------------------------------------
def write_card(model, out: Path, fmt: str, record: dict, check: dict, name: str | None = None) -> None:
    from engine.outputs.model_card import render_card
    if fmt in RUNTIMES:   # the library's card (when its files are there), then how to run the runtime's files
        runtime = RUNTIMES[fmt]
        text = (render_card(model, default_format(model), record, check, name=name) if runtime.WITH_LIBRARY_FILES
                else f"# {name or 'Exported model'}\n")
        text += "\n\n" + "\n".join(runtime.card_section(model, check, name or "path/to/this/folder"))
    else:
        text = render_card(model, fmt, record, check, name=name)
    atomic_write(Path(out) / "README.md", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def finish_output(model, tokenizer, out, record: dict, training_args=None) -> dict:
    """End of a training run (after the model and raclate_run.json are written): self-check, model
    card, the check in raclate_run.json, then the Hub push when asked. Raises on a mismatch."""
    out = Path(out)
    fmt = default_format(model)
    if model.info.config.get("pad_token_id") is None:
        complete_config(model, tokenizer)
        if model.info.config.get("pad_token_id") is not None:
            model.save_pretrained(out)
    report = self_check(model, tokenizer, out, fmt)
    hub_id = getattr(training_args, "hub_model_id", None) if getattr(training_args, "push_to_hub", False) else None
    write_card(model, out, fmt, record, report, name=hub_id or out.name)
    record["export"] = report
    write_run_record(out, record)
    if not report["ok"]:
        raise check_failed(report, out)
    if hub_id:
        from engine.outputs.hub import push_folder
        record["hub"] = push_folder(out, hub_id, private=bool(getattr(training_args, "hub_private", False)))
        write_run_record(out, record)
    return report


def check_export_target(source: str, out: Path, overwrite: bool) -> None:
    """Refuse, before any work, a --to that would lose something: a non-empty folder without
    --overwrite, a folder this program did not write (no raclate_run.json), or the model being read
    (or a folder holding it)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is a file; nothing was written.", "Choose a new folder for --to.", refused=True)
    holder = lock_holder(out)
    if holder:
        raise ExportError(f"{out} is being written by a training run ({holder}); nothing was written.",
                          "Wait for the run to end, or choose another --to folder.", refused=True)
    from engine.models.loading import resolve_model_dir
    src = Path(source).expanduser()
    src = src if src.exists() else resolve_model_dir(source)
    if is_inside(src, out):
        raise ExportError(f"{out} holds the model being exported ({src}); nothing was written.",
                          "Choose another --to folder.", refused=True)
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ExportError(f"{out} already exists and is not empty; nothing was written.",
                          "Choose a new folder, or pass --overwrite to replace an earlier export or run there.", refused=True)
    if not is_run_folder(out):
        raise ExportError(f"{out} was not written by RACLATE (it has no {RUN_FILE}); nothing was deleted.",
                          "--overwrite only replaces an earlier export or run. Choose a new folder for --to.", refused=True)


def export_model(source: str, to, *, fmt: str | None = None, task: str | None = None,
                 push_to_hub: str | None = None, private: bool = False, overwrite: bool = False,
                 texts=None, quantize: str | None = None) -> dict:
    """Load ``source``, write it to ``to`` in ``fmt`` (default: the task's own library), self-check,
    card, copy of raclate_run.json with the export added, optional push. Returns the report.

    The folder is written beside ``to`` and renamed into place when complete, so an existing export
    that ``overwrite`` replaces stays whole until then, and a failed check never replaces it."""
    out = Path(to).expanduser()
    runtime = RUNTIMES.get(fmt)
    if runtime and runtime.missing():
        raise ExportError(runtime.missing() + "; nothing was written.", "Install it, then export again.", refused=True)
    token = None
    if push_to_hub:
        from engine.outputs.hub import check_push
        token = check_push(push_to_hub)  # before any work
    check_export_target(source, out, overwrite)
    model, tokenizer, task, record = load_for_task(source, task)
    fmt = check_format(model, fmt or default_format(model), quantize)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = sibling(out, "new")
    try:
        if not runtime or runtime.WITH_LIBRARY_FILES:
            write_folder(model, tokenizer, staging, default_format(model) if runtime else fmt)
        if runtime:
            runtime.write(model, tokenizer, staging, quantize)
        report = self_check(model, tokenizer, staging, fmt, texts, quantize)
        record = dict(record) if record else {"model": source, "task": task}
        record.update(exported_from=str(source), export=report)
        write_run_record(staging, record)
        write_card(model, staging, fmt, record, report, name=push_to_hub or out.name)
        if not report["ok"] and out.exists():
            raise check_failed(report, out, kept=True)   # keep the earlier export: never replace it by a failed one
        swap_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if not report["ok"]:
        raise check_failed(report, out)
    result = {"output_dir": str(out), "format": fmt, "task": task, "check": report}
    if push_to_hub:
        from engine.outputs.hub import push_folder
        result["hub"] = push_folder(out, push_to_hub, private=private, token=token)
    return result
