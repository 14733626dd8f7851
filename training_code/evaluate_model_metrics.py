"""Evaluate a trained sentiment classifier on the test split; SageMaker processing-job script.

``python3 evaluate_model_metrics.py --input-model DIR --input-data DIR --output-data DIR
[--max-seq-length N] [--batch-size N]``

- ``--input-model``: a folder holding ``model.tar.gz`` (as SageMaker writes it; searched recursively), the path of
  such an archive, or a folder already holding the saved model (``config.json``).
- ``--input-data``: a folder of ``*.tsv`` files with the header ``sentiment<TAB>review_body``.
- ``--output-data``: gets ``evaluation.json`` and ``confusion_matrix.png``.

The classifier is rebuilt with the pooling it was trained with (``classifier_pooling`` in its config). Needs torch,
transformers, scikit-learn and matplotlib in the processing image.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from modeling import choose_precision, classification_logits, load_for_inference, peak_rss_mb
from review_data import LABELS, ReviewDataError, read_reviews, sorted_batches, tokenize

DISPLAY_NAMES: dict[int, str] = {-1: "negative", 0: "neutral", 1: "positive"}
DEFAULT_MAX_SEQ_LENGTH = 128


class ModelNotFoundError(FileNotFoundError):
    """No saved model and no ``model.tar.gz`` under ``--input-model``."""


def locate_model(input_model: Path, scratch: Path) -> Path:
    """The folder of the saved model: as given, or extracted from ``model.tar.gz`` into ``scratch``."""
    if input_model.is_dir() and (input_model / "config.json").is_file():
        return input_model
    if input_model.is_file() and input_model.name.endswith((".tar.gz", ".tgz", ".tar")):
        archive = input_model
    else:
        archives = sorted(input_model.rglob("model.tar.gz")) if input_model.is_dir() else []
        if not archives:
            raise ModelNotFoundError(f"{input_model}: neither a saved model (config.json) nor a model.tar.gz")
        archive = archives[0]
    scratch.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(scratch, filter="data")
        else:  # Python < 3.11.4: the archive is SageMaker's own output
            tar.extractall(scratch)  # noqa: S202
    configs = sorted(scratch.rglob("config.json"), key=lambda path: len(path.parts))
    if not configs:
        raise ModelNotFoundError(f"{archive} holds no config.json")
    return configs[0].parent


def model_max_length(model_dir: Path) -> int:
    """The ``max_seq_length`` the model was trained with (``label_map.json``), else 128."""
    label_map = model_dir / "label_map.json"
    if label_map.is_file():
        return int(json.loads(label_map.read_text()).get("max_seq_length", DEFAULT_MAX_SEQ_LENGTH))
    return DEFAULT_MAX_SEQ_LENGTH


def predict(model_dir: Path, texts: list[str], max_seq_length: int, batch_size: int) -> list[int]:
    """Predicted sentiment (-1/0/1) of each text."""
    model, tokenizer, pooling = load_for_inference(model_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    precision = choose_precision("auto", device)
    id2label = {int(index): int(label) for index, label in model.config.id2label.items()}
    token_ids = tokenize(tokenizer, texts, max_seq_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    predicted = np.zeros(len(texts), dtype=np.int64)
    with torch.inference_mode():
        for rows, batch in sorted_batches(token_ids, [0] * len(texts), batch_size, pad_id):
            with precision.autocast(device):
                logits = classification_logits(
                    model, batch.input_ids.to(device), batch.attention_mask.to(device), pooling
                )
            predicted[rows] = logits.argmax(dim=-1).cpu().numpy()
    return [id2label[int(index)] for index in predicted]


def compute_metrics(y_true: list[int], y_pred: list[int]) -> dict:
    """The ``metrics`` object of evaluation.json."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(LABELS)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": {"value": float(accuracy_score(y_true, y_pred))},
        "macro_f1": {
            "value": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
        },
        "weighted_f1": {
            "value": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))
        },
        "per_class": {
            str(label): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": labels,
            "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
    }


def plot_confusion_matrix(matrix: list[list[int]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(
        np.asarray(matrix), display_labels=[DISPLAY_NAMES[label] for label in LABELS]
    )
    figure, axes = plt.subplots(figsize=(5, 4.5), dpi=120)
    display.plot(ax=axes, cmap="Blues", colorbar=False, values_format="d")
    axes.set_title("Test set confusion matrix")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def evaluate(
    input_model: Path, input_data: Path, output_data: Path, max_seq_length: int | None, batch_size: int
) -> dict:
    started = time.perf_counter()
    reviews = read_reviews(input_data)
    y_true = [LABELS[index] for index in reviews.label_ids]
    with tempfile.TemporaryDirectory(prefix="model-") as scratch:
        model_dir = locate_model(input_model, Path(scratch))
        length = max_seq_length or model_max_length(model_dir)
        y_pred = predict(model_dir, reviews.texts, length, batch_size)
    report = {"metrics": compute_metrics(y_true, y_pred), "test_rows": len(y_true)}
    output_data.mkdir(parents=True, exist_ok=True)
    (output_data / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_confusion_matrix(
        report["metrics"]["confusion_matrix"]["matrix"], output_data / "confusion_matrix.png"
    )
    print(
        f"test_rows: {len(y_true)} - test_accuracy: {100 * report['metrics']['accuracy']['value']:.2f} - "
        f"macro_f1: {report['metrics']['macro_f1']['value']:.4f} - seconds: {time.perf_counter() - started:.1f} - "
        f"peak_rss_mb: {peak_rss_mb():.0f}",
        flush=True,
    )
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-model", type=Path, default=Path("/opt/ml/processing/input/model"))
    parser.add_argument("--input-data", type=Path, default=Path("/opt/ml/processing/input/data"))
    parser.add_argument("--output-data", type=Path, default=Path("/opt/ml/processing/output/evaluation"))
    parser.add_argument(
        "--max-seq-length", type=int, default=None, help="default: the training max_seq_length"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        evaluate(args.input_model, args.input_data, args.output_data, args.max_seq_length, args.batch_size)
    except (ReviewDataError, ModelNotFoundError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
