"""Merge the rows of other `camkit evaluate` runs into this folder and rewrite its summary.

Run from the project root:

    python benchmarks/evaluation/merge_runs.py RUN_DIR [RUN_DIR ...] [--drop LABEL ...]

Each RUN_DIR is an `--out` folder of `camkit evaluate` (its per_image.csv and curves.csv). Rows
of a (file, method, layer) already here are replaced by the run's; `--drop` removes every row of
a method label first (for example "sscam (max_channels=32)"). Then summary.md, summary.csv and
curves.png are written again from the merged files, as `camkit evaluate` writes them.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from camkit._evaluate import CURVES_FILE, PER_IMAGE_FILE, write_summary

HERE = Path(__file__).resolve().parent


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _read_curves(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def main() -> None:
    """Merge the runs named on the command line into this folder's files and summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--drop", nargs="*", default=[], help="method labels to remove")
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    columns, rows = _read(HERE / PER_IMAGE_FILE)
    curves = _read_curves(HERE / CURVES_FILE)
    dropped = set(args.drop)
    for run in args.runs:
        run_columns, run_rows = _read(run / PER_IMAGE_FILE)
        if set(run_columns) != set(columns):
            raise SystemExit(f"{run}: its per_image.csv columns differ from {HERE}'s")
        keys = {(r["file"], r["method"], r["layer"]) for r in run_rows}
        rows = [r for r in rows if (r["file"], r["method"], r["layer"]) not in keys]
        curves = [c for c in curves if tuple(c[:3]) not in keys]
        rows.extend(run_rows)
        curves.extend(_read_curves(run / CURVES_FILE))
    rows = [r for r in rows if r["method"] not in dropped]
    curves = [c for c in curves if c[1] not in dropped]
    with (HERE / PER_IMAGE_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with (HERE / CURVES_FILE).open("w", newline="") as handle:
        csv.writer(handle).writerows(curves)
    summary = write_summary([HERE / PER_IMAGE_FILE], [HERE / CURVES_FILE], HERE, args.model)
    print(summary.read_text())


if __name__ == "__main__":
    main()
