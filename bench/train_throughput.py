"""Training throughput: ``training_code/train.py`` against a plain Hugging Face ``Trainer`` fp32 baseline.

Both run as subprocesses (so each has its own peak RSS) on the same model, training rows, max length and batch
size, for ``--warmup-steps`` + ``--steps`` optimizer steps; throughput counts only the steps after the warm-up.

- ``train.py``: run with the SageMaker environment contract (``SM_CHANNEL_*``, ``SM_MODEL_DIR``, JSON-quoted
  hyperparameters) and the static hyperparameters of the local default budget (``reviewtune.budget.Budget``);
  bf16 autocast where the CPU supports it, length-bucketed batches with dynamic padding.
- baseline: ``Trainer`` with its defaults (fp32, AdamW, linear schedule), the tokenizer padding every review to
  ``max_length`` as the original course did.

Usage: ``python bench/train_throughput.py [--steps 60] [--warmup-steps 5] [--model NAME] [--batch-size N]
[--json results.json]``; the model and batch default to the local budget's (all-mpnet-base-v2, batch 16);
``bench/run.py`` measures all-MiniLM-L6-v2 at batch 32 too.
Data: the balanced review file under ``REVIEWTUNE_DATA_DIR`` (default ``../shared/data``), split 90/5/5 with the
fixed seed of ``bench/common.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, default_split_folders  # noqa: E402
from reviewtune.budget import Budget, fitted_to_model  # noqa: E402

# train.py runs with the static hyperparameters of the local default budget (what `make run` trains with).
LOCAL_BUDGET = Budget()

# Budget settings the throughput comparison leaves out (see static_hyperparameters).
BENCH_LEAVES_OUT = ("keep_layers", "frozen_cache_mb", "freeze_bert_layer")


def static_hyperparameters(model: str) -> dict:
    """The local budget's static hyperparameters as `make run MODEL=...` trains ``model`` with them, but every layer
    trained, as the baseline trains them: the budget's ``keep_layers`` drops layers; ``freeze_bert_layer`` freezes
    the embeddings and the bottom layers, so that no backward pass runs through them; ``frozen_cache_mb`` runs them
    once per row before the first step, which a rate of steps does not count (the tuning run's wall minutes do).
    What the budget's own steps cost is the tuning run's figure."""
    static = fitted_to_model(dataclasses.replace(LOCAL_BUDGET, model=model)).static
    return {key: value for key, value in static.items() if key not in BENCH_LEAVES_OUT}


TRAIN_SCRIPT = REPO_ROOT / "training_code" / "train.py"
STEP_LINE = re.compile(
    r"^step: (\d+)/\d+ .*window_examples: (\d+) - window_seconds: ([0-9.]+) - window_cpu_seconds: ([0-9.]+)"
)
RSS_LINE = re.compile(r"peak_rss_mb: ([0-9.]+)")
BASELINE_PREFIX = "BASELINE_RESULT "


def _steady_rate(steps: list[tuple[int, float, float]], warmup: int) -> dict:
    """Throughput over the steps after ``warmup``; each step is (examples, wall seconds, process CPU seconds).

    ``examples_per_cpu_second`` (examples per CPU-second of the process) is less sensitive to other load on a shared
    machine than the wall-clock rate.
    """
    measured = steps[warmup:]
    if not measured:
        raise RuntimeError(f"no step after the {warmup} warm-up steps was reported")
    examples = sum(step[0] for step in measured)
    seconds = sum(step[1] for step in measured)
    cpu_seconds = sum(step[2] for step in measured)
    return {
        "examples_per_second": round(examples / seconds, 2),
        "examples_per_cpu_second": round(examples / cpu_seconds, 2),
        "examples": examples,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
    }


def run_train_py(args: argparse.Namespace, folders: dict[str, Path], work: Path) -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "SM_CHANNEL_TRAIN": str(folders["train"]),
        "SM_CHANNEL_VALIDATION": str(folders["validation"]),
        "SM_MODEL_DIR": str(work / "model"),
        "SM_NUM_CPUS": str(args.threads),
        "SM_NUM_GPUS": "0",
    }
    hyperparameters = {
        **static_hyperparameters(args.model),
        "model_name_or_path": args.model,
        "epochs": 1,
        "train_batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "train_steps_per_epoch": args.warmup_steps + args.steps,
        "run_validation": "False",
        "log_steps": 1,
        "pooling": args.pooling,
        "precision": args.precision,
    }
    command = [sys.executable, str(TRAIN_SCRIPT)]
    for name, value in hyperparameters.items():
        command += [f"--{name}", json.dumps(str(value))]  # JSON-quoted, as the SageMaker SDK v2 sends them
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"train.py failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    steps = []
    peak_rss = None
    for line in completed.stdout.splitlines():
        if match := STEP_LINE.match(line):
            steps.append((int(match[2]), float(match[3]), float(match[4])))
        elif "train_examples_per_second" in line and (match := RSS_LINE.search(line)):
            peak_rss = float(match[1])
    return _steady_rate(steps, args.warmup_steps) | {
        "peak_rss_mb": peak_rss,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def run_baseline(args: argparse.Namespace, folders: dict[str, Path], work: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--baseline-worker",
        "--train-dir",
        str(folders["train"]),
        "--work-dir",
        str(work),
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
        "--max-seq-length",
        str(args.max_seq_length),
        "--steps",
        str(args.steps),
        "--warmup-steps",
        str(args.warmup_steps),
        "--threads",
        str(args.threads),
    ]
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"baseline failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    line = next(line for line in completed.stdout.splitlines() if line.startswith(BASELINE_PREFIX))
    result = json.loads(line[len(BASELINE_PREFIX) :])
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def baseline_worker(args: argparse.Namespace) -> None:
    """Plain ``Trainer`` fine-tuning in fp32 with reviews padded to ``max_length``; prints one result line."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    sys.path.insert(0, str(REPO_ROOT / "training_code"))
    from modeling import peak_rss_mb, resolve_model_path
    from review_data import read_reviews

    torch.set_num_threads(args.threads)
    source = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=3)
    reviews = read_reviews(args.train_dir)
    encoded = tokenizer(reviews.texts, padding="max_length", truncation=True, max_length=args.max_seq_length)
    dataset = [
        {**{key: encoded[key][i] for key in encoded}, "labels": reviews.label_ids[i]}
        for i in range(len(reviews))
    ]

    step_ends: list[tuple[float, float]] = []

    class StepTimer(TrainerCallback):
        def on_train_begin(self, *_, **__):
            step_ends.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, *_, **__):
            step_ends.append((time.perf_counter(), time.process_time()))

    training_args = TrainingArguments(
        output_dir=str(args.work_dir / "baseline"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup_steps + args.steps,
        learning_rate=5e-5,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[StepTimer()],
    )
    trainer.train()
    steps = [
        (args.batch_size, end[0] - begin[0], end[1] - begin[1])
        for begin, end in zip(step_ends, step_ends[1:], strict=False)
    ]
    result = _steady_rate(steps, args.warmup_steps) | {"peak_rss_mb": round(peak_rss_mb(), 1)}
    print(BASELINE_PREFIX + json.dumps(result), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="measured optimizer steps")
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps run before measuring")
    parser.add_argument("--batch-size", type=int, default=LOCAL_BUDGET.static["train_batch_size"])
    parser.add_argument("--max-seq-length", type=int, default=LOCAL_BUDGET.max_seq_length)
    parser.add_argument("--model", default=LOCAL_BUDGET.model)
    parser.add_argument(
        "--pooling", default=LOCAL_BUDGET.static["pooling"], choices=("cls", "mean"), help="train.py pooling"
    )
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "bf16", "fp32"), help="train.py precision"
    )
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternate the two runs this many times (median)"
    )
    parser.add_argument("--only", choices=("train", "baseline"), help="run one side only")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _summary(runs: list[dict]) -> dict:
    rss = [run["peak_rss_mb"] for run in runs if run.get("peak_rss_mb") is not None]
    return {
        "examples_per_second": round(statistics.median(run["examples_per_second"] for run in runs), 2),
        "examples_per_cpu_second": round(
            statistics.median(run["examples_per_cpu_second"] for run in runs), 2
        ),
        "peak_rss_mb": round(max(rss), 1) if rss else None,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_worker:
        baseline_worker(args)
        return 0
    sides = {"train": run_train_py, "baseline": run_baseline}
    if args.only:
        sides = {args.only: sides[args.only]}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="reviewtune-bench-") as tmp:
        work = Path(tmp)
        folders = default_split_folders(work / "data")
        for repeat in range(args.repeats):
            for name, run in sides.items():
                result = run(args, folders, work / f"{name}-{repeat}")
                result["load_average_1m"] = round(os.getloadavg()[0], 2)
                runs[name].append(result)
                print(f"{name} run {repeat + 1}: {json.dumps(result)}", flush=True)
    load.append(os.getloadavg()[0])
    summary = {name: _summary(side_runs) for name, side_runs in runs.items()}
    report = {
        "config": {
            key: getattr(args, key)
            for key in (
                "model",
                "steps",
                "warmup_steps",
                "batch_size",
                "max_seq_length",
                "pooling",
                "precision",
            )
        }
        | {
            "threads": args.threads,
            "repeats": args.repeats,
            "train_static_hyperparameters": static_hyperparameters(args.model),
        },
        "results": summary,
    }
    if "train" in summary and "baseline" in summary:
        train, baseline = summary["train"], summary["baseline"]
        report["speedup"] = round(train["examples_per_second"] / baseline["examples_per_second"], 2)
        report["speedup_per_cpu_second"] = round(
            train["examples_per_cpu_second"] / baseline["examples_per_cpu_second"], 2
        )
        if train["peak_rss_mb"] and baseline["peak_rss_mb"]:
            report["memory_ratio"] = round(train["peak_rss_mb"] / baseline["peak_rss_mb"], 2)
    print(
        f"\nmodel {args.model}, batch {args.batch_size}, max length {args.max_seq_length}, "
        f"{args.steps} steps after {args.warmup_steps} warm-up, {args.threads} threads "
        f"(1-min load average {load[0]:.1f} -> {load[1]:.1f})"
    )
    print(f"{'':28} {'examples/s':>10} {'ex/CPU-s':>10} {'peak RSS MB':>12}")
    labels = {"baseline": "HF Trainer fp32 (pad 128)", "train": "train.py"}
    for name in ("baseline", "train"):
        if name in summary:
            side = summary[name]
            print(
                f"{labels[name]:28} {side['examples_per_second']:>10.2f} {side['examples_per_cpu_second']:>10.2f} "
                f"{side['peak_rss_mb'] or 0:>12.0f}"
            )
    if "speedup" in report:
        print(
            f"{'ratio train.py / baseline':28} {report['speedup']:>10.2f} {report['speedup_per_cpu_second']:>10.2f} "
            f"{report.get('memory_ratio', 0):>12.2f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
