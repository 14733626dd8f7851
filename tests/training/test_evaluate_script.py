"""evaluate_model_metrics.py as a processing job runs it, on a model trained by train.py and packed by SageMaker."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from evaluate_model_metrics import ModelNotFoundError, compute_metrics, locate_model

from .conftest import TRAINING_CODE, Channels, TrainedModel, make_model_tarball, script_env
from .conftest import make_rows as make_review_rows


def run_evaluation(
    input_model: Path, input_data: Path, output: Path, *extra: str
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(TRAINING_CODE / "evaluate_model_metrics.py"),
        "--input-model", str(input_model),
        "--input-data", str(input_data),
        "--output-data", str(output),
        *extra,
    ]  # fmt: skip
    return subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=300, check=False)


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
