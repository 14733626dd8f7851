"""Read and check a CreateHyperParameterTuningJob request beyond what the service model checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ResourceLimitExceeded, ValidationError
from .metrics import MetricDefinition
from .search_space import Dimension, grid_size, search_space
from .training import unquote

MAX_TRAINING_JOBS_PER_TUNING_JOB = 500
MAX_PARALLEL_TRAINING_JOBS = 100
EPOCH_HYPERPARAMETERS = ("epochs", "num_epochs", "n_epochs")


@dataclass(frozen=True)
class TuningSettings:
    """Everything a tuning job needs to know, checked."""

    strategy: str
    objective_metric: str
    maximize: bool
    space: dict[str, Dimension]
    max_jobs: int
    max_parallel: int
    max_runtime: int | None
    early_stopping: str
    seed: int | None
    target_value: float | None
    max_jobs_not_improving: int | None
    complete_on_convergence: bool
    hyperband_min_resource: int
    hyperband_max_resource: int | str

    def is_better(self, value: float, than: float) -> bool:
        return value > than if self.maximize else value < than

    def reaches_target(self, value: float) -> bool:
        if self.target_value is None:
            return False
        return value >= self.target_value if self.maximize else value <= self.target_value


def check_metric_definitions(definitions: list[dict[str, Any]], field: str) -> None:
    for definition in definitions:
        try:
            MetricDefinition.compile(definition)
        except ValueError as error:
            raise ValidationError(f"{field}: {error}") from None


def check_spot(definition: dict[str, Any]) -> None:
    """Managed spot training needs MaxWaitTimeInSeconds >= MaxRuntimeInSeconds, as in SageMaker."""
    if not definition.get("EnableManagedSpotTraining"):
        return
    stopping = definition.get("StoppingCondition") or {}
    wait, runtime = stopping.get("MaxWaitTimeInSeconds"), stopping.get("MaxRuntimeInSeconds", 86400)
    if wait is None or wait < runtime:
        raise ValidationError(
            "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to "
            "MaxRuntimeInSeconds when EnableManagedSpotTraining is true."
        )


def _static_epochs(static: dict[str, str]) -> int | None:
    for name in EPOCH_HYPERPARAMETERS:
        if name in static:
            try:
                return int(float(unquote(static[name])))
            except ValueError:
                return None
    return None


def parse_tuning_request(request: dict[str, Any]) -> TuningSettings:
    """Check the request (the service model has been checked already) and return its settings."""
    if request.get("TrainingJobDefinitions"):
        raise ValidationError(
            "TrainingJobDefinitions (several training definitions) is not supported by the local SageMaker "
            "service; give one TrainingJobDefinition."
        )
    definition = request.get("TrainingJobDefinition")
    if not definition:
        raise ValidationError("TrainingJobDefinition is required: the tuning job has nothing to train.")
    if (request.get("Autotune") or {}).get("Mode") == "Enabled":
        raise ValidationError("Autotune is not supported by the local SageMaker service.")

    config = request["HyperParameterTuningJobConfig"]
    strategy = config["Strategy"]
    objective = config.get("HyperParameterTuningJobObjective") or definition.get("TuningObjective")
    if not objective:
        raise ValidationError(
            "HyperParameterTuningJobConfig.HyperParameterTuningJobObjective is required: name the metric to "
            "optimize and its Type (Maximize or Minimize)."
        )
    metric_definitions = definition["AlgorithmSpecification"].get("MetricDefinitions") or []
    check_metric_definitions(
        metric_definitions, "TrainingJobDefinition.AlgorithmSpecification.MetricDefinitions"
    )
    names = [item["Name"] for item in metric_definitions]
    if objective["MetricName"] not in names:
        raise ValidationError(
            f"The objective metric for the hyperparameter tuning job, [{objective['MetricName']}], isn't defined "
            f"in TrainingJobDefinition.AlgorithmSpecification.MetricDefinitions (defined: {names}). Add a metric "
            "definition with that Name and a Regex that captures its value."
        )
    check_spot(definition)

    static = definition.get("StaticHyperParameters") or {}
    ranges = config.get("ParameterRanges") or definition.get("HyperParameterRanges")
    space = search_space(ranges, static)

    early_stopping = config.get("TrainingJobEarlyStoppingType", "Off")
    hyperband = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig")
    if strategy == "Hyperband" and early_stopping != "Off":
        raise ValidationError(
            "TrainingJobEarlyStoppingType must be Off with the Hyperband strategy, which stops training jobs itself."
        )
    if hyperband and strategy != "Hyperband":
        raise ValidationError(
            f"StrategyConfig.HyperbandStrategyConfig is only valid with the Hyperband strategy, not {strategy}."
        )
    hyperband = hyperband or {}
    min_resource = hyperband.get("MinResource", 1)
    max_resource: int | str = hyperband.get("MaxResource") or _static_epochs(static) or "auto"
    if isinstance(max_resource, int) and max_resource < min_resource:
        raise ValidationError(
            f"HyperbandStrategyConfig.MinResource ({min_resource}) must not exceed MaxResource ({max_resource})."
        )

    limits = config["ResourceLimits"]
    max_parallel = limits["MaxParallelTrainingJobs"]
    max_jobs = limits.get("MaxNumberOfTrainingJobs")
    if strategy == "Grid":
        size = grid_size(space)
        max_jobs = size if max_jobs is None else min(max_jobs, size)
    elif max_jobs is None:
        raise ValidationError(
            f"HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs is required for the {strategy} strategy."
        )
    if max_jobs > MAX_TRAINING_JOBS_PER_TUNING_JOB:
        raise ResourceLimitExceeded(
            f"The account-level service limit 'Maximum number of training jobs per tuning job' is "
            f"{MAX_TRAINING_JOBS_PER_TUNING_JOB} Jobs, and the request asks for {max_jobs} Jobs."
        )
    if max_parallel > MAX_PARALLEL_TRAINING_JOBS:
        raise ResourceLimitExceeded(
            f"The account-level service limit 'Number of concurrent training jobs per tuning job' is "
            f"{MAX_PARALLEL_TRAINING_JOBS} Jobs, and the request asks for {max_parallel} Jobs."
        )

    criteria = config.get("TuningJobCompletionCriteria") or {}
    return TuningSettings(
        strategy=strategy,
        objective_metric=objective["MetricName"],
        maximize=objective["Type"] == "Maximize",
        space=space,
        max_jobs=max_jobs,
        max_parallel=min(max_parallel, max_jobs),
        max_runtime=limits.get("MaxRuntimeInSeconds"),
        early_stopping=early_stopping,
        seed=config.get("RandomSeed"),
        target_value=criteria.get("TargetObjectiveMetricValue"),
        max_jobs_not_improving=(criteria.get("BestObjectiveNotImproving") or {}).get(
            "MaxNumberOfTrainingJobsNotImproving"
        ),
        complete_on_convergence=(criteria.get("ConvergenceDetected") or {}).get("CompleteOnConvergence")
        == "Enabled",
        hyperband_min_resource=min_resource,
        hyperband_max_resource=max_resource,
    )
