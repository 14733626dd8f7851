"""`make bench`: training throughput vs a plain Trainer, a full local tuning run on real data, and the reference.

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

RESULTS = REPO / "bench" / "results"
REFERENCE = {
    "model": "roberta-base",
    "trials": 2,
    "vcpu_minutes": 2 * 23 * 36,
    "validation_accuracy": 73.05,
    "test_accuracy": 73.79,
    "wall_minutes": 46,
}


def run_throughput(steps: int) -> dict:
    out = RESULTS / "throughput.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "train_throughput.py"), "--steps", str(steps), "--json", str(out)], check=True, cwd=REPO)
    return json.loads(out.read_text())


def run_pipeline() -> dict:
    data = data_dir() / BALANCED_FILE
    out = RESULTS / "pipeline"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "reviewtune.cli", "--workdir", str(REPO / ".reviewtune-bench"), "run", "--data", str(data), "--out", str(out)],
        check=True,
        cwd=REPO,
    )
    wall = time.monotonic() - started
    run = json.loads((out / "run.json").read_text())
    trials = run["tuning"]["trials"]
    parallel = int(run["config"]["max_parallel_jobs"])
    cores = os.cpu_count() or 1
    threads_per_trial = max(1, cores // parallel)
    trial_seconds = sum(float(t.get("training_seconds") or 0) for t in trials)
    return {
        "wall_minutes": wall / 60,
        "trials": len(trials),
        "trial_seconds": trial_seconds,
        "vcpu_minutes": trial_seconds * threads_per_trial / 60,
        "validation_accuracy": float(run["tuning"]["best_training_job"]["objective"]),
        "test_accuracy": float(run["metrics"]["accuracy"]["value"]) * 100,
        "rows": run["data"]["summary"]["rows"],
        "best_hyperparameters": run["tuning"]["best_training_job"]["tuned_hyperparameters"],
        "model": run["config"]["model_name"],
        "budget": {k: run["config"][k] for k in ("strategy", "max_jobs", "max_parallel_jobs", "epochs")},
    }


def table(throughput: dict | None, pipeline: dict | None) -> str:
    lines = [
        f"reviewtune benchmark, {date.today().isoformat()}, {platform.machine()} {os.cpu_count()} cores, "
        f"data: {BALANCED_FILE} (7,110 rows, balanced), split stratified 90/5/5 with a fixed seed by start_tuning",
        "",
        "| measure | reviewtune | baseline / reference | ratio |",
        "|---|---|---|---|",
    ]
    if throughput:
        config, results = throughput["config"], throughput["results"]
        ours, base = results["train"], results["baseline"]
        lines += [
            f"| training throughput, examples/s ({config['model']}, length {config['max_seq_length']}, batch {config['batch_size']}, "
            f"{config['threads']} threads) | {ours['examples_per_second']:.1f} (train.py) | {base['examples_per_second']:.1f} (HF Trainer fp32) "
            f"| {throughput['speedup']:.2f}x |",
            f"| peak memory of a training process, MB | {ours['peak_rss_mb']:.0f} | {base['peak_rss_mb']:.0f} (HF Trainer fp32) "
            f"| {throughput.get('memory_ratio', 0):.2f}x |",
        ]
    if pipeline:
        ref = REFERENCE
        lines += [
            f"| full local tuning run (`make run DATA=...`), wall minutes | {pipeline['wall_minutes']:.1f} | {ref['wall_minutes']} (2 trials x ~23 min, 36 vCPU) | |",
            f"| trials | {pipeline['trials']} ({pipeline['budget']['strategy']}, {pipeline['budget']['epochs']} epochs, {pipeline['model']}) | {ref['trials']} (Random, {ref['model']}) | |",
            f"| compute, vCPU-minutes (trial seconds x threads) | {pipeline['vcpu_minutes']:.0f} | {ref['vcpu_minutes']} | 1/{ref['vcpu_minutes'] / max(pipeline['vcpu_minutes'], 1e-9):.0f} |",
            f"| best validation accuracy, % | {pipeline['validation_accuracy']:.2f} | {ref['validation_accuracy']:.2f} | {pipeline['validation_accuracy'] - ref['validation_accuracy']:+.2f} pt |",
            f"| test accuracy (evaluation job), % | {pipeline['test_accuracy']:.2f} | {ref['test_accuracy']:.2f} | {pipeline['test_accuracy'] - ref['test_accuracy']:+.2f} pt |",
            "",
            f"rows: {pipeline['rows']}; best hyperparameters: {pipeline['best_hyperparameters']}",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per throughput measurement")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    throughput = None if args.skip_throughput else run_throughput(args.steps)
    pipeline = None if args.skip_pipeline else run_pipeline()
    text = table(throughput, pipeline)
    (RESULTS / "latest.md").write_text(text + "\n")
    (RESULTS / "latest.json").write_text(json.dumps({"throughput": throughput, "pipeline": pipeline}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
