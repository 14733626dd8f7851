"""Evaluate a trained sentiment classifier on the test split; SageMaker processing-job script.

``python3 evaluate_model_metrics.py --input-model DIR --input-data DIR --output-data DIR
[--max-seq-length N] [--batch-size N]``

- ``--input-model``: a folder holding ``model.tar.gz`` (as SageMaker writes it; searched recursively), the path of
  such an archive, or a folder already holding the saved model (``config.json``).
- ``--input-data``: a folder of ``*.tsv`` files with the header ``sentiment<TAB>review_body``.
- ``--output-data``: gets ``evaluation.json`` and ``confusion_matrix.png``.
- ``--input-run`` (optional): a folder holding ``run.json`` (the run's config, data summary, trials and this
  dataset's earlier runs, written by start_evaluation) for the report.
- ``--output-report`` (optional): gets ``index.html``, the run's self-contained HTML report.
- ``--champion-model`` (optional): the dataset's champion model (as ``--input-model``), measured on the same test
  reviews; ``--champion-run-id`` names it and ``--champion-train-hashes`` (a ``train_hashes.txt`` or its folder)
  lists the hashes of the reviews it was trained on: those test reviews are left out of the comparison, so an
  overlap between exports cannot favour the champion. evaluation.json then has a ``comparison`` object: both
  accuracies on the same rows, how many rows were compared and how many left out. A champion whose model cannot be
  used is not measured (``champion_not_measured``: its run id and the error); hashes that cannot be read, or none,
  leave every test review compared (``overlap_checked`` false).
- ``--exit-message`` (optional): on a failure, the error is written there too (SageMaker reads
  ``/opt/ml/output/message`` as the processing job's ``ExitMessage``).

The classifier is rebuilt with the pooling it was trained with (``classifier_pooling`` in its config). The metrics
need only torch, transformers and numpy (what the Hugging Face inference image has). The plots need matplotlib:
when it is missing, it is installed from ``requirements-evaluation.txt``; when that fails too, the report comes out
without images (and says so) and evaluation.json is written all the same.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import tarfile
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import report_plots
import run_report
import torch
from modeling import choose_precision, classification_logits, load_for_inference, max_tokens, peak_rss_mb
from review_data import LABELS, ReviewDataError, read_reviews, sorted_batches, tokenize
from review_hashes import HashesError, read_hashes, text_hash

DISPLAY_NAMES = report_plots.CLASS_NAMES
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
    try:
        if archive.name.endswith((".gz", ".tgz")):  # read to its end once: gzip checks its CRC only there (tarfile
            with gzip.open(archive) as whole:  # stops at the archive's end marker, so a flipped byte went unseen)
                while whole.read(1 << 20):
                    pass
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(scratch, filter="data")
            else:  # Python < 3.11.4: the archive is SageMaker's own output
                tar.extractall(scratch)  # noqa: S202
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:  # cut short, corrupt, not an archive
        raise ModelNotFoundError(f"{archive} cannot be unpacked: {type(error).__name__}: {error}") from None
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
    token_ids = tokenize(tokenizer, texts, min(max_seq_length, max_tokens(tokenizer, model.config) or max_seq_length))
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


def wilson_interval(successes: int, total: int, z: float = 1.959963984540054) -> list[float]:
    """The Wilson score interval of a proportion (95 % by default): ``[low, high]``."""
    if total <= 0:
        return [0.0, 1.0]
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


def compute_metrics(y_true: list[int], y_pred: list[int]) -> dict:
    """The ``metrics`` object of evaluation.json (numpy only: the processing image need not have scikit-learn)."""
    labels = list(LABELS)
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for true, pred in zip(y_true, y_pred, strict=True):
        matrix[index[true], index[pred]] += 1
    correct = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, correct / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, correct / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    total = int(matrix.sum())
    hits = int(correct.sum())
    # as scikit-learn's macro average: over the classes the test rows or the predictions hold (a class absent from
    # both has no F1, and counting it 0 cut a perfect model's to 0.667)
    present = (support > 0) | (predicted > 0)
    return {
        "accuracy": {"value": hits / total if total else 0.0, "ci95": wilson_interval(hits, total)},
        "macro_f1": {"value": float(f1[present].mean()) if present.any() else 0.0},
        "weighted_f1": {"value": float((f1 * support).sum() / total) if total else 0.0},
        "per_class": {
            str(label): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
    }


def misclassified_examples(
    texts: list[str], y_true: list[int], y_pred: list[int], per_pair: int = 3, max_chars: int = 400
) -> list[dict]:
    """A few wrongly classified test reviews for every (true, predicted) pair, in test-file order."""
    examples: list[dict] = []
    taken: dict[tuple[int, int], int] = {}
    for text, true, pred in zip(texts, y_true, y_pred, strict=True):
        if true == pred or taken.get((true, pred), 0) >= per_pair:
            continue
        taken[(true, pred)] = taken.get((true, pred), 0) + 1
        shown = text if len(text) <= max_chars else text[: max_chars - 1] + "\u2026"
        examples.append({"true": true, "predicted": pred, "text": shown})
    return examples


def compare_with_champion(
    champion_run_id: str,
    texts: list[str],
    y_true: list[int],
    y_pred: list[int],
    trained_on: set[str] | None,
    champion_predict: Callable[[list[str]], list[int]],
) -> dict:
    """The ``comparison`` object of evaluation.json: the challenger's predictions ``y_pred`` and the champion's
    (``champion_predict``, called once on the compared texts) scored on the same rows, the test reviews whose
    text hash is not in ``trained_on`` (all of them when ``trained_on`` is None: the hashes are unknown)."""
    compared = [i for i, text in enumerate(texts) if trained_on is None or text_hash(text) not in trained_on]
    section = {
        "champion_run_id": champion_run_id,
        "rows_compared": len(compared),
        "rows_left_out": len(texts) - len(compared),
        "overlap_checked": trained_on is not None,
        "challenger_accuracy": None,
        "champion_accuracy": None,
    }
    if not compared:
        return section
    champion_pred = champion_predict([texts[i] for i in compared])
    challenger_right = [y_pred[i] == y_true[i] for i in compared]
    champion_right = [pred == y_true[i] for i, pred in zip(compared, champion_pred, strict=True)]
    section.update(
        challenger_correct=sum(challenger_right),
        champion_correct=sum(champion_right),
        challenger_accuracy=sum(challenger_right) / len(compared),
        champion_accuracy=sum(champion_right) / len(compared),
        # the reviews one model only got right, each way: McNemar's test of the difference (champion.decide)
        challenger_only_correct=sum(a and not b for a, b in zip(challenger_right, champion_right, strict=True)),
        champion_only_correct=sum(b and not a for a, b in zip(challenger_right, champion_right, strict=True)),
    )
    return section


class ChampionUnusable(Exception):
    """The champion's model failed when it was used: its own fault, not this script's."""


def _not_measured(champion_run_id: str | None, error: BaseException) -> dict:
    """evaluation.json's ``champion_not_measured``: which champion, and what was wrong with it (printed, with the
    traceback of the error being handled, for the job's log)."""
    traceback.print_exc()
    section = {"champion_run_id": champion_run_id or "champion", "error": f"{type(error).__name__}: {str(error)[:300]}"}
    print(f"champion {section['champion_run_id']}: not measured: {section['error']}", flush=True)
    return section


def _champion_hashes(location: Path) -> set[str] | None:
    """The hashes of the reviews the champion trained on; None (unknown: every test review is compared, and
    evaluation.json says the overlap was not checked) when they cannot be read or there are none: no champion
    trained on no review."""
    try:
        hashes = read_hashes(location)
    except (HashesError, OSError) as error:
        print(f"champion's training hashes not read ({error}): every test review is compared", flush=True)
        return None
    return hashes or None


def _report_input(folder: Path, name: str) -> dict | None:
    """A file only the report reads: one that cannot be read costs the report its part, never evaluation.json."""
    try:
        return read_json(folder, name)
    except (ValueError, OSError) as error:
        print(f"{name} not read ({type(error).__name__}: {error}): the report goes without it", flush=True)
        return None


def read_json(folder: Path | None, name: str) -> dict | None:
    """``name`` found under ``folder`` (searched recursively), parsed; None when absent."""
    if folder is None or not folder.exists():
        return None
    found = [folder] if folder.is_file() else sorted(folder.rglob(name), key=lambda path: len(path.parts))
    return json.loads(found[0].read_text()) if found else None


def evaluate(
    input_model: Path,
    input_data: Path,
    output_data: Path,
    max_seq_length: int | None,
    batch_size: int,
    input_run: Path | None = None,
    output_report: Path | None = None,
    champion_model: Path | None = None,
    champion_run_id: str | None = None,
    champion_train_hashes: Path | None = None,
) -> dict:
    started = time.perf_counter()
    reviews = read_reviews(input_data)
    y_true = [LABELS[index] for index in reviews.label_ids]
    trained_on = _champion_hashes(champion_train_hashes) if champion_model and champion_train_hashes else None
    with tempfile.TemporaryDirectory(prefix="model-") as scratch:
        model_dir = locate_model(input_model, Path(scratch) / "challenger")
        length = max_seq_length or model_max_length(model_dir)
        y_pred = predict(model_dir, reviews.texts, length, batch_size)
        training_summary = _report_input(model_dir, "training_summary.json")
        comparison, not_measured = None, None
        if champion_model is not None:
            # The champion's artifacts are not this run's: whatever is wrong with them (a folder without its weights,
            # an archive cut short, another architecture) leaves it not measured, said why, never the run failed.
            # Only their own use is guarded: a fault of this script's comparison is the script's, and fails the job.
            def champion_predict(texts: list[str]) -> list[int]:
                try:  # the champion as it was trained: its own max_seq_length
                    predicted = predict(champion_dir, texts, model_max_length(champion_dir), batch_size)
                except Exception as error:  # noqa: BLE001
                    raise ChampionUnusable(error) from error
                if len(predicted) != len(texts):
                    mismatch = ValueError(f"{len(predicted)} predictions for {len(texts)} reviews")
                    raise ChampionUnusable(mismatch) from mismatch
                return predicted

            try:
                champion_dir = locate_model(champion_model, Path(scratch) / "champion")  # reads its files only
            except (ModelNotFoundError, OSError, ValueError) as error:
                not_measured = _not_measured(champion_run_id, error)
            else:
                try:
                    comparison = compare_with_champion(champion_run_id or "champion", reviews.texts, y_true, y_pred,
                                                       trained_on, champion_predict)
                except ChampionUnusable as error:
                    not_measured = _not_measured(champion_run_id, error.__cause__)
    report = {"metrics": compute_metrics(y_true, y_pred), "test_rows": len(y_true)}
    if comparison is not None:
        report["comparison"] = comparison
    if not_measured is not None:
        report["champion_not_measured"] = not_measured
    output_data.mkdir(parents=True, exist_ok=True)
    (output_data / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"test_rows: {len(y_true)} - test_accuracy: {100 * report['metrics']['accuracy']['value']:.2f} - "
        f"macro_f1: {report['metrics']['macro_f1']['value']:.4f} - seconds: {time.perf_counter() - started:.1f} - "
        f"peak_rss_mb: {peak_rss_mb():.0f}",
        flush=True,
    )
    if comparison is not None:
        scores = (
            f"challenger_accuracy: {100 * comparison['challenger_accuracy']:.2f} - "
            f"champion_accuracy: {100 * comparison['champion_accuracy']:.2f}"
            if comparison["rows_compared"]
            else "nothing left to compare on"
        )
        print(
            f"champion {comparison['champion_run_id']}: rows_compared: {comparison['rows_compared']} - "
            f"rows_left_out: {comparison['rows_left_out']} (in its training data"
            f"{'' if comparison['overlap_checked'] else ': unknown, no hashes given'}) - {scores}",
            flush=True,
        )
    # Everything below is for people; evaluation.json above is the contract and never waits on it, nor fails with it.
    try:
        _write_for_people(report, reviews.texts, y_true, y_pred, input_run, training_summary, output_data, output_report)
    except Exception as error:  # an unforeseen shape of run.json, a plotting fault: the results stand
        traceback.print_exc()
        print(f"report: not written ({type(error).__name__}: {error}); the results are in evaluation.json", flush=True)
        if output_report is not None:
            output_report.mkdir(parents=True, exist_ok=True)
            (output_report / "index.html").write_text(run_report.unwritten(report, error), encoding="utf-8")
    return report


def _write_for_people(
    report: dict, texts: list[str], y_true: list[int], y_pred: list[int], input_run: Path | None,
    training_summary: dict | None, output_data: Path, output_report: Path | None,
) -> None:
    """The confusion matrix's image and the HTML report."""
    plotting = report_plots.available()
    if plotting:
        report_plots.confusion_matrix_png(report["metrics"]["confusion_matrix"], output_data / "confusion_matrix.png")
    if output_report is not None:
        examples = misclassified_examples(texts, y_true, y_pred)
        html = run_report.render(
            report, read_json(input_run, "run.json") or {}, training_summary or {}, examples, plotting=plotting
        )
        output_report.mkdir(parents=True, exist_ok=True)
        (output_report / "index.html").write_text(html, encoding="utf-8")
        print(f"report: {output_report / 'index.html'} - images: {'yes' if plotting else 'no'}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-model", type=Path, default=Path("/opt/ml/processing/input/model"))
    parser.add_argument("--input-data", type=Path, default=Path("/opt/ml/processing/input/data"))
    parser.add_argument("--output-data", type=Path, default=Path("/opt/ml/processing/output/evaluation"))
    parser.add_argument(
        "--max-seq-length", type=int, default=None, help="default: the training max_seq_length"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--input-run", type=Path, default=None, help="a folder holding run.json (trials, history) for the report"
    )
    parser.add_argument("--output-report", type=Path, default=None, help="gets the HTML report index.html")
    parser.add_argument(
        "--champion-model", type=Path, default=None, help="the champion's model, measured on the same test reviews"
    )
    parser.add_argument("--champion-run-id", default=None, help="the champion's run id (echoed in evaluation.json)")
    parser.add_argument(
        "--champion-train-hashes",
        type=Path,
        default=None,
        help="train_hashes.txt (or its folder): test reviews the champion was trained on are left out",
    )
    parser.add_argument(
        "--exit-message",
        type=Path,
        default=None,
        help="on a failure, why, written here (SageMaker: /opt/ml/output/message, read as the job's ExitMessage)",
    )
    return parser.parse_args(argv)


def _exit_message(path: Path | None, text: str) -> None:
    """Leave why the job failed where SageMaker reads it for DescribeProcessingJob's ExitMessage (its first KB)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.encode("utf-8", "replace")[:1024].decode("utf-8", "ignore"), encoding="utf-8")
    except OSError as error:
        print(f"exit message not written to {path}: {error}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        evaluate(
            args.input_model,
            args.input_data,
            args.output_data,
            args.max_seq_length,
            args.batch_size,
            args.input_run,
            args.output_report,
            args.champion_model,
            args.champion_run_id,
            args.champion_train_hashes,
        )
    except (ReviewDataError, ModelNotFoundError, HashesError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        _exit_message(args.exit_message, f"{type(error).__name__}: {error}")
        return 1
    except Exception as error:  # unforeseen: its traceback in the job's log, its words in the job's ExitMessage
        _exit_message(args.exit_message, f"{type(error).__name__}: {error}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
