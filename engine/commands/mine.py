"""`raclate mine --model M --data pairs.jsonl --output triplets.jsonl [--corpus texts.txt]`

Hard negatives for (anchor, positive) pairs (engine/mining.py): the model ranks the corpus (the
positives plus --corpus) for each anchor; --num-negatives are taken from ranks --range-min ..
--range-max, skipping candidates that score too close to the positive (--margin: above positive −
margin; --relative-margin: above (1 − m) × positive), which are most often false negatives.
--cross-encoder MODEL (a pair classifier or reranker) rescores each window: the rules and the order
then use its scores.

Writes JSON lines with columns anchor, positive, negative (triplet) or negative_1..n (n-tuple), plus
scores with --with-scores; `raclate train --task sentence-similarity --data OUTPUT` reads them. The
summary (how many candidates each rule removed, the closest removed ones for review) is printed and
written beside the output (triplets.jsonl -> triplets.summary.json).
"""
from __future__ import annotations

import argparse
import sys

from engine.commands import add_common, add_input_options, dumps, guarded, load, on_terminal
from engine.data.inputs import adopt
from engine.data.mapping import parse_column_items
from engine.errors import UsageError
from engine.mining import (FORMATS, check_settings, load_cross_encoder, mine_hard_negatives, read_corpus, read_pairs,
                           write_mined)
from engine.tasks import EMBEDDING_TASKS


def add_parser(sub) -> None:
    p = sub.add_parser("mine", help="Mine hard negatives for (anchor, positive) pairs with an embedding model.",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p, data=False)
    p.add_argument("--data", required=True, help="A .jsonl/.json/.csv/.tsv/.parquet file of (anchor, positive) pairs.")
    p.add_argument("--column", action="append", default=None, metavar="ROLE=NAME",
                   help="Map a column of --data to the text (anchor) or text_pair (positive) role; repeatable.")
    p.add_argument("--max-length", type=int, default=None, help="Truncate texts to this many tokens "
                   "(default: the model's max_seq_length or 512).")
    p.add_argument("--output", required=True, help="The .jsonl file to write the triplets / n-tuples to.")
    p.add_argument("--corpus", default=None, help="More candidate texts: a .txt file (one per line) or a data file.")
    p.add_argument("--corpus-column", default=None, help="The column of --corpus that holds the texts.")
    p.add_argument("--num-negatives", type=int, default=3, help="Negatives per pair.")
    p.add_argument("--range-min", type=int, default=0, help="Skip the closest candidates: the first rank taken (0 = the "
                   "closest non-positive).")
    p.add_argument("--range-max", type=int, default=50, help="Take candidates ranked below this only.")
    p.add_argument("--margin", type=float, default=None, help="Drop a candidate scoring above the positive's score "
                   "minus this (0 = never above the positive).")
    p.add_argument("--relative-margin", type=float, default=None, help="Drop a candidate scoring above (1 - this) x "
                   "the positive's score (0.05 = at most 95%% of it).")
    p.add_argument("--output-format", choices=FORMATS, default="triplet", help="triplet: one row per negative; "
                   "n-tuple: one row per pair with negative_1..n (pairs short of negatives are left out).")
    p.add_argument("--with-scores", action="store_true", help="Add a scores column: [positive, negatives...].")
    p.add_argument("--cross-encoder", default=None, metavar="MODEL",
                   help="Rescore each (anchor, candidate) and (anchor, positive) pair of the rank window with this pair "
                        "classification / regression model (a run of `raclate train --task text-classification` on "
                        "text pairs, or a transformers sequence-classification checkpoint such as a reranker); the "
                        "margins and the order then use its scores.")
    add_input_options(p)
    p.set_defaults(run=guarded(run))


def run(ns) -> int:
    check_settings(ns.num_negatives, ns.range_min, ns.range_max, ns.margin, ns.relative_margin, ns.output_format)
    pairs = read_pairs(ns.data, parse_column_items(ns.column))
    corpus = read_corpus(ns.corpus, ns.corpus_column) if ns.corpus else []
    model, tokenizer, task, _ = load(ns)
    if task not in EMBEDDING_TASKS:
        raise UsageError(f"Mining needs an embedding model; {ns.model} is a {task} model.")
    adopt(model.info, max_length=ns.max_length)   # --max-length: as training would truncate the texts
    cross_encoder = load_cross_encoder(ns.cross_encoder) if ns.cross_encoder else None
    mined = mine_hard_negatives(model, tokenizer, pairs, corpus, num_negatives=ns.num_negatives,
                                range_min=ns.range_min, range_max=ns.range_max, margin=ns.margin,
                                relative_margin=ns.relative_margin, output_format=ns.output_format,
                                with_scores=ns.with_scores, cross_encoder=cross_encoder)
    summary_file = write_mined(mined, ns.output)
    if on_terminal(ns):
        print(report(mined.summary, ns.output, summary_file), file=sys.stderr)
    else:
        print(dumps({"output": ns.output, "summary_file": str(summary_file), **mined.summary}))
    return 0


def report(summary: dict, output, summary_file) -> str:
    """The summary in a few lines: counts, then the closest removed candidates to review."""
    removed = summary["removed"]
    lines = [f"{summary['rows']} rows written to {output} ({summary['negatives']} negatives for {summary['pairs']} "
             f"pairs; corpus of {summary['corpus']} texts).",
             f"Candidates in the rank window: {summary['candidates']}; removed as likely false negatives: "
             f"{summary['removed_total']} (margin {removed['margin']}, relative margin {removed['relative_margin']}).",
             f"Pairs short of negatives: {summary['pairs_short_of_negatives']}."]
    if summary["closest_removed"]:
        lines += ["", "Closest removed candidates (review: are they really answers?):"]
        for r in summary["closest_removed"]:
            lines.append(f"  {r['score']:.3f} vs positive {r['positive_score']:.3f} [{', '.join(r['removed_by'])}]  "
                         f"{r['anchor'][:60]!r} -> {r['candidate'][:60]!r}")
    if summary["settings"].get("cross_encoder"):
        lines.insert(1, f"Scores and rules by the cross-encoder {summary['settings']['cross_encoder']}.")
    lines += ["", f"Summary: {summary_file}"]
    return "\n".join(lines)
