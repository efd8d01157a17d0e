"""`camkit evaluate` and the folder evaluation behind it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import camkit
from camkit import metrics
from camkit._evaluate import (
    LabelledImage,
    evaluate_folder,
    evaluation_steps,
    find_images,
    hash_seed,
    paired_difference,
    ranking_check,
    t_quantile_975,
    write_summary,
)
from camkit.cli import main
from camkit.models import imagenet_categories

from .conftest import SmallCNN, shared_path

TINY = camkit.Preprocessing(resize_size=16, crop_size=16)


def write_image(path: Path, seed: int, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(size, size, 3, generator=generator) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(path)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def tiny_model(small_cnn: SmallCNN) -> camkit.LoadedModel:
    return camkit.LoadedModel(small_cnn, TINY, [f"class {i}" for i in range(5)], "small-cnn")


# ------------------------------------------------------------------------------------------
# Finding images and labels
# ------------------------------------------------------------------------------------------


def test_labels_from_wnid_names_image_folders_and_predictions(tmp_path: Path) -> None:
    write_image(tmp_path / "n01443537_goldfish.png", 0)  # WordNet id 1 in sorted order
    write_image(tmp_path / "n01484850" / "shark.png", 1)  # ImageFolder, WordNet-id folder
    write_image(tmp_path / "tabby" / "cat.png", 2)  # ImageFolder, class-name folder
    write_image(tmp_path / "holiday" / "beach.png", 3)  # no label: the prediction
    (tmp_path / "notes.txt").write_text("not an image")
    found = find_images(tmp_path, list(imagenet_categories()))
    labels = {item.path.name: (item.label, item.source) for item in found}
    assert labels == {
        "n01443537_goldfish.png": (1, "wnid"),
        "shark.png": (2, "folder"),
        "cat.png": (281, "folder"),
        "beach.png": (None, "prediction"),
    }
    assert len(find_images(tmp_path, list(imagenet_categories()), limit=2)) == 2


def test_labels_csv_comes_first(tmp_path: Path) -> None:
    write_image(tmp_path / "n01443537_goldfish.png", 0)
    (tmp_path / "labels.csv").write_text("file,class_index\nn01443537_goldfish.png,7\n")
    (item,) = find_images(tmp_path, list(imagenet_categories()))
    assert (item.label, item.source) == (7, "labels.csv")


def test_shared_sample_labels_agree_with_its_wnids() -> None:
    folder = shared_path("imagenet-sample")
    table = {row["file"]: int(row["class_index"]) for row in read_csv(folder / "labels.csv")}
    found = find_images(folder, list(imagenet_categories()))
    assert len(found) == 100
    for item in found:
        assert item.label == table[item.path.name]


# ------------------------------------------------------------------------------------------
# The evaluation writes what the metrics compute
# ------------------------------------------------------------------------------------------


def test_evaluate_folder_rows_are_the_metrics_of_each_map(
    tmp_path: Path, tiny_model: camkit.LoadedModel
) -> None:
    paths = [write_image(tmp_path / "images" / f"img{i}.png", i) for i in range(3)]
    items = [LabelledImage(paths[0], 3, "labels.csv")] + [
        LabelledImage(p, None, "prediction") for p in paths[1:]
    ]
    out = tmp_path / "out"
    out.mkdir()
    evaluate_folder(
        tiny_model,
        items,
        ["gradcam", "random"],
        ["block"],
        out,
        road_percentages=(50,),
        images_per_batch=2,
        batch_size=7,
    )
    rows = read_csv(out / "per_image.csv")
    assert [(r["file"], r["method"]) for r in rows] == [
        ("img0.png", "gradcam"),
        ("img1.png", "gradcam"),
        ("img0.png", "random"),
        ("img1.png", "random"),
        ("img2.png", "gradcam"),
        ("img2.png", "random"),
    ]
    # Recompute image 1's rows with the public functions directly.
    exp = camkit.explain(tiny_model, [str(paths[1])], methods="gradcam", layers="block")
    predicted = int(exp.targets[0, 0])
    for method, heat in (
        ("gradcam", exp["gradcam"]),
        ("random", metrics.reference_maps("random", 1, 16, 16, seed=hash_seed("img1.png"))),
    ):
        row = next(r for r in rows if r["file"] == "img1.png" and r["method"] == method)
        assert int(row["explained_class"]) == predicted and row["label_source"] == "prediction"
        deletion = metrics.deletion(tiny_model, exp.images, heat, predicted)
        insertion = metrics.insertion(tiny_model, exp.images, heat, predicted)
        drop = metrics.average_drop(tiny_model, exp.images, heat, predicted)
        road = metrics.road(tiny_model, exp.images, heat, predicted, percentages=(50,))
        assert float(row["deletion_auc"]) == pytest.approx(float(deletion.auc[0]), abs=1e-5)
        assert float(row["insertion_auc"]) == pytest.approx(float(insertion.auc[0]), abs=1e-5)
        assert float(row["drop"]) == pytest.approx(drop.average_drop / 100, abs=1e-5)
        assert float(row["road_morf_50"]) == pytest.approx(float(road.morf[0, 0]), abs=1e-4)
    first = next(r for r in rows if r["file"] == "img0.png")
    assert first["explained_class"] == "3" and first["label"] == "3"
    summary = read_csv(out / "summary.csv")
    gradcam = [float(r["deletion_auc"]) for r in rows if r["method"] == "gradcam"]
    assert float(summary[0]["deletion_auc"]) == pytest.approx(sum(gradcam) / 3, abs=1e-3)
    assert Image.open(out / "curves.png").size[0] > 500


def test_max_channels_limits_only_per_channel_methods_and_names_their_rows(
    tmp_path: Path, tiny_model: camkit.LoadedModel
) -> None:
    path = write_image(tmp_path / "img0.png", 0)
    out = tmp_path / "out"
    out.mkdir()
    options = {"road_percentages": (), "images_per_batch": 1, "max_channels": 3}
    items = [LabelledImage(path, 2, "labels.csv")]
    evaluate_folder(tiny_model, items, ["scorecam", "gradcam"], ["block"], out, **options)
    rows = {r["method"]: r for r in read_csv(out / "per_image.csv")}
    assert set(rows) == {"scorecam (max_channels=3)", "gradcam"}
    # The scorecam row scores the 3-channel approximation, not exact Score-CAM.
    limited = camkit.explain(
        tiny_model, str(path), methods="scorecam", layers="block", target=2, max_channels=3
    )
    exact = camkit.explain(tiny_model, str(path), methods="scorecam", layers="block", target=2)
    assert not torch.allclose(limited["scorecam"], exact["scorecam"], atol=1e-3)
    deletion = metrics.deletion(tiny_model, limited.images, limited["scorecam"], 2)
    row = rows["scorecam (max_channels=3)"]
    assert float(row["deletion_auc"]) == pytest.approx(float(deletion.auc[0]), abs=1e-5)


def test_resume_skips_finished_rows(tmp_path: Path, tiny_model: camkit.LoadedModel) -> None:
    paths = [write_image(tmp_path / f"img{i}.png", i) for i in range(2)]
    items = [LabelledImage(p, None, "prediction") for p in paths]
    out = tmp_path / "out"
    out.mkdir()
    options = {"road_percentages": (), "images_per_batch": 1}
    evaluate_folder(tiny_model, items[:1], ["center"], ["block"], out, **options)
    evaluate_folder(tiny_model, items, ["center"], ["block"], out, resume=True, **options)
    rows = read_csv(out / "per_image.csv")
    assert [r["file"] for r in rows] == ["img0.png", "img1.png"]
    assert rows[0]["road_morf"] == ""


def test_resume_does_not_explain_finished_images_again(
    tmp_path: Path, tiny_model: camkit.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [write_image(tmp_path / f"img{i}.png", i) for i in range(3)]
    items = [LabelledImage(p, None, "prediction") for p in paths]
    out = tmp_path / "out"
    out.mkdir()
    options = {"road_percentages": (), "images_per_batch": 1}
    evaluate_folder(tiny_model, items[:2], ["gradcam"], ["auto"], out, **options)
    explained: list[int] = []
    original = camkit._evaluate.explain

    def counting(model: object, x: torch.Tensor, **kwargs: object) -> object:
        explained.append(int(x.shape[0]))
        return original(model, x, **kwargs)

    monkeypatch.setattr(camkit._evaluate, "explain", counting)
    evaluate_folder(tiny_model, items, ["gradcam"], ["auto"], out, resume=True, **options)
    assert explained == [1]  # the third image only
    rows = read_csv(out / "per_image.csv")
    assert [r["file"] for r in rows] == ["img0.png", "img1.png", "img2.png"]
    assert len({r["layer"] for r in rows}) == 1


def test_write_summary_merges_runs_counting_each_row_once(tmp_path: Path) -> None:
    header = "file,method,layer,correct,drop,increase,deletion_auc,insertion_auc,"
    header += "road_morf,road_lerf,explain_ms\n"
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(header + "x.png,gradcam,l,1,0.2,0,0.1,0.5,,,3\n")
    second.write_text(
        header + "x.png,gradcam,l,1,0.2,0,0.1,0.5,,,3\ny.png,gradcam,l,0,0.4,1,0.3,0.7,,,5\n"
    )
    curves = tmp_path / "curves.csv"
    curves.write_text("x.png,gradcam,l,deletion,1,0\ny.png,gradcam,l,deletion,0.5,0\n")
    write_summary([first, second], [curves], tmp_path, "toy")
    (row,) = read_csv(tmp_path / "summary.csv")
    assert row["images"] == "2"
    assert float(row["drop"]) == pytest.approx(30.0)
    assert float(row["increase"]) == pytest.approx(50.0)
    assert float(row["insertion_auc"]) == pytest.approx(0.6)
    markdown = (tmp_path / "summary.md").read_text()
    # No row has ROAD scores: its columns are left out of the table (the CSV keeps them).
    assert "| gradcam | l | 2 | 30.0 | 50.0 | 0.200 | 0.600 | 4.0 |" in markdown
    assert "ROAD" not in markdown and "road_morf" in (tmp_path / "summary.csv").read_text()
    assert "50% top-1 on the 2 labelled images" in markdown


# ------------------------------------------------------------------------------------------
# Progress and the ranking check
# ------------------------------------------------------------------------------------------


def test_progress_reports_each_method_and_metric(
    tmp_path: Path, tiny_model: camkit.LoadedModel
) -> None:
    paths = [write_image(tmp_path / "images" / f"img{i}.png", i) for i in range(3)]
    items = [LabelledImage(p, None, "prediction") for p in paths]
    out = tmp_path / "out"
    out.mkdir()
    events: list[tuple[str, bool]] = []
    methods = ["gradcam", "layercam", "random"]
    options = {"road_percentages": (50,), "images_per_batch": 2}
    evaluate_folder(
        tiny_model, items, methods, ["block"], out, progress=lambda *e: events.append(e), **options
    )
    per_batch = [
        "explain gradcam",
        "explain layercam",
        "Average Drop",
        "deletion",
        "insertion",
        "ROAD",
    ]
    # Each step is announced when it starts, then counted when it ends; two batches of images.
    expected = [(step, finished) for step in per_batch for finished in (False, True)] * 2
    assert events == expected
    assert evaluation_steps(3, methods, ["block"], **options) == len(expected) // 2 == 12
    assert evaluation_steps(3, methods, ["block"], images_per_batch=2) == 10  # no ROAD


def test_road_is_off_unless_asked(tmp_path: Path, tiny_model: camkit.LoadedModel) -> None:
    path = write_image(tmp_path / "img0.png", 0)
    out = tmp_path / "out"
    out.mkdir()
    evaluate_folder(tiny_model, [LabelledImage(path, 1, "labels.csv")], ["center"], ["auto"], out)
    (row,) = read_csv(out / "per_image.csv")
    assert row["road_morf"] == "" and row["deletion_auc"] != ""


def _rows(values: dict[str, list[float]], column: str = "drop") -> dict:
    """per_image rows for (method -> one value per image), one metric filled in."""
    rows = {}
    for method, scores in values.items():
        layer = "-" if method in ("random", "center") else "l"
        for index, value in enumerate(scores):
            row = {c: "" for c in ("drop", "increase", "deletion_auc", "insertion_auc")}
            row[column] = str(value)
            rows[(f"img{index}.png", method, layer)] = row
    return rows


def test_paired_difference_by_hand() -> None:
    # Differences 1, 2, 3: mean 2, sd 1, margin t(2) / sqrt(3) = 4.303 / 1.732 = 2.484.
    difference = paired_difference({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 0, "b": 0, "c": 0})
    assert difference.images == 3 and difference.mean == 2.0
    assert difference.margin == pytest.approx(4.303 / 3**0.5, abs=1e-3)
    assert not difference.resolved
    # n = 4 is the first where 2 > t(n-1) / sqrt(n): 3.182 / 2 = 1.591 (n = 3 gives 2.484).
    assert difference.needed == 4
    # Paired: the images differ widely, the method beats the baseline on each by 1 +- 0.1.
    base = {"a": 0.0, "b": 50.0, "c": 100.0, "d": 25.0}
    ahead = {"a": 1.1, "b": 50.9, "c": 101.0, "d": 26.0}
    assert paired_difference(ahead, base).resolved
    assert paired_difference({"a": 1.0}, {"a": 0.0}).needed is None  # no spread from one image
    assert t_quantile_975(10) == pytest.approx(2.228, abs=1e-3)
    assert t_quantile_975(40) == pytest.approx(2.021, abs=1e-3)  # past the table: the expansion
    assert t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)


def test_ranking_check_warns_on_three_images_and_says_how_many_are_needed() -> None:
    # As seen on 3 real images: random "beats" gradcam on Average Drop, within chance.
    rows = _rows({"gradcam": [0.30, 0.45, 0.26], "random": [0.10, 0.20, 0.17]})
    lines = ranking_check(rows)
    text = "\n".join(lines)
    assert "too few images" in text and "With 3 images" in text
    line = next(line for line in lines if line.startswith("- Average Drop"))
    # gradcam - random = 20, 25, 9 (%): mean 18.0, sd 8.19, margin 4.303 * 8.19 / sqrt(3) = 20.3.
    assert (
        "gradcam is not told apart from random (gradcam 33.7 vs random 15.7: +18.0 ± 20.3)" in line
    )
    # With this mean and sd, n = 4 gives 3.182 * 8.19 / 2 = 13.0 < 18.0: about 4 images.
    assert "about 4 images would resolve" in line


def test_ranking_check_is_quiet_when_the_differences_hold() -> None:
    gradcam = [0.10 + 0.01 * (i % 3) for i in range(20)]
    random = [0.50 + 0.02 * (i % 5) for i in range(20)]
    lines = ranking_check(_rows({"gradcam": gradcam, "random": random}))
    assert lines == [
        "Ranking check: every difference from random is beyond chance (95% margin of the "
        "paired per-image differences, 20 images)."
    ]
    one = ranking_check(_rows({"gradcam": [0.1], "random": [0.5]}))
    assert one[0].startswith("**Too few images to rank these methods:** with 1 image")
    # Without the random reference, the best two rows are compared.
    close = ranking_check(_rows({"gradcam": [0.10, 0.30, 0.20], "layercam": [0.11, 0.28, 0.22]}))
    assert any("the best two rows are not told apart" in line for line in close)
    # Several methods against random: counted, with a typical example.
    many = ranking_check(
        _rows(
            {
                "a": [0.3, 0.4, 0.2],
                "b": [0.9, 0.8, 0.85],
                "c": [0.31, 0.1, 0.4],
                "random": [0.3] * 3,
            }
        )
    )
    assert any("2 of 3 methods are not told apart from random (e.g. " in line for line in many)


# ------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------


def test_cli_evaluate_on_shared_images(tmp_path: Path) -> None:
    folder = shared_path("images")
    out = tmp_path / "scores"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(folder),
            "--model",
            "mobilenet_v3_small",  # random weights: the command, not the model, is under test
            "--weights",
            "none",
            "--limit",
            "1",
            "--method",
            "gradcam",
            "--method",
            "center",
            "--road-percent",
            "50",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "per_image.csv")
    assert len(rows) == 2 and {r["method"] for r in rows} == {"gradcam", "center"}
    assert all(r["label_source"] == "prediction" for r in rows)
    assert all(0 <= float(r["deletion_auc"]) <= 1 for r in rows)
    assert all(r["road_morf_50"] != "" for r in rows)
    markdown = (out / "summary.md").read_text()
    assert "| gradcam | features | 1 |" in markdown and "| center | - | 1 |" in markdown
    assert "ROAD MoRF" in markdown
    # One image: no spread, so no ranking; the summary says so, in the file and on the screen.
    assert "**Too few images to rank these methods:** with 1 image" in markdown
    assert "Too few images" in result.stdout
    # The bar counts steps: explain gradcam, then Average Drop, deletion, insertion and ROAD.
    assert "5/5" in result.stderr
    assert len(read_csv(out / "summary.csv")) == 2
    assert Image.open(out / "curves.png").format == "PNG"


def test_cli_evaluate_sanity_reports_every_step_and_the_rule(tmp_path: Path) -> None:
    out = tmp_path / "scores"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(shared_path("images")),
            "--model",
            "efficientnet_lite0",  # offline and trained: a random model's maps would be flat
            "--limit",
            "1",
            "--method",
            "gradcam",
            "--method",
            "eigencam",
            "--method",
            "center",
            "--sanity",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "sanity.csv")
    assert [row["method"] for row in rows] == ["gradcam", "eigencam"]  # no reference maps
    eigencam = rows[1]
    steps = [key for key in eigencam if key not in
             ("method", "images", "layer", "perturbation", "first_below", "passed")]  # fmt: skip
    assert steps[:2] == ["_fc", "_bn1"] and len(steps) == 21  # every step, from the output down
    # Eigen-CAM reads only the explained layer's activations: the classifier cannot change it.
    assert float(eigencam[steps[0]]) == pytest.approx(1.0, abs=1e-6)
    assert eigencam["passed"] == "False"
    markdown = (out / "sanity.md").read_text()
    assert "| 1. _fc |" in markdown and "first below 0.5" in markdown
    assert "eigencam: fails: the map survives randomising '_fc'" in markdown
    assert "Sanity check" in result.stdout


def test_cli_evaluate_leaves_road_out_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def recording(path: Path, **options: object) -> None:
        asked.append(str(options["road_percent"]))

    monkeypatch.setattr(camkit._evaluate, "run_evaluate", recording)
    folder = tmp_path / "images"
    write_image(folder / "a.png", 0)
    for options in (
        [],
        ["--road"],
        ["--road-percent", "20,40"],
        ["--road", "--road-percent", "none"],
    ):
        out = tmp_path / f"out{len(asked)}"
        result = CliRunner().invoke(main, ["evaluate", str(folder), "--out", str(out), *options])
        assert result.exit_code == 0, result.output
    assert asked == ["none", "10,50,90", "20,40", "none"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing", "not found; pass a folder of images"),
        (lambda p: write_image(p / "one.png", 0), "is a file; pass the folder"),
        (lambda p: p, "is empty; pass a folder of images"),
        (lambda p: (p / "a.txt").write_text("x") and p, "no images"),
    ],
)
def test_cli_evaluate_bad_folders(tmp_path: Path, setup, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = setup(tmp_path)
    result = CliRunner().invoke(main, ["evaluate", str(folder), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1


def test_cli_evaluate_bad_options(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_image(folder / "a.png", 0)
    blocker = write_image(tmp_path / "file.png", 1)
    runner = CliRunner()
    cases = [
        (["--out", str(blocker)], "is a file; pass a folder"),
        (["--out", str(blocker / "sub")], "cannot create output folder"),
        (["--method", "gradcan"], "closest: 'gradcam'"),
        (["--road-percent", "0,50"], "values from 1 to 99"),
        (["--road-percent", "ten"], "not a list of whole percentages"),
    ]
    for options, message in cases:
        result = runner.invoke(main, ["evaluate", str(folder), *options])
        assert result.exit_code == 2, options
        assert message in result.output, (options, result.output)


def test_cli_evaluate_that_fails_leaves_no_empty_out_folder(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_image(folder / "a.png", 0)
    out = tmp_path / "new" / "scores"
    # The folder is made before the model loads; the unknown model then fails the run.
    result = CliRunner().invoke(
        main, ["evaluate", str(folder), "--model", "nosuchnet", "--out", str(out)]
    )
    assert result.exit_code == 2 and "unknown model" in result.output
    assert not (tmp_path / "new").exists()


def test_cli_evaluate_defaults_are_fast_methods_without_road(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_image(folder / "a.png", 0, size=64)
    out = tmp_path / "scores"
    options = ["--model", "mobilenet_v3_small", "--weights", "none", "--out", str(out)]
    result = CliRunner().invoke(main, ["evaluate", str(folder), *options])
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "per_image.csv")
    assert [r["method"] for r in rows] == ["gradcam", "gradcam++", "center", "random"]
    assert all(r["road_morf"] == "" for r in rows)
    assert "note: the default methods; add others with --method NAME" in result.stderr
    assert "scorecam" in result.stderr  # named among those that are left out
    assert "5/5" in result.stderr  # explain gradcam, gradcam++; Average Drop, deletion, insertion
