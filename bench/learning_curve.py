"""How accuracy grows with the training rows: the local budget's training on nested parts of one course-like split.

    .venv/bin/python bench/learning_curve.py [--seed 21] [--fractions 0.25,0.5,0.75,1] [--out bench/results/learning_curve]

The split of ``--seed`` (``course_split.py``) gives its training rows; each fraction keeps that share of every class
(nested: the rows of 0.25 are among those of 0.5, and so on). For each, one training job runs ``train.py`` with the
real-data budget's settings (``reviewtune.budget.Budget()``: model, frozen and kept layers, epochs, batch, length)
at one learning rate, ``--parallel`` jobs side by side with one thread each, as a tuning run's trials train; its
model is then scored on the split's test rows and on the 957 held-out reviews (``course_split.never_drawn``). The
table says what more rows of the same kind would buy: where it flattens, a larger file, not more tuning, is what
raises accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_data import score_held_out  # noqa: E402
from bench.common import data_dir, write_tsv  # noqa: E402
from bench.course_split import RAW_FILE, course_split, never_drawn, read_raw  # noqa: E402
from bench.run import accuracy_interval  # noqa: E402
from bench.train_throughput import TRAIN_SCRIPT  # noqa: E402
from reviewtune.budget import Budget  # noqa: E402
from reviewtune.offline_models import resolve  # noqa: E402

# The rate the budget's Bayesian search tries first on its learning-rate range (docs/accuracy.md, "the learning rate").
DEFAULT_LEARNING_RATE = 8.46e-5
SUBSET_SEED = 7


def nested_parts(train: pd.DataFrame, fractions: list[float], seed: int = SUBSET_SEED) -> dict[float, pd.DataFrame]:
    """For each fraction, that share of every class of ``train`` (rounded down); each part holds the smaller ones."""
    if any(not 0 < fraction <= 1 for fraction in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {fractions}")
    shuffled = train.sample(frac=1, random_state=seed)
    parts = {}
    for fraction in sorted(fractions):
        part = pd.concat([rows.head(int(len(rows) * fraction)) for _, rows in shuffled.groupby("sentiment")])
        parts[fraction] = part.sample(frac=1, random_state=seed)
    return parts


def hyperparameters(budget: Budget, learning_rate: float, model_path: str) -> list[str]:
    """train.py's arguments for one job of ``budget`` at ``learning_rate`` (as the tuner passes them)."""
    values = {**budget.static, "model_name_or_path": model_path, "learning_rate": learning_rate,
              "epochs": budget.epochs, "max_seq_length": budget.max_seq_length}
    return [item for name, value in values.items() for item in (f"--{name}", str(value))]


def train_and_score(folder: Path, arguments: list[str], scored: dict[str, Path]) -> dict:
    """One training job in ``folder`` (train/ and validation/ written), then its model scored on each set."""
    model, log = folder / "model", folder / "train.log"
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(folder / "train"), "SM_CHANNEL_VALIDATION": str(folder / "validation"),
           "SM_MODEL_DIR": str(model), "SM_OUTPUT_DATA_DIR": str(folder / "output" / "data"), "SM_NUM_CPUS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    with log.open("w") as out:
        subprocess.run([sys.executable, str(TRAIN_SCRIPT), *arguments], env=env, stdout=out, stderr=subprocess.STDOUT,
                       check=True)
    summary = json.loads((model / "training_summary.json").read_text())
    result = {"job_seconds": round(time.monotonic() - started, 1), "validation_accuracy": summary["saved_val_acc"],
              "peak_rss_mb": summary.get("peak_rss_mb")}
    for name, data in scored.items():
        score = score_held_out(model, data, folder / f"evaluation-{name}")
        result[name] = {**score, "accuracy": score["accuracy"] * 100,
                        "ci95": accuracy_interval(score["accuracy"], score["rows"])}
    return result


def table(results: dict[float, dict]) -> str:
    lines = ["| training rows (share) | validation, % | test, % | held-out, % (95 % interval) | held-out recall -1 / 0 / 1 "
             "| job, s | peak MB |", "|---|---|---|---|---|---|---|"]
    for fraction, result in sorted(results.items()):
        held = result["held_out"]
        recall = " / ".join(f"{held['recall'][label]:.3f}" for label in ("-1", "0", "1"))
        lines.append(f"| {result['rows']:,} ({fraction:.0%}) | {result['validation_accuracy']:.2f} | "
                     f"{result['test']['accuracy']:.2f} | {held['accuracy']:.2f} ({held['ci95'][0]:.1f}-"
                     f"{held['ci95'][1]:.1f}) | {recall} | {result['job_seconds']:.0f} | {result['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=21, help="the course-like split's seed")
    parser.add_argument("--fractions", default="0.25,0.5,0.75,1", help="shares of the training rows, comma-separated")
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument("--parallel", type=int, default=2, help="jobs side by side, one thread each")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "learning_curve")
    parser.add_argument("--raw", type=Path, help=f"the raw CSV (default: {RAW_FILE} in the data folder)")
    args = parser.parse_args(argv)
    raw_path = args.raw or data_dir() / RAW_FILE
    if not raw_path.is_file():
        parser.error(f"{raw_path} not found; set REVIEWTUNE_DATA_DIR or --raw to the raw Kaggle CSV")
    try:
        fractions = [float(value) for value in args.fractions.split(",")]
        raw = read_raw(raw_path)
        split = course_split(raw, args.seed)
        parts = nested_parts(split[split["split"] == "train"].drop(columns="split"), fractions)
    except ValueError as exc:
        parser.error(str(exc))
    budget = Budget()
    model_path = resolve(budget.model)
    if model_path is None:
        parser.error(f"{budget.model} is not in the offline model cache: run make setup")
    arguments = hyperparameters(budget, args.learning_rate, model_path)
    scored = {"test": args.out / f"seed{args.seed}-test", "held_out": args.out / "held_out"}
    write_tsv(split[split["split"] == "test"].drop(columns="split"), scored["test"] / "test.tsv")
    write_tsv(never_drawn(raw), scored["held_out"] / "held_out.tsv")
    folders = {}
    for fraction, part in parts.items():
        folder = args.out / f"seed{args.seed}-{fraction:g}"
        write_tsv(part, folder / "train" / "train.tsv")
        write_tsv(split[split["split"] == "validation"].drop(columns="split"), folder / "validation" / "validation.tsv")
        folders[fraction] = folder
    print(f"seed {args.seed}: {len(parts)} jobs of {budget.model} (learning rate {args.learning_rate:g}, "
          f"{args.parallel} at a time) in {args.out}", flush=True)
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {fraction: pool.submit(train_and_score, folders[fraction], arguments, scored)
                   for fraction in sorted(folders, reverse=True)}  # the longest jobs first: the shortest fill in
        results = {fraction: {"rows": len(parts[fraction]), **future.result()} for fraction, future in futures.items()}
    (args.out / f"seed{args.seed}.json").write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
