"""Preview timings on 1,000,000-row CSV, JSONL and Parquet files (the Data page must show rows in < 2 s).

    python benchmarks/preview.py [--rows 1000000] [--repeat 5]

Writes the files to a temporary folder, then times ``engine.data.preview`` per format: the first
call (cold for our code; the OS page cache may hold the file) and the median of ``--repeat`` calls.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from engine.data import preview

WORDS = "the a of to and model data train text query answer token vector batch loss".split()


def make_table(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    vocab = np.array(WORDS)
    lens = rng.integers(4, 24, size=n)
    starts = rng.integers(0, len(WORDS), size=n)
    text = [" ".join(vocab[(s + np.arange(k)) % len(WORDS)]) for s, k in zip(starts, lens)]
    return pa.table({"id": np.arange(n), "text": text, "label": rng.integers(0, 5, size=n),
                     "score": rng.random(n).round(4)})


def write_all(table: pa.Table, folder: Path) -> dict[str, Path]:
    paths = {"csv": folder / "data.csv", "jsonl": folder / "data.jsonl", "parquet": folder / "data.parquet"}
    pcsv.write_csv(table, paths["csv"])
    pq.write_table(table, paths["parquet"])
    import json
    with open(paths["jsonl"], "w") as fh:
        for batch in table.to_batches(100_000):
            cols = batch.to_pydict()
            fh.writelines(json.dumps(dict(zip(cols, vals))) + "\n" for vals in zip(*cols.values()))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("-n", type=int, default=200, help="rows shown")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = write_all(make_table(args.rows), Path(tmp))
        print(f"wrote {args.rows:,} rows per format in {time.perf_counter() - t0:.1f}s")
        print(f"{'format':8} {'size MB':>8} {'first s':>8} {'median s':>9} {'rows':>12} estimate")
        for fmt, path in paths.items():
            times = []
            for _ in range(args.repeat + 1):
                t = time.perf_counter()
                result = preview(path, n=args.n)
                times.append(time.perf_counter() - t)
            assert len(result.rows) == args.n
            print(f"{fmt:8} {path.stat().st_size / 1e6:8.1f} {times[0]:8.3f} {statistics.median(times[1:]):9.3f} "
                  f"{result.num_rows:12,} {result.num_rows_is_estimate}")


if __name__ == "__main__":
    main()
