"""`raclate eval --model O --task T --data D [--column ROLE=NAME ...]` → the task's metrics as JSON on
stdout (a table on a terminal). The same metrics as training's evaluations (engine.metrics), on
every row of D (or of --split)."""
from __future__ import annotations

import numpy as np

from engine.commands import add_common, dumps, guarded, load, on_terminal


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="Evaluate a model on a dataset; metrics as JSON.",
                       description="Compute the task's metrics (retrieval NDCG/MRR/recall, accuracy/F1, entity F1, "
                                   "perplexity) of a model on every row of a dataset.")
    add_common(p)
    p.add_argument("--data", required=True, help="A .jsonl/.json/.csv/.tsv/.parquet file, a folder, or a Hub dataset id.")
    p.add_argument("--split", default=None, help="The split to evaluate when the data has several (e.g. test).")
    p.add_argument("--subset", default=None, help="Hub dataset subset.")
    p.add_argument("--max-rows", type=int, default=None, help="Evaluate at most this many rows.")
    p.set_defaults(run=guarded(run))


def remap_labels(ds, data_info, model, task: str):
    """Data label ids (the data's own sorted names) → the model's ids (its id2label); regression as is.
    Returns (dataset, LabelInfo with the model's names)."""
    from engine.cli import CliError
    from engine.data import LabelInfo
    config = model.info.config
    if task == "text-classification" and config.get("problem_type") == "regression":
        return ds, LabelInfo(None, 1, True)
    id2label = {int(k): v for k, v in config["id2label"].items()}
    names = [id2label[i] for i in range(len(id2label))]
    label2id = {v: k for k, v in id2label.items()}
    lookup, unknown = {}, []
    for data_id, name in enumerate(data_info.names or []):
        if name in label2id:
            lookup[data_id] = label2id[name]
        elif name.lstrip("-").isdigit() and 0 <= int(name) < len(names):
            lookup[data_id] = int(name)  # integer labels against LABEL_i names
        else:
            unknown.append(name)
    if unknown:
        raise CliError(f"The data has labels the model does not know: {', '.join(unknown[:10])}. The model's labels "
                       f"are: {', '.join(names[:20])}.")
    column = "labels" if task == "token-classification" else "label"
    if task == "token-classification":
        fn = lambda b: {column: [[lookup.get(t, -100) if t >= 0 else t for t in row] for row in b[column]]}  # noqa: E731
    else:
        fn = lambda b: {column: [lookup[v] for v in b[column]]}  # noqa: E731
    return ds.map(fn, batched=True, desc="Matching labels"), LabelInfo(names, len(names), False)


def batches(model, tokenizer, task: str, ds, batch_size: int, max_length: int, seed: int = 0):
    """Collated batches over ``ds`` in length order (less padding), as the trainer evaluates."""
    from engine.data import tokenize_dataset
    from engine.data.collators import collator_for
    tokenized = tokenize_dataset(ds, tokenizer, task, max_length)
    if task == "sentence-similarity" and model.info.colbert:
        from engine.models.pylate import ColBERTCollator
        collator = ColBERTCollator(tokenizer, model.info.colbert, max_length=max_length)
    else:
        kw = {"pad_to_multiple_of": 8}
        if task == "text-classification":
            kw["is_regression"] = model.info.config.get("problem_type") == "regression"
        if task == "masked-lm":
            kw["seed"] = seed
        collator = collator_for(task, tokenizer, **kw)
    cols = [c for c in tokenized.column_names if c.endswith("input_ids")]
    lengths = np.max(np.stack([[len(x) for x in tokenized[c]] for c in cols]), axis=0)
    order = np.argsort(lengths, kind="stable")
    for position, start in enumerate(range(0, len(tokenized), batch_size)):
        picked = tokenized[[int(i) for i in order[start:start + batch_size]]]
        rows = [{k: v[i] for k, v in picked.items()} for i in range(len(next(iter(picked.values()))))]
        yield collator(rows, position=position) if task == "masked-lm" else collator(rows)


def evaluate(model, tokenizer, task: str, data: str, *, columns=None, split=None, subset=None, max_rows=None,
             batch_size: int = 32, max_length: int | None = None) -> dict:
    """Metrics of a loaded model on a data file: {task, rows, metrics}."""
    from engine.data import DatasetArgs, load_dataset
    from engine.embedding import max_length_of
    from engine.metrics import evaluate_batches
    max_length = max_length or max_length_of(model, tokenizer)
    regression = task == "text-classification" and model.info.config.get("problem_type") == "regression"
    dargs = DatasetArgs(data=data, task_type=task, columns=dict(columns or {}), split=split, subset=subset,
                        validation_split=0.0, max_rows=max_rows, max_length=max(max_length, 2),
                        is_regression=True if regression else (False if task == "text-classification" else None))
    loaded = load_dataset(dargs)
    ds = loaded.train
    info = loaded.label_info
    data_task = loaded.task
    if data_task in ("text-classification", "token-classification"):
        ds, info = remap_labels(ds, info, model, data_task)
    model.eval()
    metrics = evaluate_batches(data_task, model, batches(model, tokenizer, data_task, ds, batch_size, max_length), info)
    return {"task": data_task, "rows": len(ds), "metrics": metrics}


def run(ns) -> int:
    from engine.cli import parse_columns
    model, tokenizer, task, _ = load(ns)
    result = evaluate(model, tokenizer, task, ns.data, columns=parse_columns(ns.column), split=ns.split,
                      subset=ns.subset, max_rows=ns.max_rows, batch_size=ns.batch_size, max_length=ns.max_length)
    result = {"model": ns.model, "data": ns.data, **result}
    if on_terminal(ns):
        print(table(result))
    else:
        print(dumps(result))
    return 0


def table(result: dict) -> str:
    """Scalar metrics as aligned rows, then per-class / per-type scores when there are any."""
    metrics = result["metrics"]
    lines = [f"{result['task']} on {result['data']} ({result['rows']} rows), model {result['model']}", ""]
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    width = max((len(k) for k in scalars), default=6)
    lines += [f"  {k:<{width}}  {v:>10.4f}" for k, v in scalars.items()]
    for key in ("per_class", "per_type"):
        groups = metrics.get(key)
        if isinstance(groups, dict) and groups:
            lines += ["", f"  {'':<16} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
            for name, s in groups.items():
                lines.append(f"  {str(name)[:16]:<16} {s.get('precision', 0):>9.4f} {s.get('recall', 0):>9.4f} "
                             f"{s.get('f1', 0):>9.4f} {s.get('support', 0):>8}")
    return "\n".join(lines)
