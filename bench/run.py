"""`make bench`: training throughput vs a plain Trainer, a full local tuning run on real data, and the reference.

Throughput is measured on the real-data model (all-mpnet-base-v2, at its budget's batch) and on all-MiniLM-L6-v2 (the
sample's model, at the batch of its earlier figures); the tuning run is `reviewtune run` with the local budget.
Prints one table and writes it to bench/results/latest.md (plus the raw JSON beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import BALANCED_FILE, data_dir  # noqa: E402
from bench.train_throughput import LOCAL_BUDGET, RSS_LINE  # noqa: E402
from reviewtune.budget import MINILM_MODEL, TRAIN_EXAMPLES_PER_SECOND, model_key  # noqa: E402

RESULTS = REPO / "bench" / "results"
WORKDIR = REPO / ".reviewtune-bench"
MEMORY_TARGET_MB = 3000
# (model, batch size) of each throughput measurement: the real-data budget's model, then MiniLM as measured before.
THROUGHPUT_RUNS: tuple[tuple[str, int], ...] = (
    (LOCAL_BUDGET.model, int(LOCAL_BUDGET.static["train_batch_size"])),
    (MINILM_MODEL, 32),
)
# train.py's throughput against the fp32 Trainer: the goal per model (keyed as reviewtune.budget.model_key).
SPEEDUP_GOALS = {"all-mpnet-base-v2": 4.0, "all-minilm-l6-v2": 3.0}
REFERENCE = {
    "model": "roberta-base",
    "trials": 2,
    "vcpu_minutes": 2 * 23 * 36,
    "validation_accuracy": 73.05,
    "test_accuracy": 73.79,
    "wall_minutes": 46,
}


def accuracy_interval(accuracy: float, rows: int) -> list[float]:
    """95 % Wilson interval of an accuracy measured on ``rows`` examples, in percent: how far the test set lets
    two accuracies be told apart (about +-5 points on ~350 rows)."""
    from scipy.stats import binomtest

    interval = binomtest(round(accuracy * rows), rows).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(100 * float(interval.low), 2), round(100 * float(interval.high), 2)]


def run_throughput(steps: int) -> list[dict]:
    """One throughput report per model of ``THROUGHPUT_RUNS``."""
    reports = []
    for model, batch_size in THROUGHPUT_RUNS:
        out = RESULTS / f"throughput-{model.rsplit('/', 1)[-1]}.json"
        subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "train_throughput.py"),
                "--steps",
                str(steps),
                "--model",
                model,
                "--batch-size",
                str(batch_size),
                "--json",
                str(out),
            ],
            check=True,
            cwd=REPO,
        )
        reports.append(json.loads(out.read_text()))
    return reports


def trial_peak_rss_each(workdir: Path, trial_names: list[str]) -> dict[str, float | None]:
    """Each trial's largest ``peak_rss_mb`` printed by its train.py (its log under the local SageMaker service's
    folder); None for a trial without a log or without such a line."""
    peaks: dict[str, float | None] = {}
    for name in trial_names:
        log = workdir / "sagemaker" / "training" / name / "log.txt"
        values = [float(m[1]) for m in RSS_LINE.finditer(log.read_text(errors="replace"))] if log.is_file() else []
        peaks[name] = max(values) if values else None
    return peaks


def trial_peak_rss_mb(workdir: Path, trial_names: list[str]) -> float | None:
    """The largest ``peak_rss_mb`` over the trials."""
    peaks = [peak for peak in trial_peak_rss_each(workdir, trial_names).values() if peak is not None]
    return max(peaks) if peaks else None


def run_pipeline() -> dict:
    data = data_dir() / BALANCED_FILE
    out = RESULTS / "pipeline"
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "reviewtune.cli",
            "--workdir",
            str(WORKDIR),
            "run",
            "--data",
            str(data),
            "--out",
            str(out),
        ],
        check=True,
        cwd=REPO,
    )
    wall = time.monotonic() - started
    return summarize_pipeline(json.loads((out / "run.json").read_text()), wall / 60, WORKDIR)


def summarize_pipeline(run: dict, wall_minutes: float, workdir: Path) -> dict:
    """The table's numbers from a run record (``run.json``) and the trials' logs under ``workdir``."""
    trials = run["tuning"]["trials"]
    per_class = run["metrics"]["per_class"]
    test_rows = sum(int(c["support"]) for c in per_class.values())
    parallel = int(run["config"]["max_parallel_jobs"])
    cores = os.cpu_count() or 1
    threads_per_trial = max(1, cores // parallel)
    trial_seconds = sum(float(t.get("training_seconds") or 0) for t in trials)
    accuracy = float(run["metrics"]["accuracy"]["value"])
    return {
        "wall_minutes": wall_minutes,
        "trials": len(trials),
        "trial_seconds": trial_seconds,
        "vcpu_minutes": trial_seconds * threads_per_trial / 60,
        "validation_accuracy": float(run["tuning"]["best_training_job"]["objective"]),
        "trial_validation_accuracies": [t.get("objective") for t in trials],
        "test_accuracy": accuracy * 100,
        "test_rows": test_rows,
        "test_accuracy_ci95": accuracy_interval(accuracy, test_rows),
        "test_recall": {label: round(float(c["recall"]), 3) for label, c in per_class.items()},
        "trial_peak_rss_mb": trial_peak_rss_mb(workdir, [t["name"] for t in trials]),
        "trial_peak_rss_mb_each": list(trial_peak_rss_each(workdir, [t["name"] for t in trials]).values()),
        "rows": run["data"]["summary"]["rows"],
        "best_hyperparameters": run["tuning"]["best_training_job"]["tuned_hyperparameters"],
        "model": run["config"]["model_name"],
        "budget": {k: run["config"][k] for k in ("strategy", "max_jobs", "max_parallel_jobs", "epochs")},
        "train_steps_per_epoch": int((run["config"].get("static_hyperparameters") or {}).get("train_steps_per_epoch") or 0),
    }


def last_results() -> tuple[dict | None, dict | None]:
    """The last measurement, re-read from bench/results (the pipeline part rebuilt from its run.json)."""
    latest = RESULTS / "latest.json"
    if not latest.is_file():
        raise SystemExit(f"no earlier results in {RESULTS}; run make bench first")
    saved = json.loads(latest.read_text())
    pipeline = saved.get("pipeline")
    run_file = RESULTS / "pipeline" / "run.json"
    if pipeline and run_file.is_file():
        pipeline = summarize_pipeline(json.loads(run_file.read_text()), pipeline["wall_minutes"], WORKDIR)
    return saved.get("throughput"), pipeline


def _mb(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "n/a"


def _settings(config: dict) -> str:
    """The train.py settings that differ from the baseline's model defaults, for the table's label."""
    static = config.get("train_static_hyperparameters") or {}
    dropout = static.get("attention_dropout")
    return f", attention dropout {dropout}" if dropout is not None else ""


def _throughput_rows(report: dict) -> list[str]:
    config, results = report["config"], report["results"]
    ours, base = results["train"], results["baseline"]
    goal = SPEEDUP_GOALS.get(model_key(config["model"]))
    goal_text = f" (goal {goal:g}x)" if goal else ""
    return [
        f"| training throughput, examples/s ({config['model']}, length {config['max_seq_length']}, batch {config['batch_size']}, "
        f"{config['threads']} threads) | {ours['examples_per_second']:.1f} (train.py{_settings(config)}) | {base['examples_per_second']:.1f} (HF Trainer fp32) "
        f"| {report['speedup']:.2f}x{goal_text} |",
        f"| peak memory of a training process, MB ({config['model']}) | {ours['peak_rss_mb']:.0f} | {base['peak_rss_mb']:.0f} (HF Trainer fp32) "
        f"| {report.get('memory_ratio', 0):.2f}x |",
    ]


def _epochs_text(pipeline: dict) -> str:
    epochs = int(pipeline["budget"]["epochs"])
    text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    steps = pipeline.get("train_steps_per_epoch")
    return f"{text} x {steps} steps" if steps else text


def table(throughput: list[dict] | dict | None, pipeline: dict | None) -> str:
    """The benchmark table; ``throughput`` is one report per model (a single report: an earlier run's file)."""
    reports = [throughput] if isinstance(throughput, dict) else list(throughput or [])
    lines = [
        f"reviewtune benchmark, {date.today().isoformat()}, {platform.machine()} {os.cpu_count()} cores, "
        f"data: {BALANCED_FILE} (7,110 rows, balanced), split stratified 90/5/5 with a fixed seed by start_tuning",
        "",
        "| measure | reviewtune | baseline / reference | ratio |",
        "|---|---|---|---|",
    ]
    for report in reports:
        lines += _throughput_rows(report)
    if pipeline:
        ref = REFERENCE
        lines += [
            f"| full local tuning run (`make run DATA=...`), wall minutes | {pipeline['wall_minutes']:.1f} | {ref['wall_minutes']} (2 trials x ~23 min, 36 vCPU) | |",
            f"| trials | {pipeline['trials']} ({pipeline['budget']['strategy']}, {_epochs_text(pipeline)}, {pipeline['model']}) | {ref['trials']} (Random, {ref['model']}) | |",
            f"| compute, vCPU-minutes (trial seconds x threads) | {pipeline['vcpu_minutes']:.0f} | {ref['vcpu_minutes']} | 1/{ref['vcpu_minutes'] / max(pipeline['vcpu_minutes'], 1e-9):.0f} |",
            f"| peak memory of a training job (largest over the trials), MB | {_mb(pipeline.get('trial_peak_rss_mb'))} "
            f"(each: {', '.join(_mb(p) for p in pipeline.get('trial_peak_rss_mb_each') or [])}) | "
            f"{MEMORY_TARGET_MB:,} (target) | |",
            f"| best validation accuracy, % | {pipeline['validation_accuracy']:.2f} | {ref['validation_accuracy']:.2f} | {pipeline['validation_accuracy'] - ref['validation_accuracy']:+.2f} pt |",
            f"| test accuracy (evaluation job), % ({pipeline['test_rows']} rows; 95 % interval "
            f"{pipeline['test_accuracy_ci95'][0]:.1f}-{pipeline['test_accuracy_ci95'][1]:.1f}) | {pipeline['test_accuracy']:.2f} | "
            f"{ref['test_accuracy']:.2f} | {pipeline['test_accuracy'] - ref['test_accuracy']:+.2f} pt |",
            "",
            f"rows: {pipeline['rows']}; best hyperparameters: {pipeline['best_hyperparameters']}",
            f"validation accuracy of each trial, %: {pipeline.get('trial_validation_accuracies')}; "
            f"test recall per class: {pipeline.get('test_recall')}",
        ]
    lines += _budget_notes(reports)
    return "\n".join(lines)


def _budget_notes(reports: list[dict]) -> list[str]:
    """The throughput reviewtune/budget.py plans with, beside what was measured (update the constant from it)."""
    notes = []
    for report in reports:
        model = report["config"]["model"]
        assumed = TRAIN_EXAMPLES_PER_SECOND.get(model_key(model))
        if assumed is not None:
            measured = report["results"]["train"]["examples_per_second"]
            notes.append(
                f"budget.py TRAIN_EXAMPLES_PER_SECOND for {model_key(model)}: {assumed:g} (measured here: {measured:.1f}, "
                f"batch {report['config']['batch_size']})"
            )
    return ([""] + notes) if notes else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--steps", type=int, default=60, help="timed training steps per throughput measurement"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: print the table again from bench/results (the last run's files)",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        throughput, pipeline = last_results()
    else:
        throughput = None if args.skip_throughput else run_throughput(args.steps)
        pipeline = None if args.skip_pipeline else run_pipeline()
    text = table(throughput, pipeline)
    (RESULTS / "latest.md").write_text(text + "\n")
    (RESULTS / "latest.json").write_text(
        json.dumps({"throughput": throughput, "pipeline": pipeline}, indent=2)
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
