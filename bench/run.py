"""`make bench`: training throughput vs a plain Trainer, a full local tuning run on real data, and the reference.

Throughput is measured on the real-data model (all-mpnet-base-v2, at its budget's batch) and on all-MiniLM-L6-v2 (the
sample's model, at the batch of its earlier figures); the tuning runs are `reviewtune run` with the local budget and
with MiniLM, on a course-like split of the raw CSV (``--data``, ``bench/bench_data.py``), each best model then scored
on the reviews no such split draws.
Prints one table and writes it to bench/results/latest.md (plus the raw JSON beside it).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_data import DATA_CHOICES, BenchData, best_model_dir, prepare, score_held_out  # noqa: E402
from bench.train_throughput import LOCAL_BUDGET, RSS_LINE  # noqa: E402
from reviewtune.budget import (  # noqa: E402
    AMX_NOTE,
    MINILM_MODEL,
    PLAN_FILE,
    cpu_has_amx,
    measured_speeds,
    measured_with_amx,
    model_key,
)
from reviewtune.core.display import hyperparameter  # noqa: E402
from reviewtune.core.trial_facts import time_limited_share  # noqa: E402
from reviewtune.local.sagemaker.service import default_cpus  # noqa: E402

RESULTS = REPO / "bench" / "results"
WORKDIR = REPO / ".reviewtune-bench"
HELD_OUT_RESULT = "held_out.json"  # beside a pipeline's run.json: its best model's score on the held-out reviews
# The bound on a training job's peak memory, per model (keyed as reviewtune.budget.model_key).
# peak_rss_mb is ru_maxrss / 1024: MiB. The targets, 5 GB and 3 GB, in the same unit.
MEMORY_TARGETS_MB = {"all-mpnet-base-v2": 4768, "all-minilm-l6-v2": 2861}
# The full tuning runs on the same file: the real-data budget (the default for a file), then all-MiniLM-L6-v2 beside
# it, with as many trials as fit the same 30 minutes (about 7x MPNet's examples/s: 4 trials of 2 whole epochs).
# (label, `reviewtune run` arguments beyond --data, key: --pipeline KEY and the folder bench/results/pipeline-KEY)
PIPELINES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("all-mpnet-base-v2 budget", (), "mpnet"),
    ("all-MiniLM-L6-v2, 4 trials", ("--model", MINILM_MODEL, "--max-jobs", "4"), "minilm"),
)
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


def run_pipeline(arguments: tuple[str, ...], key: str, data: BenchData) -> dict:
    """One full local tuning run on ``data`` (no ``arguments``: the budget for a file as it is), its best model then
    scored on the held-out reviews when there are some."""
    out = RESULTS / f"pipeline-{key}"
    command = [sys.executable, "-m", "reviewtune.cli", "--workdir", str(WORKDIR), "run", "--data", str(data.path)]
    command += arguments
    saved = out / HELD_OUT_RESULT
    saved.unlink(missing_ok=True)  # an earlier run's score is never this run's, whatever fails below
    started = time.monotonic()
    subprocess.run([*command, "--out", str(out)], check=True, cwd=REPO)
    wall = time.monotonic() - started
    run = json.loads((out / "run.json").read_text())
    held_out = None
    if data.held_out is not None:
        held_out = score_held_out(best_model_dir(WORKDIR, run), data.held_out, out / "held-out")
    if held_out:
        saved.write_text(json.dumps(held_out, indent=2))
    return summarize_pipeline(run, wall / 60, WORKDIR, held_out, _kept_beside(out, PLAN_FILE))


def _kept_beside(out: Path, name: str) -> dict | None:
    """A record kept in a run's folder: its held-out score (HELD_OUT_RESULT) or the plan `reviewtune run` started from
    (PLAN_FILE); None where the run kept none."""
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None


def summarize_pipeline(run: dict, wall_minutes: float, workdir: Path, held_out: dict | None = None,
                       plan: dict | None = None) -> dict:
    """The table's numbers from a run record (``run.json``), the trials' logs under ``workdir``, the best model's
    score on the held-out reviews (``bench_data.score_held_out``; None: not scored) and the run's plan
    (``plan.json``; None: not kept)."""
    trials = run["tuning"]["trials"]
    per_class = run["metrics"]["per_class"]
    test_rows = sum(int(c["support"]) for c in per_class.values())
    parallel = int(run["config"]["max_parallel_jobs"])
    cores = default_cpus()
    threads_per_trial = max(1, cores // parallel)
    trial_seconds = sum(float(t.get("training_seconds") or 0) for t in trials)
    accuracy = float(run["metrics"]["accuracy"]["value"])
    return {
        "wall_minutes": wall_minutes,
        "estimated_minutes": (plan or {}).get("estimated_minutes"),
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
        # the share of its planned steps each trial trained: under 100 where its time limit (max_train_seconds) cut them
        "trial_planned_steps_pct": [t.get("planned_steps_pct") for t in trials],
        "held_out": None
        if held_out is None
        else {
            "accuracy": held_out["accuracy"] * 100,
            "rows": held_out["rows"],
            "ci95": accuracy_interval(held_out["accuracy"], held_out["rows"]),
            "recall": held_out["recall"],
        },
    }


def last_results() -> dict:
    """The last measurement's record, re-read from bench/results (each pipeline it finished rebuilt from its
    run.json)."""
    latest = RESULTS / "latest.json"
    if not latest.is_file():
        raise SystemExit(f"no earlier results in {RESULTS}; run make bench first")
    saved = json.loads(latest.read_text())
    keys = {label: key for label, _, key in PIPELINES}
    pipelines = {}
    for label, pipeline in (saved.get("pipelines") or {}).items():
        run_file = RESULTS / f"pipeline-{keys.get(label, '-')}" / "run.json"
        if run_file.is_file():
            pipeline = summarize_pipeline(
                json.loads(run_file.read_text()), pipeline["wall_minutes"], WORKDIR,
                _kept_beside(run_file.parent, HELD_OUT_RESULT), _kept_beside(run_file.parent, PLAN_FILE),
            )
        pipelines[label] = pipeline
    return {**saved, "pipelines": pipelines, "data": saved.get("data") or ""}


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
        f"| peak memory of a training process, MiB ({config['model']}) | {ours['peak_rss_mb']:.0f} | {base['peak_rss_mb']:.0f} (HF Trainer fp32) "
        f"| {report.get('memory_ratio', 0):.2f}x |",
    ]


def _epochs_text(pipeline: dict) -> str:
    epochs = int(pipeline["budget"]["epochs"])
    text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    steps = pipeline.get("train_steps_per_epoch")
    text = f"{text} x {steps} steps" if steps else text
    cut = [share for share in map(time_limited_share, pipeline.get("trial_planned_steps_pct") or []) if share is not None]
    return f"{text}, time limit: {', '.join(f'{share:.0f}' for share in cut)} % of the steps" if cut else text


def _wall_text(pipeline: dict) -> str:
    """A run's wall minutes, with the estimate its plan started from when it kept one."""
    estimate = pipeline.get("estimated_minutes")
    return f"{pipeline['wall_minutes']:.1f}" + (f" (estimated {estimate:.1f})" if estimate is not None else "")


def _memory_target(pipeline: dict) -> str:
    target = MEMORY_TARGETS_MB.get(model_key(pipeline["model"]))
    return f"<= {target:,}" if target else ""


def _pipeline_rows(pipelines: dict[str, dict]) -> list[str]:
    """One row per measure, one column per pipeline, the reference beside them, then the first pipeline's difference
    to the reference."""
    ref = REFERENCE
    runs = list(pipelines.values())
    first = runs[0]

    def row(measure: str, cells: list[str], reference: object = "", ratio: str = "") -> str:
        return f"| {measure} | {' | '.join(cells)} | {reference} | {ratio} |"

    return [
        "",
        f"| full tuning run (same file) | {' | '.join(pipelines)} | reference | {next(iter(pipelines))} vs reference |",
        "|---|" + "---|" * (len(runs) + 2),
        row(
            "wall minutes (`make run DATA=...`; the plan's estimate)",
            [_wall_text(p) for p in runs],
            f"{ref['wall_minutes']} (2 trials x ~23 min, 36 vCPU)",
        ),
        row(
            "trials",
            [f"{p['trials']} ({p['budget']['strategy']}, {_epochs_text(p)}, {p['model']})" for p in runs],
            f"{ref['trials']} (Random, {ref['model']})",
        ),
        row(
            "compute, vCPU-minutes (trial seconds x threads)",
            [f"{p['vcpu_minutes']:.0f}" for p in runs],
            ref["vcpu_minutes"],
            f"1/{ref['vcpu_minutes'] / max(first['vcpu_minutes'], 1e-9):.0f}",
        ),
        row(
            "peak memory of a training job, MiB (largest; each trial)",
            [
                f"{_mb(p.get('trial_peak_rss_mb'))} ({', '.join(_mb(x) for x in p.get('trial_peak_rss_mb_each') or [])}; "
                f"target {_memory_target(p)})"
                for p in runs
            ],
        ),
        row(
            "validation accuracy, % (best; each trial)",
            [f"{p['validation_accuracy']:.2f} ({', '.join(_pct(v) for v in p.get('trial_validation_accuracies') or [])})" for p in runs],
            f"{ref['validation_accuracy']:.2f}",
            f"{first['validation_accuracy'] - ref['validation_accuracy']:+.2f} pt",
        ),
        row(
            "test accuracy (evaluation job), % (rows; 95 % interval)",
            [
                f"**{p['test_accuracy']:.2f}** ({p['test_rows']} rows; {p['test_accuracy_ci95'][0]:.1f}-{p['test_accuracy_ci95'][1]:.1f})"
                for p in runs
            ],
            f"{ref['test_accuracy']:.2f} (309 rows)",
            f"{first['test_accuracy'] - ref['test_accuracy']:+.2f} pt",
        ),
        row(
            "test recall per class (-1 / 0 / 1)",
            [_recall_text(p.get("test_recall") or {}) for p in runs],
        ),
        *_held_out_rows(runs, row),
        row("best hyperparameters", [", ".join(f"{k} {hyperparameter(v)}" for k, v in p["best_hyperparameters"].items()) for p in runs]),
        "",
        f"rows: {first['rows']}",
    ]


def _held_out_rows(runs: list[dict], row) -> list[str]:
    """The best models' accuracy on the held-out reviews (rows only when a run was scored on them)."""
    if not any(p.get("held_out") for p in runs):
        return []

    def accuracy(held: dict | None) -> str:
        if not held:
            return "-"
        return f"**{held['accuracy']:.2f}** ({held['rows']} rows; {held['ci95'][0]:.1f}-{held['ci95'][1]:.1f})"

    return [
        row("held-out accuracy (best model), % (rows; 95 % interval)", [accuracy(p.get("held_out")) for p in runs]),
        row(
            "held-out recall per class (-1 / 0 / 1)",
            [_recall_text(p["held_out"]["recall"]) if p.get("held_out") else "-" for p in runs],
        ),
    ]


def _recall_text(recall: dict) -> str:
    """Per-class recall as the table shows it: -1 / 0 / 1, three decimals."""
    return " / ".join(f"{value:.3f}" for value in recall.values())


def _pct(value: object) -> str:
    return f"{float(value):.2f}" if isinstance(value, int | float) else "-"


def table(throughput: list[dict] | dict | None, pipelines: dict[str, dict] | None, data: str = "",
          measured: str | None = None, unfinished: str | None = None) -> str:
    """The benchmark table; ``throughput`` is one report per model (a single report: an earlier run's file);
    ``pipelines`` maps a label to a full tuning run's summary; ``data`` says what the tuning runs read; ``measured``:
    the day the measurement started (default today); ``unfinished``: what failed, for a bench that did not end."""
    reports = [throughput] if isinstance(throughput, dict) else list(throughput or [])
    lines = [f"reviewtune benchmark, {measured or date.today().isoformat()}, {platform.machine()} {default_cpus()} cores"]
    if unfinished:
        lines.insert(0, f"UNFINISHED: {unfinished}; what follows is what was measured before it")
    if pipelines and data:
        lines[0] += f", data: {data}"
    if reports:
        lines += ["", "| measure (same model, data, length and batch) | train.py | baseline | ratio |", "|---|---|---|---|"]
    for report in reports:
        lines += _throughput_rows(report)
    if pipelines:
        lines += _pipeline_rows(pipelines)
    lines += _budget_notes(reports)
    return "\n".join(lines)


def _budget_notes(reports: list[dict]) -> list[str]:
    """The throughput reviewtune/budget.py plans with, beside what was measured (update the constant from it)."""
    notes = []
    amx = cpu_has_amx()
    for report in reports:
        model = report["config"]["model"]
        with_amx = measured_with_amx(model, amx)
        assumed, frozen = measured_speeds(model, with_amx)
        constant = "TRAIN_EXAMPLES_PER_SECOND_AMX" if with_amx else "TRAIN_EXAMPLES_PER_SECOND"
        cpu = AMX_NOTE if with_amx else "as measured on a CPU without AMX"
        if assumed is not None and frozen is not None:
            notes.append(
                f"budget.py plans {model_key(model)} at {assumed:g} examples/s for steps from the kept output of its frozen "
                f"layers and {frozen:g} rows/s for their one pass ({cpu}): the tuning run's trials measure those (their "
                f"examples_per_second and frozen_cache lines), not this comparison, where every step runs every layer"
            )
        elif assumed is not None:
            measured = report["results"]["train"]["examples_per_second"]
            notes.append(
                f"budget.py {constant} for {model_key(model)}: {assumed:g} (measured here: {measured:.1f}, "
                f"batch {report['config']['batch_size']})"
            )
    return ([""] + notes) if notes else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--steps", type=int, default=60, help="timed training steps per throughput measurement"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true", help="no full tuning run")
    parser.add_argument(
        "--pipeline",
        action="append",
        choices=[key for _, _, key in PIPELINES],
        help="only this full tuning run (repeatable; default: all)",
    )
    parser.add_argument(
        "--data",
        choices=DATA_CHOICES,
        default="course",
        help="what the tuning runs read: a course-like split of the raw CSV plus held-out reviews (default), or the "
        "balanced file",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: print the table again from bench/results (the last run's files)",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        print(_table_of(last_results()))
        return 0
    record = {"measured": date.today().isoformat(), "throughput": None, "pipelines": {}, "data": "",
              "unfinished": "the bench is still running"}
    _save(record)  # an earlier bench's files never stand for this one, whatever fails below
    try:
        data = None if args.skip_pipeline else prepare(args.data, RESULTS / "data")
        record["data"] = data.description if data else ""
        if not args.skip_throughput:
            record["throughput"] = run_throughput(args.steps)
            _save(record)
        keys = set(args.pipeline) if args.pipeline else None
        for label, arguments, key in PIPELINES:
            if data and (keys is None or key in keys):
                record["pipelines"][label] = run_pipeline(arguments, key, data)
                _save(record)
        record["unfinished"] = None
    except (Exception, KeyboardInterrupt) as error:
        record["unfinished"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        _save(record)
    print(_table_of(record))
    return 0


def _table_of(record: dict) -> str:
    """The table of a bench's record (latest.json)."""
    return table(record.get("throughput"), record.get("pipelines"), record.get("data") or "", record.get("measured"),
                 record.get("unfinished"))


def _save(record: dict) -> None:
    """latest.json and latest.md as the bench stands: written after each part, so a failure keeps what was measured
    and says that the bench did not end."""
    (RESULTS / "latest.json").write_text(json.dumps(record, indent=2))
    (RESULTS / "latest.md").write_text(_table_of(record) + "\n")


if __name__ == "__main__":
    sys.exit(main())
