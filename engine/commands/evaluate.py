"""`raclate eval --model O --task T --data D [--column ROLE=NAME ...]` → the task's metrics as JSON on
stdout (a table on a terminal). The same metrics as training's evaluations (engine.metrics), on
every row of D (or of --split), with the texts as training read them (prompts, chat template, max length)."""
from __future__ import annotations

from engine.commands import add_common, add_input_options, dumps, guarded, load, on_terminal
from engine.data import DatasetArgs
from engine.data.mapping import parse_column_items
from engine.inference import evaluate_file


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="Evaluate a model on a dataset; metrics as JSON.",
                       description="Compute the task's metrics (retrieval NDCG/MRR/recall, accuracy/F1, entity F1, "
                                   "perplexity) of a model on every row of a dataset.")
    add_common(p)
    p.add_argument("--data", required=True, help="A .jsonl/.json/.csv/.tsv/.parquet file, a folder, or a Hub dataset id.")
    p.add_argument("--split", default=None, help="The split to evaluate when the data has several (e.g. test).")
    p.add_argument("--subset", default=None, help="Hub dataset subset.")
    p.add_argument("--max-rows", type=int, default=None, help="Evaluate at most this many rows.")
    p.add_argument("--encoding", default=None, help=DatasetArgs.__dataclass_fields__["encoding"].metadata["help"])
    add_input_options(p)
    p.set_defaults(run=guarded(run))


def run(ns) -> int:
    model, tokenizer, task, _ = load(ns)
    result = evaluate_file(model, tokenizer, task, ns.data, columns=parse_column_items(ns.column), split=ns.split,
                           subset=ns.subset, max_rows=ns.max_rows, batch_size=ns.batch_size, max_length=ns.max_length,
                           encoding=ns.encoding)
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
    for key in ("per_class", "per_label", "per_type"):
        groups = metrics.get(key)
        if isinstance(groups, dict) and groups:
            lines += ["", f"  {'':<16} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
            for name, s in groups.items():
                lines.append(f"  {str(name)[:16]:<16} {s.get('precision', 0):>9.4f} {s.get('recall', 0):>9.4f} "
                             f"{s.get('f1', 0):>9.4f} {s.get('support', 0):>8}")
    return "\n".join(lines)
