"""The faithfulness table restricted to the images SS-CAM and IS-CAM were evaluated on.

SS-CAM and IS-CAM (ten masked forwards per channel) ran on the first 20 images only, so their
means are compared here with the other methods' on the same 20 images. Run from the project
root: ``python docs/evaluation/subset_table.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = [
    "gradcam",
    "gradcam++",
    "layercam",
    "scorecam (max_channels=32)",
    "ablationcam (max_channels=32)",
    "sscam (max_channels=32)",
    "iscam (max_channels=32)",
    "center",
    "random",
]
# (column, scale, heading, digits)
COLUMNS = [
    ("drop", 100, "Average Drop % ↓", 1),
    ("increase", 100, "Increase in Confidence % ↑", 1),
    ("deletion_auc", 1, "Deletion AUC ↓", 3),
    ("insertion_auc", 1, "Insertion AUC ↑", 3),
    ("road_morf", 1, "ROAD MoRF ↓", 3),
    ("road_lerf", 1, "ROAD LeRF ↑", 3),
]


def main() -> None:
    """Print the Markdown table."""
    rows: list[dict[str, str]] = []
    with (HERE / "per_image.csv").open(newline="") as handle:
        rows += list(csv.DictReader(handle))
    files = {row["file"] for row in rows if row["method"].startswith("sscam")}
    print("| method | images | " + " | ".join(heading for _, _, heading, _ in COLUMNS) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " |")
    for method in METHODS:
        chosen = {
            row["file"]: row for row in rows if row["method"] == method and row["file"] in files
        }
        if not chosen:
            continue
        values = [
            f"{sum(float(row[key]) for row in chosen.values()) / len(chosen) * scale:.{digits}f}"
            for key, scale, _, digits in COLUMNS
        ]
        print(f"| {method} | {len(chosen)} | " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()
