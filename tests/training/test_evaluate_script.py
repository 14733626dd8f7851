"""evaluate_model_metrics.py as a processing job runs it, on a model trained by train.py and packed by SageMaker."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from evaluate_model_metrics import (
    ModelNotFoundError,
    compare_with_champion,
    compute_metrics,
    locate_model,
    misclassified_examples,
    wilson_interval,
)
from review_hashes import HashesError, read_hashes, text_hash

from reviewtune.core import train_hashes

from .conftest import TRAINING_CODE, Channels, TrainedModel, make_model_tarball, script_env, write_tsv
from .conftest import make_rows as make_review_rows

# Runs a script with only what the Hugging Face inference image has: matplotlib and scikit-learn cannot be imported.
IMAGE_ONLY = """
import os, runpy, sys
# None in sys.modules: `import` raises ImportError and importlib.util.find_spec says absent, as without the package
sys.modules.update(matplotlib=None, sklearn=None)
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as `python3 script.py` does
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_evaluation(
    input_model: Path, input_data: Path, output: Path, *extra: str, image_only: bool = False, **env: str
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        *(["-c", IMAGE_ONLY] if image_only else []),
        str(TRAINING_CODE / "evaluate_model_metrics.py"),
        "--input-model", str(input_model),
        "--input-data", str(input_data),
        "--output-data", str(output),
        *extra,
    ]  # fmt: skip
    return subprocess.run(command, env=script_env(**env), capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_evaluates_a_packed_model(
    trained_mean_model: TrainedModel, channels: Channels, tmp_path: Path
) -> None:
    make_model_tarball(trained_mean_model.model_dir, tmp_path / "input" / "model")
    output = tmp_path / "evaluation"

    result = run_evaluation(tmp_path / "input" / "model", channels.test, output, "--batch-size", "4")

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((output / "evaluation.json").read_text())
    metrics = report["metrics"]
    matrix = metrics["confusion_matrix"]["matrix"]
    assert metrics["confusion_matrix"]["labels"] == [-1, 0, 1]
    assert report["test_rows"] == 15 == sum(map(sum, matrix))
    assert metrics["accuracy"]["value"] == pytest.approx(sum(matrix[i][i] for i in range(3)) / 15)
    expected_support = Counter(label for label, _ in make_review_rows(15, seed=4))
    for row, label in zip(matrix, ("-1", "0", "1"), strict=True):
        assert metrics["per_class"][label]["support"] == sum(row) == expected_support[int(label)]
    assert 0 <= metrics["macro_f1"]["value"] <= 1
    assert f"test_accuracy: {100 * metrics['accuracy']['value']:.2f}" in result.stdout
    assert (output / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    low, high = metrics["accuracy"]["ci95"]
    assert low <= metrics["accuracy"]["value"] <= high


@pytest.mark.slow
def test_without_matplotlib_and_sklearn_the_metrics_and_a_report_without_images_come_out(
    trained_mean_model: TrainedModel, channels: Channels, tmp_path: Path
) -> None:
    output, report = tmp_path / "evaluation", tmp_path / "evaluation" / "report"
    run = {"run_id": "reviewtune-0123", "dataset": "team-a/r.tsv", "tuning": {"trials": []}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps(run))

    result = run_evaluation(
        trained_mean_model.model_dir, channels.test, output, "--input-run", str(tmp_path / "run"),
        "--output-report", str(report), image_only=True,
        REVIEWTUNE_EVAL_PIP="1", PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path),  # pip is tried and cannot install
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "matplotlib is missing: pip install -r requirements-evaluation.txt" in result.stdout
    assert "warning: matplotlib is not available: the report has no images" in result.stdout
    metrics = json.loads((output / "evaluation.json").read_text())["metrics"]
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 15
    assert len(metrics["accuracy"]["ci95"]) == 2
    assert not (output / "confusion_matrix.png").exists()
    page = (report / "index.html").read_text()
    assert 'data-key="no-images"' in page and "<img" not in page
    assert f'data-key="test-accuracy">{100 * metrics["accuracy"]["value"]:.2f}<' in page


@pytest.mark.slow
def test_a_report_that_cannot_be_made_leaves_the_results_and_a_page_that_says_why(
    trained_mean_model: TrainedModel, channels: Channels, tmp_path: Path
) -> None:
    output, report = tmp_path / "evaluation", tmp_path / "evaluation" / "report"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("[1, 2]")  # no shape the report knows

    result = run_evaluation(
        trained_mean_model.model_dir, channels.test, output, "--input-run", str(tmp_path / "run"),
        "--output-report", str(report),
    )

    assert result.returncode == 0, result.stderr[-3000:]  # the run's results stand: the job succeeds
    metrics = json.loads((output / "evaluation.json").read_text())["metrics"]
    assert "report: not written (AttributeError" in result.stdout
    page = (report / "index.html").read_text()
    assert "data-key='unwritten'" in page and "AttributeError" in page
    assert f"{100 * metrics['accuracy']['value']:.2f} %" in page


@pytest.mark.slow
def test_model_folder_without_archive_is_used_directly(
    trained_cls_model: TrainedModel, channels: Channels, tmp_path: Path
) -> None:
    result = run_evaluation(
        trained_cls_model.model_dir, channels.test, tmp_path / "out", "--max-seq-length", "16"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["test_rows"] == 15


def test_missing_model_is_a_clear_error(channels: Channels, tmp_path: Path) -> None:
    result = run_evaluation(tmp_path, channels.test, tmp_path / "out")
    assert result.returncode == 1
    assert "neither a saved model (config.json) nor a model.tar.gz" in result.stderr


def test_locate_model_finds_a_nested_archive(tmp_path: Path) -> None:
    model = tmp_path / "saved"
    model.mkdir()
    (model / "config.json").write_text("{}")
    make_model_tarball(model, tmp_path / "input" / "job-1" / "output")
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    assert locate_model(tmp_path / "input", scratch) == scratch
    assert locate_model(model, scratch) == model
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(ModelNotFoundError, match="holds no config.json"):
        locate_model(empty, tmp_path / "scratch2")
    whole = (tmp_path / "input" / "job-1" / "output" / "model.tar.gz").read_bytes()
    corrupt = {"cut.tar.gz": whole[: len(whole) // 2], "junk.tar.gz": b"not an archive at all",
               "tail-cut.tar.gz": whole[:-4]}
    for share in range(1, 10):  # a byte of the compressed stream changed: zlib's error, or only gzip's CRC at its end
        flipped = bytearray(whole)
        flipped[len(whole) * share // 10] ^= 0xFF
        corrupt[f"flipped-{share}.tar.gz"] = bytes(flipped)
    for name, content in corrupt.items():
        (tmp_path / name).write_bytes(content)  # a model upload cut short, a corrupt one
        with pytest.raises(ModelNotFoundError, match=rf"{name} cannot be unpacked: \w+"):
            locate_model(tmp_path / name, tmp_path / f"scratch-{name}")


def test_metrics_of_a_known_prediction() -> None:
    y_true = [-1, -1, 0, 0, 1, 1]
    y_pred = [-1, 0, 0, 0, 1, -1]
    metrics = compute_metrics(y_true, y_pred)
    assert metrics["accuracy"]["value"] == pytest.approx(4 / 6)
    assert metrics["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics["per_class"]["0"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": 0.8,
        "support": 2,
    }
    assert metrics["macro_f1"]["value"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_metrics_equal_scikit_learn_on_random_predictions() -> None:
    import random

    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    rng = random.Random(3)
    y_true = [rng.choice((-1, 0, 1)) for _ in range(300)]
    y_pred = [rng.choice((-1, 0, 0, 1)) for _ in range(299)] + [-1]
    metrics = compute_metrics(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=[-1, 0, 1], zero_division=0)
    for i, label in enumerate(("-1", "0", "1")):
        assert metrics["per_class"][label] == {
            "precision": pytest.approx(precision[i]), "recall": pytest.approx(recall[i]),
            "f1": pytest.approx(f1[i]), "support": int(support[i]),
        }
    assert metrics["macro_f1"]["value"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics["weighted_f1"]["value"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert metrics["confusion_matrix"]["matrix"] == confusion_matrix(y_true, y_pred, labels=[-1, 0, 1]).tolist()
    # a class neither in the test rows nor predicted has no F1: the macro average leaves it out, as scikit-learn's
    perfect = compute_metrics([0, 1, 1, 0], [0, 1, 1, 0])
    assert perfect["macro_f1"]["value"] == f1_score([0, 1, 1, 0], [0, 1, 1, 0], average="macro") == 1.0
    wrong = ([0, 1, 1, 0], [0, 1, -1, 0])  # -1 predicted once: it counts, with its F1 of 0
    assert compute_metrics(*wrong)["macro_f1"]["value"] == pytest.approx(f1_score(*wrong, average="macro"))


def test_a_class_never_predicted_has_zero_precision_not_an_error() -> None:
    metrics = compute_metrics([-1, 0, 1, 1], [1, 1, 1, 1])
    assert metrics["per_class"]["-1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["per_class"]["1"]["precision"] == 0.5


@pytest.mark.parametrize(("hits", "total"), [(8, 10), (0, 20), (20, 20), (693, 1000)])
def test_wilson_interval_equals_scipy(hits: int, total: int) -> None:
    from scipy.stats import binomtest

    expected = binomtest(hits, total).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(hits, total) == [pytest.approx(expected.low), pytest.approx(expected.high)]


def test_misclassified_examples_take_a_few_per_class_pair() -> None:
    texts = [f"review {i}" for i in range(10)]
    y_true = [-1, -1, -1, -1, 0, 0, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 0, 0, 1, 1, -1, -1, 1]
    examples = misclassified_examples(texts, y_true, y_pred, per_pair=2)
    assert [(e["true"], e["predicted"], e["text"]) for e in examples] == [
        (-1, 0, "review 0"), (-1, 0, "review 1"), (0, 1, "review 5"), (1, -1, "review 7"), (1, -1, "review 8"),
    ]


# ------------------------------------------------------------------------------------------------ champion comparison

TRICKY_TEXTS = [
    "Great  dress!", "great dress! ", "\tGREAT DRESS!\n", "ＬＯＶＥ it", "Straße", "STRASSE", "ﬁt is ﬁne",
    "café", "cafe\u0301", "", "   ", "a\u00a0b", "emoji 👗 ok", "line\r\nbreak",
]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_the_container_hashes_reviews_as_the_run_recorded_them(text: str) -> None:
    assert text_hash(text) == train_hashes.text_hash(text)


def test_hashes_are_read_from_the_file_the_run_wrote_or_its_folder(tmp_path: Path) -> None:
    texts = ["Great  dress!", "too small", "love it"]
    folder = tmp_path / "input" / "champion" / "train_hashes"
    folder.mkdir(parents=True)
    body = "".join(f"{digest}\n" for digest in sorted(train_hashes.text_hashes(texts)))
    (folder / "train_hashes.txt").write_text(body, encoding="ascii")

    assert read_hashes(folder) == read_hashes(folder / "train_hashes.txt") == {text_hash(t) for t in texts}
    (folder / "train_hashes.txt").write_text("not-a-hash\n")
    with pytest.raises(HashesError, match="line 1"):
        read_hashes(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HashesError, match="no train_hashes.txt in this folder"):
        read_hashes(tmp_path / "empty")
    with pytest.raises(HashesError, match="no such file"):
        read_hashes(tmp_path / "nothing-here.txt")


def test_the_champion_is_scored_on_the_challenger_s_rows_less_the_ones_it_trained_on() -> None:
    texts = ["good one", "Bad One", "meh", "great", "awful", "fine"]
    y_true = [1, -1, 0, 1, -1, 0]
    y_pred = [1, -1, 1, 1, 0, 0]  # right on rows 0, 1, 3, 5
    asked: list[list[str]] = []

    def champion(batch: list[str]) -> list[int]:
        asked.append(batch)
        return [{"meh": 0, "great": -1, "awful": -1, "fine": 0}[t] for t in batch]  # right on meh, awful, fine

    section = compare_with_champion("r1", texts, y_true, y_pred, {text_hash("bad  one"), text_hash("GOOD ONE")}, champion)

    assert asked == [["meh", "great", "awful", "fine"]]  # the same rows, in one call
    assert section == {
        "champion_run_id": "r1",
        "rows_compared": 4,
        "rows_left_out": 2,
        "overlap_checked": True,
        "challenger_correct": 2,
        "champion_correct": 3,
        "challenger_accuracy": 0.5,
        "champion_accuracy": 0.75,
        "challenger_only_correct": 1,  # great
        "champion_only_correct": 2,  # meh, awful
    }


def test_without_hashes_every_row_is_compared_and_with_all_rows_seen_none_is() -> None:
    texts, y_true, y_pred = ["a", "b"], [1, 0], [1, 1]

    unknown = compare_with_champion("r1", texts, y_true, y_pred, None, lambda batch: [0] * len(batch))
    seen = compare_with_champion("r1", texts, y_true, y_pred, {text_hash("a"), text_hash("b")}, pytest.fail)

    assert (unknown["rows_compared"], unknown["rows_left_out"], unknown["overlap_checked"]) == (2, 0, False)
    assert (unknown["challenger_accuracy"], unknown["champion_accuracy"]) == (0.5, 0.5)
    assert (seen["rows_compared"], seen["rows_left_out"], seen["challenger_accuracy"]) == (0, 2, None)


@pytest.mark.slow
def test_evaluates_the_challenger_and_the_champion_on_the_same_rows(
    trained_mean_model: TrainedModel, trained_cls_model: TrainedModel, channels: Channels, tmp_path: Path
) -> None:
    make_model_tarball(trained_cls_model.model_dir, tmp_path / "champion" / "model")
    rows = make_review_rows(15, seed=4)
    seen = [text for _, text in rows[:5]]  # the champion "trained on" the first five test reviews
    hashes = tmp_path / "champion" / "train_hashes"
    hashes.mkdir(parents=True)
    (hashes / "train_hashes.txt").write_text("".join(f"{h}\n" for h in sorted(train_hashes.text_hashes(seen))))
    output = tmp_path / "evaluation"

    result = run_evaluation(
        trained_mean_model.model_dir, channels.test, output, "--batch-size", "4",
        "--champion-model", str(tmp_path / "champion" / "model"), "--champion-run-id", "reviewtune-r1",
        "--champion-train-hashes", str(hashes),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((output / "evaluation.json").read_text())
    comparison = report["comparison"]
    assert report["test_rows"] == 15  # the challenger's own metrics cover the whole split
    assert (comparison["champion_run_id"], comparison["rows_compared"], comparison["rows_left_out"]) == (
        "reviewtune-r1", 10, 5)
    # Each model alone on exactly the 10 compared rows gives the same accuracies.
    compared = tmp_path / "compared"
    write_tsv(compared / "test.tsv", rows[5:])
    for model, key in ((trained_mean_model.model_dir, "challenger_accuracy"), (trained_cls_model.model_dir, "champion_accuracy")):
        alone = tmp_path / f"alone-{key}"
        assert run_evaluation(model, compared, alone, "--batch-size", "4").returncode == 0
        assert comparison[key] == pytest.approx(json.loads((alone / "evaluation.json").read_text())["metrics"]["accuracy"]["value"])
    assert "champion reviewtune-r1: rows_compared: 10 - rows_left_out: 5" in result.stdout


def test_a_model_is_scored_at_the_length_it_was_trained_with(tmp_path: Path) -> None:
    """start_evaluation passes no --max-seq-length: a run's static hyperparameters or tuned ranges may have trained
    at 256 while MaxSeqLength says 128, and each model (challenger and champion alike) is scored at its own."""
    from evaluate_model_metrics import model_max_length

    (tmp_path / "label_map.json").write_text(json.dumps({"max_seq_length": 256}))
    assert model_max_length(tmp_path) == 256
    assert model_max_length(tmp_path / "absent") == 128


def test_a_length_past_the_model_s_positions_is_cut_to_them(trained_cls_model: TrainedModel) -> None:
    """A model whose label_map asks for more tokens than its positions (made elsewhere): its reviews are cut to what
    the model reads, not a RuntimeError on the first long review."""
    import evaluate_model_metrics

    long_review = " ".join(["the dress fits well and the fabric is soft"] * 120)  # ~1,100 tokens
    predicted = evaluate_model_metrics.predict(trained_cls_model.model_dir, [long_review, "bad"], 1024, 2)
    assert len(predicted) == 2 and set(predicted) <= {-1, 0, 1}
