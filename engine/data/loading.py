"""``load_dataset(args)``: read → map columns to roles → split → validate → encode labels."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.data.args import DatasetArgs, text_roles_of
from engine.errors import DataError
from engine.data.labels import LabelInfo, encode_labels, plan_labels
from engine.data.mapping import apply_columns, resolve_columns
from engine.data.reading import Source, read_file, read_splits
from engine.data.validation import Report, _check_lengths, _Collector, validate


@dataclass
class LoadedData:
    """Role-named ``datasets.Dataset`` splits plus what training needs to know about them."""
    train: object
    validation: object | None
    test: object | None
    task: str
    columns: dict[str, str]                 # role → the user's column
    label_info: LabelInfo
    report: Report
    sources: dict[str, Source] = field(default_factory=dict, repr=False)
    rows_read: int = 0                      # rows of the split trained on, before validation/test rows are held out

    @property
    def splits(self) -> dict:
        return {k: v for k, v in (("train", self.train), ("validation", self.validation), ("test", self.test))
                if v is not None}

    @property
    def text_roles(self) -> list[str]:
        """Text roles in batch order, e.g. ["text", "text_pair", "negative"]."""
        return text_roles_of(self.train.column_names)

    @property
    def id2label(self) -> dict[int, str]:
        return self.label_info.id2label


def load_dataset(args: DatasetArgs, tokenizer=None, *, cache_dir: str | None = None,
                 strict: bool = True, progress=None) -> LoadedData:
    """Load, map, split, validate and encode; raises :class:`DataError` on any fatal finding.

    With a ``tokenizer`` the report also counts tokens (histogram, rows over ``args.max_length``).
    ``strict=False`` (the GUI's data check) returns the data with a report holding fatal findings
    instead of raising for them, and labels as read (planned, not encoded: it only reports). Unreadable
    files always raise. ``progress(done, total)`` follows the token length count (validate).
    """
    args.__post_init__()   # re-check values the caller may have changed since construction
    task = args.task_type
    raw = read_splits(args.data, subset=args.subset, cache_dir=cache_dir, encoding=args.encoding)
    raw = _pick_train(raw, args.split, args.data)
    if args.eval_data:
        ds, kind = read_file(args.eval_data, cache_dir, args.encoding)
        raw["validation"] = (ds, Source([str(args.eval_data)], [len(ds)], [kind]))
    if args.max_rows:
        raw = {k: (ds.select(range(min(args.max_rows, len(ds)))), src.select(np.arange(min(args.max_rows, len(ds)))))
               for k, (ds, src) in raw.items()}
    train_file = raw["train"][1].files[0] if raw["train"][1].files else args.data
    mapping = resolve_columns(raw["train"][0].column_names, task, args.role_columns(), file=train_file)
    splits, sources = {}, {}
    for name, (ds, src) in raw.items():
        if name not in ("train", "validation", "test"):
            continue
        splits[name] = apply_columns(ds, mapping, file=src.files[0] if src.files else None)
        sources[name] = src
    if len(splits["train"]) == 0:
        raise DataError("The train split has no rows.", file=train_file, code="empty_file",
                        fix="Choose a file with data rows (a header alone is not enough).")
    total = rows_read = len(splits["train"])   # both fractions are of the rows read, not of what is left
    _carve(splits, sources, "test", round(total * args.test_split), args.seed)
    _carve(splits, sources, "validation", round(total * args.validation_split), args.seed + 1)
    report = validate(splits, task, tokenizer=tokenizer, max_length=args.max_length, is_regression=args.is_regression,
                      sources=sources, columns=mapping, use_chat_template=args.use_chat_template,
                      is_multi_label=args.is_multi_label, progress=progress)
    if not report.ok:
        if strict:
            report.raise_if_fatal()
        if tokenizer is not None and args.max_length:
            _lengths_despite_fatal(splits, sources, task, tokenizer, args, report, mapping, progress)
        return LoadedData(splits["train"], splits.get("validation"), splits.get("test"), task, mapping, LabelInfo(),
                          report, sources, rows_read)
    info = plan_labels(splits, task, args.is_regression, args.is_multi_label)
    if strict:
        splits = {k: encode_labels(v, task, info) for k, v in splits.items()}
    return LoadedData(splits["train"], splits.get("validation"), splits.get("test"), task, mapping, info, report,
                      sources, rows_read)


def _lengths_despite_fatal(splits, sources, task, tokenizer, args, report, mapping, progress) -> None:
    """Token lengths (histogram, too-long warnings) for the GUI's report when only non-text columns
    (a label) are fatal: ``validate`` skips them after any fatal finding, since bad text can break tokenizing."""
    texts = ["tokens"] if task == "token-classification" else text_roles_of(splits["train"].column_names)
    text_columns = {mapping.get(r, r) for r in texts}
    if task == "token-classification" or any(f.column is None or f.column in text_columns for f in report.fatal):
        return
    out = _Collector(sources, mapping)
    try:
        _check_lengths(out, splits, task, tokenizer, args.max_length, report, args.use_chat_template, None, progress)
    except Exception:  # noqa: BLE001 — best effort: the fatal findings already say what to fix
        return
    report.findings += out.findings


def _pick_train(raw: dict, split: str | None, data: str) -> dict:
    """Make the split to train on "train" (``split`` or the only one) and keep validation/test."""
    if split:
        if split not in raw:
            raise DataError(f"No split named {split!r}; the data has {', '.join(map(repr, raw))}.", file=data,
                            code="missing_split", fix=f"Set split to one of: {', '.join(raw)}.")
        out = {"train": raw[split]}
        out.update({k: v for k, v in raw.items() if k in ("validation", "test") and k != split})
        return out
    if "train" not in raw:
        if len(raw) == 1:
            return {"train": next(iter(raw.values()))}
        raise DataError(f"No train split; the data has {', '.join(map(repr, raw))}.", file=data,
                        code="missing_split", fix=f"Set split to the one to train on: {', '.join(raw)}.")
    return raw


def _carve(splits: dict, sources: dict, name: str, take: int, seed: int) -> None:
    """Hold out ``take`` random train rows as split ``name`` when the data has no such split."""
    train = splits["train"]
    n = len(train)
    if name in splits or take <= 0 or take >= n:
        return
    order = np.random.default_rng(seed).permutation(n)
    held, kept = np.sort(order[:take]), np.sort(order[take:])
    splits[name], sources[name] = train.select(held), sources["train"].select(held)
    splits["train"], sources["train"] = train.select(kept), sources["train"].select(kept)
