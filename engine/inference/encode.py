"""`encode`: texts → vectors with a loaded model, batched by length (sentence-transformers' and
PyLate's ``encode``)."""
from __future__ import annotations

import os
import threading
from contextlib import nullcontext

import numpy as np

import mlx.core as mx

from engine import backend
from engine.data.collators import pad, padding_of
from engine.data.inputs import pick_prompt, tokenize_texts
from engine.errors import UsageError
from engine.losses.matryoshka import truncate
from engine.models import heads, pylate
from engine.models.heads import LateInteractionModel


def max_length_of(model, tokenizer) -> int:
    """sentence-transformers' max_seq_length (a trained model's: its run's max_length) when set, else
    the smaller of the tokenizer's and the position table's limits."""
    if model.info.max_seq_length:
        return int(model.info.max_seq_length)
    limits = [getattr(tokenizer, "model_max_length", None), model.config.get("max_position_embeddings")]
    return int(min(x for x in limits if x and x < 1e9) if any(x and x < 1e9 for x in limits) else 512)


def encode(model, tokenizer, texts, batch_size: int = 32, *, prompt_name: str | None = None,
           prompt: str | None = None, max_length: int | None = None, normalize: bool | None = None,
           is_query: bool | None = None, use_chat_template: bool | None = None, truncate_dim: int | None = None,
           progress=None):
    """Embed ``texts`` (a string or a list). Dense models → float32 [N, D]; late-interaction
    models → a list of [T_i, D] arrays. Order follows ``texts``. The texts go through the model's
    input pipeline (engine/data/inputs.py: prompt, stripped, chat template when the model was trained
    with one, unless ``use_chat_template`` says otherwise), as they did in training.

    Prompts follow sentence-transformers' ``encode``: ``prompt`` wins over ``prompt_name``, else the
    model's ``default_prompt_name`` applies; for dense models ``is_query`` picks the "query" or
    "document" prompt instead (``encode_query`` / ``encode_document``).

    Late interaction follows PyLate's ``ColBERT.encode``: ``is_query`` (default True) picks the
    [Q]/[D] prefix; a query keeps every position of its expansion to ``query_length`` (the [MASK]
    pads included), a document its real tokens minus the punctuation skiplist.

    ``truncate_dim`` keeps the first values of each dense vector (a Matryoshka-trained model's smaller
    sizes), as sentence-transformers' ``truncate_dim``: cut first, then normalised when ``normalize``.
    ``progress(done, total)`` is called between batches (it may raise to cancel).

    Speed: every text is tokenized first, batches hold texts of similar token counts (longest first),
    each padded to its own longest; with more than one batch the forward pass is compiled (fused
    elementwise kernels; one trace per batch shape), on the CPU each batch's rows are split over two
    streams that compute at once (`run_in_lanes`), and the next batch is prepared while one computes."""
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    progress = progress or (lambda done, total: None)
    late = isinstance(model, LateInteractionModel)
    if late and model.info.colbert:   # PyLate picks no prompt by is_query
        text = pick_prompt(model.info, prompt_name=prompt_name, prompt=prompt)
        results = _encode_late(model, tokenizer, [text + t for t in texts], batch_size,
                               True if is_query is None else is_query, progress)
        return results[0] if single else results
    if truncate_dim is not None and late:
        raise UsageError("truncate_dim applies to dense embeddings; a late-interaction model's token vectors keep "
                         "their size: leave truncate_dim out for this model.")
    prompt = pick_prompt(model.info, is_query=None if late else is_query, prompt_name=prompt_name, prompt=prompt)
    max_length = max_length or max_length_of(model, tokenizer)
    template = model.info.use_chat_template if use_chat_template is None else use_chat_template
    ids = tokenize_texts(tokenizer, texts, prompt=prompt, strip=True, max_length=max_length,
                         use_chat_template=template)["input_ids"] if texts else []
    pad_id, side = padding_of(tokenizer)
    order = np.argsort([-len(x) for x in ids], kind="stable")  # similar lengths share a batch
    results: list = [None] * len(texts)

    def batches():
        for start in range(0, len(texts), batch_size):
            progress(start, len(texts))
            idx = order[start:start + batch_size]
            input_ids, mask = pad([ids[i] for i in idx], pad_id, multiple=0, side=side)
            yield (idx, mask), (input_ids, mask)

    make = lambda: _forward(model, bool(normalize and not late), truncate_dim, compiled=len(texts) > batch_size)
    for (idx, mask), out in run_in_lanes(make, batches()):
        for row, i in enumerate(idx):
            results[i] = out[row][mask[row] > 0] if late else out[row]
    progress(len(texts), len(texts))
    if late:
        return results[0] if single else results
    stacked = np.stack(results) if results else np.zeros((0, 0), np.float32)
    return stacked[0] if single else stacked


def _forward(model, normalize: bool, truncate_dim: int | None, compiled: bool):
    """``(ids, mask) → float32 outputs``; compiled (``mx.compile``, the weights as implicit inputs) when
    asked and the model is in eval mode (in train mode dropout would need the random state too)."""
    def run(input_ids, mask):
        out = model(input_ids, mask)
        if truncate_dim is not None:
            out = truncate(out, truncate_dim, normalize)
        elif normalize:
            out = heads.normalize(out)
        return out.astype(mx.float32)
    if compiled and not getattr(model, "training", False):
        return mx.compile(run, inputs=model.state)
    return run


def _encode_late(model, tokenizer, texts: list[str], batch_size: int, is_query: bool, progress) -> list:
    config = model.info.colbert
    ids = pylate.token_ids(tokenizer, config)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    results: list = [None] * len(texts)

    def batches():
        for start in range(0, len(texts), batch_size):
            progress(start, len(texts))
            idx = order[start:start + batch_size]
            input_ids, attention, score = pylate.tokenize(tokenizer, [texts[i] for i in idx], config,
                                                          is_query=is_query, ids=ids)
            yield (idx, score), (input_ids, attention)

    make = lambda: _forward(model, False, None, compiled=len(texts) > batch_size)
    for (idx, score), out in run_in_lanes(make, batches()):   # out: (B, T, D)
        for row, i in enumerate(idx):
            results[i] = out[row][score[row] > 0]
    progress(len(texts), len(texts))
    return results


_lane_streams: list = []   # made once by the main thread, reused by every call (MLX never frees a stream)


def run_in_lanes(make_forward, batches):
    """Yield ``(meta, output as numpy)`` for each ``(meta, input arrays)`` of ``batches``, in order.

    On the CPU, called from the main thread, each batch's rows are split over
    `engine.backend.inference_lanes` streams that compute at once, each with its own forward function
    (``make_forward()`` is called once per lane) and a share of OpenBLAS's threads; the parts are evaluated
    with one ``async_eval`` (streams evaluated by separate calls ran one after the other) and put back
    together, and the next batch is prepared while one computes. Rows are independent, so each row's
    numbers are a one-lane run's to float rounding (the products have fewer rows; ~1e-7); the memory held
    is one batch's, as with one lane. Elsewhere one lane: on the GPU, and on other threads (the app's
    workers), whose streams MLX ties to a thread that may end."""
    main = threading.current_thread() is threading.main_thread()
    lanes = backend.inference_lanes() if main and mx.default_device() == mx.cpu else 1
    while lanes > 1 and len(_lane_streams) < lanes:
        _lane_streams.append(mx.new_stream(mx.cpu))
    streams = _lane_streams[:lanes] if lanes > 1 else [mx.default_stream(mx.default_device())]
    forwards = [make_forward() for _ in streams]
    with backend.blas_threads((os.cpu_count() or 1) // lanes) if lanes > 1 else nullcontext():
        pending = None   # (meta, the parts of its output) computing now
        for meta, arrays in batches:
            rows = len(arrays[0])
            cuts = [rows * i // lanes for i in range(lanes + 1)]
            parts = []
            for stream, forward, start, stop in zip(streams, forwards, cuts, cuts[1:]):
                if stop > start:
                    with mx.stream(stream):
                        parts.append(forward(*(mx.array(a[start:stop]) for a in arrays)))
            mx.async_eval(*parts)
            if pending is not None:
                yield pending[0], _joined(pending[1])
            pending = (meta, parts)
        if pending is not None:
            yield pending[0], _joined(pending[1])


def _joined(parts: list) -> np.ndarray:
    return np.array(parts[0]) if len(parts) == 1 else np.concatenate([np.array(p) for p in parts])
