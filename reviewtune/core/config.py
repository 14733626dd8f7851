"""The functions' configuration, read from the environment in one place."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reviewtune.core.containers import Kind, default_image_uri
from reviewtune.core.errors import ConfigError
from reviewtune.core.states import DEFAULT_DEADLINES, RunStatus

STRATEGIES = ("Random", "Bayesian", "Hyperband", "Grid")
EARLY_STOPPING_TYPES = ("Off", "Auto")
CLASS_BALANCE_MODES = ("downsample", "none")
CONVERGENCE_CHOICES = ("Enabled", "Disabled")
MIN_JOBS_NOT_IMPROVING = 3  # SageMaker's minimum of MaxNumberOfTrainingJobsNotImproving
# the reconciler's listing of incoming/ (missed_drops.py): a version without a run is claimed once it is this old ...
# With spot training a trial may wait for capacity: its MaxWaitTimeInSeconds is this many times MaxRuntimeInSeconds.
SPOT_WAIT_FACTOR = 2
# A TUNING deadline is at least the tuning budget's longest run plus this (SageMaker's start and end of each round):
# a tuning job working within the budget the stack gave it is never ended as stuck.
TUNING_DEADLINE_SLACK_SECONDS = 3600
# The shortest EVALUATING deadline a stack may set (a shorter one is raised, as TUNING's is to its budget): the
# evaluation job's own limit (evaluation.EVALUATION_MAX_RUNTIME, 1 h), the margin record_results keeps before the
# deadline (registration.DEADLINE_MARGIN_SECONDS, 30 min) and SageMaker's start of the job; tests/unit tie them.
MIN_EVALUATING_DEADLINE_SECONDS = 7200
MISSED_DROP_GRACE_MINUTES = 60  # ... an event may be on its way that long (the rule's MaximumEventAgeInSeconds)
MISSED_DROP_WINDOW_DAYS = 7  # ... and while it is not older than this

DEFAULT_RANGES = {
    "learning_rate": {"min": 1e-5, "max": 5e-5, "scaling": "Logarithmic"},
    "train_batch_size": [128, 256],
}
DEFAULT_REGION = "us-east-1"  # where no AWS_REGION says otherwise


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is required but not set")
    return value


def _image(env: Mapping[str, str], name: str, kind: Kind) -> str:
    """The image the stack names, else the Region's Hugging Face container of that kind."""
    region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip() or DEFAULT_REGION
    return env.get(name, "").strip() or default_image_uri(kind, region)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    for option in allowed:
        if raw.lower() == option.lower():
            return option
    raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")


def _json(env: Mapping[str, str], name: str, default: Any) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc.msg} at character {exc.pos}") from exc


def _optional_float(env: Mapping[str, str], name: str) -> float | None:
    return _float(env, name, 0.0) if env.get(name, "").strip() else None


def _optional_int(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    return _int(env, name, 0, minimum=minimum) if env.get(name, "").strip() else None


def _optional_choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    return _choice(env, name, "", allowed) if env.get(name, "").strip() else None


def _deadlines(env: Mapping[str, str]) -> dict[RunStatus, int]:
    """RUN_STATE_DEADLINES: JSON object of seconds by non-final run state, merged over the defaults."""
    raw = _json(env, "RUN_STATE_DEADLINES", {})
    if not isinstance(raw, dict):
        raise ConfigError("RUN_STATE_DEADLINES must be a JSON object of seconds by run state")
    deadlines = dict(DEFAULT_DEADLINES)
    for name, seconds in raw.items():
        try:
            status = RunStatus(str(name).upper())
        except ValueError:
            status = None
        if status not in DEFAULT_DEADLINES:
            known = ", ".join(DEFAULT_DEADLINES)
            raise ConfigError(f"RUN_STATE_DEADLINES: {name!r} is not a non-final run state ({known})")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 60:
            raise ConfigError(f"RUN_STATE_DEADLINES: {name} must be a whole number of seconds >= 60, got {seconds!r}")
        deadlines[status] = seconds
    return deadlines


@dataclass(frozen=True)
class Settings:
    """Everything the three functions need to know about their stack."""

    bucket: str
    runs_table: str
    topic_arn: str
    sagemaker_role_arn: str
    idempotency_table: str = ""
    job_name_prefix: str = "reviewtune"
    training_image_uri: str = default_image_uri("training", DEFAULT_REGION)
    training_instance_type: str = "ml.g5.xlarge"
    training_instance_count: int = 1
    max_jobs: int = 4
    max_parallel_jobs: int = 2
    strategy: str = "Bayesian"
    early_stopping: str = "Off"
    hyperparameter_ranges: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RANGES))
    static_hyperparameters: dict[str, Any] = field(default_factory=dict)
    model_name: str = "roberta-base"
    max_seq_length: int = 128
    epochs: int = 3
    processing_image_uri: str = default_image_uri("processing", DEFAULT_REGION)
    processing_instance_type: str = "ml.m5.xlarge"
    inference_image_uri: str = default_image_uri("processing", DEFAULT_REGION)
    warm_start: bool = True
    champion_margin_points: float = 0.5  # a challenger replaces the champion only if better by this many points
    champion_min_compared_reviews: int = 30  # ... on at least this many test reviews the champion was not trained on
    champion_max_p_value: float = 0.05  # ... and at a McNemar p-value at most this (champion.DEFAULT_MAX_P_VALUE)
    champion_must_beat_guessing: bool = True  # no champion no better than always answering one class (guessing.py)
    target_objective_metric_value: float | None = None  # TuningJobCompletionCriteria (None: not set)
    max_jobs_not_improving: int | None = None
    complete_on_convergence: str | None = None
    use_spot_training: bool = False
    max_runtime_seconds: int = 86400
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    min_rows_per_class: int = 10
    class_balance: str = "downsample"
    max_concurrent_runs: int = 2
    start_max_attempts: int = 8
    skip_duplicate_content: bool = True
    run_deadlines: dict[RunStatus, int] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    start_dead_letter_queue_url: str = ""  # the reconciler takes back StartTuning's dead-lettered events from it
    missed_drop_grace_minutes: int = MISSED_DROP_GRACE_MINUTES
    missed_drop_window_days: int = MISSED_DROP_WINDOW_DAYS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        ranges = _json(env, "HYPERPARAMETER_RANGES", DEFAULT_RANGES)
        static = _json(env, "STATIC_HYPERPARAMETERS", {})
        if not isinstance(ranges, dict) or not ranges:
            raise ConfigError("HYPERPARAMETER_RANGES must be a non-empty JSON object")
        if not isinstance(static, dict):
            raise ConfigError("STATIC_HYPERPARAMETERS must be a JSON object")
        settings = cls(
            bucket=_required(env, "BUCKET_NAME"),
            runs_table=_required(env, "RUNS_TABLE_NAME"),
            topic_arn=_required(env, "TOPIC_ARN"),
            sagemaker_role_arn=_required(env, "SAGEMAKER_ROLE_ARN"),
            idempotency_table=env.get("IDEMPOTENCY_TABLE_NAME", ""),
            job_name_prefix=env.get("JOB_NAME_PREFIX", "").strip() or "reviewtune",
            training_image_uri=_image(env, "TRAINING_IMAGE_URI", "training"),
            training_instance_type=env.get("TRAINING_INSTANCE_TYPE", "").strip() or "ml.g5.xlarge",
            training_instance_count=_int(env, "TRAINING_INSTANCE_COUNT", 1, minimum=1, maximum=1),  # train.py: one
            max_jobs=_int(env, "MAX_JOBS", 4, minimum=1),
            max_parallel_jobs=_int(env, "MAX_PARALLEL_JOBS", 2, minimum=1),
            strategy=_choice(env, "STRATEGY", "Bayesian", STRATEGIES),
            early_stopping=_choice(env, "EARLY_STOPPING", "Off", EARLY_STOPPING_TYPES),
            hyperparameter_ranges=ranges,
            static_hyperparameters=static,
            model_name=env.get("MODEL_NAME", "").strip() or "roberta-base",
            max_seq_length=_int(env, "MAX_SEQ_LENGTH", 128, minimum=8),
            epochs=_int(env, "EPOCHS", 3, minimum=1),
            processing_image_uri=_image(env, "PROCESSING_IMAGE_URI", "processing"),
            processing_instance_type=env.get("PROCESSING_INSTANCE_TYPE", "").strip() or "ml.m5.xlarge",
            inference_image_uri=env.get("INFERENCE_IMAGE_URI", "").strip()
            or _image(env, "PROCESSING_IMAGE_URI", "processing"),
            warm_start=_bool(env, "WARM_START", True),
            champion_margin_points=_float(env, "CHAMPION_MARGIN_POINTS", 0.5),
            champion_min_compared_reviews=_int(env, "CHAMPION_MIN_COMPARED_REVIEWS", 30, minimum=1),
            champion_max_p_value=_float(env, "CHAMPION_MAX_P_VALUE", 0.05),
            champion_must_beat_guessing=_bool(env, "CHAMPION_MUST_BEAT_GUESSING", True),
            target_objective_metric_value=_optional_float(env, "TARGET_OBJECTIVE_METRIC_VALUE"),
            max_jobs_not_improving=_optional_int(env, "MAX_JOBS_NOT_IMPROVING", MIN_JOBS_NOT_IMPROVING),
            complete_on_convergence=_optional_choice(env, "COMPLETE_ON_CONVERGENCE", CONVERGENCE_CHOICES),
            use_spot_training=env.get("USE_SPOT_TRAINING", "false").strip().lower() in ("1", "true", "yes"),
            max_runtime_seconds=_int(env, "MAX_RUNTIME_SECONDS", 86400, minimum=60),
            validation_fraction=_float(env, "VALIDATION_FRACTION", 0.05),
            test_fraction=_float(env, "TEST_FRACTION", 0.05),
            min_rows_per_class=_int(env, "MIN_ROWS_PER_CLASS", 10, minimum=3),
            class_balance=_choice(env, "CLASS_BALANCE", "downsample", CLASS_BALANCE_MODES),
            max_concurrent_runs=_int(env, "MAX_CONCURRENT_RUNS", 2, minimum=1),
            start_max_attempts=_int(env, "START_MAX_ATTEMPTS", 8, minimum=1),
            skip_duplicate_content=_bool(env, "SKIP_DUPLICATE_CONTENT", True),
            run_deadlines=_deadlines(env),
            start_dead_letter_queue_url=env.get("START_TUNING_DEAD_LETTER_QUEUE_URL", "").strip(),
            missed_drop_grace_minutes=_int(env, "MISSED_DROP_GRACE_MINUTES", MISSED_DROP_GRACE_MINUTES),
            missed_drop_window_days=_int(env, "MISSED_DROP_WINDOW_DAYS", MISSED_DROP_WINDOW_DAYS, minimum=1),
        )
        settings.check()
        return replace(settings, run_deadlines=_deadlines_within_limits(settings))

    def split_options(self) -> dict[str, Any]:
        """How a dropped file is split (dataset.split_stream's keyword arguments)."""
        return {
            "validation_fraction": self.validation_fraction,
            "test_fraction": self.test_fraction,
            "min_rows_per_class": self.min_rows_per_class,
            "class_balance": self.class_balance,
        }

    def check(self) -> None:
        from reviewtune.core.names import validate_prefix

        validate_prefix(self.job_name_prefix)
        if self.max_parallel_jobs > self.max_jobs:
            raise ConfigError(
                f"MAX_PARALLEL_JOBS ({self.max_parallel_jobs}) cannot exceed MAX_JOBS ({self.max_jobs})"
            )
        for name, value in (
            ("VALIDATION_FRACTION", self.validation_fraction),
            ("TEST_FRACTION", self.test_fraction),
        ):
            if not 0 < value < 0.5:
                raise ConfigError(f"{name} must be between 0 and 0.5, got {value}")
        if not 0 < self.champion_max_p_value <= 1:
            raise ConfigError(f"CHAMPION_MAX_P_VALUE must be above 0 and at most 1, got {self.champion_max_p_value}")
        if not 0 <= self.champion_margin_points <= 100:
            raise ConfigError(
                f"CHAMPION_MARGIN_POINTS must be between 0 and 100 percentage points, got {self.champion_margin_points}"
            )
        if self.missed_drop_grace_minutes >= self.missed_drop_window_days * 1440:
            raise ConfigError(
                f"MISSED_DROP_GRACE_MINUTES ({self.missed_drop_grace_minutes}) must be shorter than "
                f"MISSED_DROP_WINDOW_DAYS ({self.missed_drop_window_days} days)"
            )
        if self.strategy == "Hyperband" and self.early_stopping == "Auto":
            raise ConfigError("the Hyperband strategy needs EARLY_STOPPING Off (it stops trials itself)")


def tuning_budget_seconds(settings: Settings) -> int:
    """The longest a tuning job the stack makes now may run by its own limits (``budget_seconds``)."""
    return budget_seconds(settings.max_jobs, settings.max_parallel_jobs, trial_limit_seconds(settings))


def trial_limit_seconds(settings: Settings) -> int:
    """The longest one trial of the stack's tuning jobs may take: MaxRuntimeInSeconds, or MaxWaitTimeInSeconds
    (waiting for spot capacity included) with spot training."""
    return settings.max_runtime_seconds * (SPOT_WAIT_FACTOR if settings.use_spot_training else 1)


def budget_seconds(max_jobs: int, max_parallel_jobs: int, seconds_per_trial: int) -> int:
    """The longest a tuning job may run by its own limits: its trials in rounds of MaxParallelTrainingJobs, each
    trial at most ``seconds_per_trial`` (MaxRuntimeInSeconds, MaxWaitTimeInSeconds with spot training)."""
    return math.ceil(max_jobs / max(1, max_parallel_jobs)) * seconds_per_trial


def recorded_budget_seconds(config: Mapping[str, Any]) -> int | None:
    """The tuning budget of the job a run's recorded ``config`` describes (``max_jobs``, ``max_parallel_jobs``,
    ``max_runtime_seconds``, and ``max_wait_seconds`` with ``use_spot_training``); None where it lacks them."""
    try:
        per_trial = int(config["max_wait_seconds"] if config.get("use_spot_training") and config.get(
            "max_wait_seconds") else config["max_runtime_seconds"])
        return budget_seconds(int(config["max_jobs"]), int(config["max_parallel_jobs"]), per_trial)
    except (KeyError, TypeError, ValueError):
        return None


def tuning_deadline_seconds(deadline: int, budget: int) -> int:
    """A TUNING deadline of ``deadline`` seconds, raised where needed to a tuning budget of ``budget`` plus the
    slack: a tuning job working within its limits is never ended as stuck."""
    return max(deadline, budget + TUNING_DEADLINE_SLACK_SECONDS)


def _deadlines_within_limits(settings: Settings) -> dict[RunStatus, int]:
    """The run deadlines with TUNING's raised, where needed, to the tuning budget's longest run plus the slack,
    EVALUATING's to MIN_EVALUATING_DEADLINE_SECONDS, and QUEUED's to at least TUNING's and EVALUATING's together: a
    queued run waits for a run ahead of it that may tune and evaluate that long, and is not stuck meanwhile."""
    deadlines = dict(settings.run_deadlines)
    deadlines[RunStatus.EVALUATING] = max(deadlines[RunStatus.EVALUATING], MIN_EVALUATING_DEADLINE_SECONDS)
    deadlines[RunStatus.TUNING] = tuning_deadline_seconds(deadlines[RunStatus.TUNING], tuning_budget_seconds(settings))
    deadlines[RunStatus.QUEUED] = max(deadlines[RunStatus.QUEUED],
                                      deadlines[RunStatus.TUNING] + deadlines[RunStatus.EVALUATING])
    return deadlines
