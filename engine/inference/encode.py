"""`encode`: texts → vectors with a loaded model, batched by length (sentence-transformers' and
PyLate's ``encode``)."""
from __future__ import annotations

import numpy as np

import mlx.core as mx

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
    elementwise kernels; one trace per batch shape) and the next batch is prepared while the last one
    computes."""
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
    forward = _forward(model, bool(normalize and not late), truncate_dim, compiled=len(texts) > batch_size)
    order = np.argsort([-len(x) for x in ids], kind="stable")  # similar lengths share a batch
    results: list = [None] * len(texts)

    def collect(idx, mask, out):
        out = np.array(out)
        for row, i in enumerate(idx):
            results[i] = out[row][mask[row] > 0] if late else out[row]

    pending = None
    for start in range(0, len(texts), batch_size):
        progress(start, len(texts))
        idx = order[start:start + batch_size]
        input_ids, mask = pad([ids[i] for i in idx], pad_id, multiple=0, side=side)
        out = forward(mx.array(input_ids), mx.array(mask))
        mx.async_eval(out)   # computes while the next batch is padded and this one's predecessor is read
        if pending:
            collect(*pending)
        pending = (idx, mask, out)
    if pending:
        collect(*pending)
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
    for start in range(0, len(texts), batch_size):
        progress(start, len(texts))
        idx = order[start:start + batch_size]
        input_ids, attention, score = pylate.tokenize(tokenizer, [texts[i] for i in idx], config,
                                                      is_query=is_query, ids=ids)
        out = np.array(model(mx.array(input_ids), mx.array(attention)).astype(mx.float32))  # (B, T, D)
        for row, i in enumerate(idx):
            results[i] = out[row][score[row] > 0]
    progress(len(texts), len(texts))
    return results
