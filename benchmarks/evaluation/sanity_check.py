"""Cascading randomisation (Adebayo et al. 2018) of every camkit method on EfficientNet-Lite0.

Run from the project root:  python benchmarks/evaluation/sanity_check.py
Writes benchmarks/evaluation/sanity.md and sanity.csv. Uses 2 images of
../shared/data/imagenet-sample
(the 1st and 51st), explained for their labelled class at the auto layer, randomising the top 8
blocks (head to _blocks.11). Per-channel methods (Score-CAM family, Ablation-CAM) run on 1 image
with ``max_channels=64`` (16 for SS-CAM and IS-CAM) and the top 4 blocks only, to stay within
minutes on a shared 2-core CPU.

On a GPU, ``--exact --images 10 --device cuda`` runs every method, the per-channel ones exact
(every channel), on 10 images spread over the sample, with the same 8 steps.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

import camkit
from camkit import metrics
from camkit._evaluate import find_images, is_per_channel
from camkit._inputs import prepare_batch
from camkit._metrics_sanity import judge
from camkit.models import imagenet_categories

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample"
OUT = Path(__file__).resolve().parent
#: SS-CAM and IS-CAM run 10 forwards per channel: fewer channels keep them within minutes.
CHANNELS = {"sscam": 16, "iscam": 16}
#: Blocks randomised, from the output down: the head, then down to _blocks.11 (of 0-15).
STEPS = 8


def main() -> None:
    """Run the test for every registered method and write the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2, help="images, spread over the sample")
    parser.add_argument("--exact", action="store_true", help="every channel, all 8 steps")
    parser.add_argument("--device", default=None, help="cpu or cuda [CUDA if any]")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for sanity.md/.csv")
    parser.add_argument(
        "--rejudge",
        action="store_true",
        help="recompute only the verdicts of the stored sanity.csv with today's pass rule",
    )
    args = parser.parse_args()
    if args.rejudge:
        rejudge(args.out)
        return
    torch.manual_seed(0)
    loaded = camkit.load_model(device=args.device)
    found = find_images(SAMPLE, list(imagenet_categories()))
    items = found[:: max(1, len(found) // args.images)][: args.images]
    batch = prepare_batch([str(item.path) for item in items], loaded.preprocessing)
    labels = [item.label for item in items]
    methods = camkit.list_methods()
    cheap = [m for m in methods if args.exact or not is_per_channel(m)]
    costly = [m for m in methods if m not in cheap]
    results: list[tuple[str, metrics.SanityResult, int]] = []
    began = time.time()
    result = metrics.sanity_check(
        loaded,
        batch.images,
        cheap,
        targets=labels,
        steps=STEPS,
        explain_options={"progress": False},
    )
    results.extend((m, result, len(items)) for m in cheap)
    print(f"{', '.join(cheap)}: {time.time() - began:.0f} s", file=sys.stderr)
    for method in costly:
        began = time.time()
        result = metrics.sanity_check(
            loaded,
            batch.images[:1],
            [method],
            targets=labels[:1],
            steps=4,
            explain_options={"max_channels": CHANNELS.get(method, 64), "progress": False},
        )
        results.append((method, result, 1))
        print(f"{method}: {time.time() - began:.0f} s", file=sys.stderr)
    write(results, args.out)


def write(results: list[tuple[str, metrics.SanityResult, int]], out: Path) -> None:
    """Write sanity.csv and sanity.md and print the table."""
    rows = []
    for method, result, images in results:
        series = result.correlations[method].tolist()
        step = {name: value for name, value in zip(result.steps, series, strict=True)}
        rows.append(
            {
                "method": method,
                "images": images,
                "perturbation": result.perturbation[method],
                "head": step.get("_fc", float("nan")),
                "top4": step.get("_blocks.15", float("nan")),
                "last": series[-1],
                "last_step": f"{len(series)} blocks (down to {result.steps[-1]})",
                "passed": result.passed[method],
            }
        )
    write_rows(rows, out)


def rejudge(out: Path) -> None:
    """Apply the current pass rule to the stored correlations (after _fc and after the last step).

    The rule looks at the first step (the classifier) and the last one, both stored in sanity.csv,
    so the verdicts can follow a change of rule without recomputing the maps (the stored table
    came from a GPU run, ``--exact --images 10``).
    """
    with (out / "sanity.csv").open(newline="") as handle:
        rows: list[dict] = list(csv.DictReader(handle))
    for row in rows:
        for key in ("perturbation", "head", "top4", "last"):
            row[key] = float(row[key])
        row["images"] = int(row["images"])
        last_step = row["last_step"].split("down to ")[-1].rstrip(")")
        series = [row["head"], row["last"]]
        row["passed"] = judge(["_fc", last_step], series, row["perturbation"])[0]
    write_rows(rows, out)


def write_rows(rows: list[dict], out: Path) -> None:
    """Write the rows to sanity.csv and sanity.md and print the table."""
    with (out / "sanity.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "Spearman correlation between the maps of the trained and the randomised Lite0 "
        "(mean over images); randomised cumulatively from the output down. A method passes when "
        "its map changes both after the classifier (_fc) alone is randomised and after the last "
        "step: the correlation below 0.5 and below half the tiny-input-noise yardstick at both.",
        "",
        "| method | images | tiny input noise | head (_fc) randomised | top 4 blocks "
        "| last step | randomised down to | passes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['images']} | {row['perturbation']:.2f} | "
            f"{row['head']:.2f} | {row['top4']:.2f} | {row['last']:.2f} | {row['last_step']} | "
            f"{'yes' if row['passed'] else 'no'} |"
        )
    (out / "sanity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
