"""WarmStartConfig: a tuning job that starts from the trials of up to five earlier tuning jobs.

Checked as SageMaker documents it (Automatic Model Tuning, "Warm Start Tuning Restrictions"):

- 1 to 5 distinct parents (the service model checks the count), each existing and ended: Completed, Stopped
  or Failed;
- the same objective metric (name and type) as every parent;
- the same set of hyperparameter names, static plus tunable, as every parent (a static one may become
  tunable and back); a hyperparameter tunable in both keeps its type (continuous, integer, categorical);
- at most 10 changes per parent: a tunable hyperparameter made static counts its number of categorical
  values (1 for a continuous or integer range), a changed static value counts 2 (the old and the new);
  these three by ``reviewtune.core.warm_start.refusal``, by which the start_tuning function chooses parents;
- ``IdenticalDataAndAlgorithm``: the same training image and the same input channels (names and S3 URIs)
  as every parent; ``TransferLearning`` allows other data and another image version;
- the parents' training jobs count against the 500 training jobs of a tuning job
  (``ResourceLimitExceeded``);
- not recursive: only the parents' own training jobs are used, not their parents'.

The local service also rejects warm start with the Grid strategy: a grid is enumerated in full, so prior
trials cannot steer it (AWS's documentation names only Bayesian and random search for warm start).

Seeding: every parent training job that produced the objective becomes a finished Optuna trial of the new
study (``optuna.trial.create_trial`` with the new job's distributions), so a Bayesian (TPE) search models them
from its first suggestion on. A parent trial whose value of any tuned hyperparameter is outside the new ranges
(or not among its categorical values) is left out; a hyperparameter that was static in the parent takes its
static value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from reviewtune.core.warm_start import Hyperparameters, refusal

from .errors import ResourceLimitExceeded, ValidationError
from .search_space import CATEGORICAL, INTEGER, Dimension
from .statuses import TuningJobStatus
from .tuning_config import MAX_TRAINING_JOBS_PER_TUNING_JOB, TuningSettings

if TYPE_CHECKING:
    from .tuning import TuningJob

IDENTICAL_DATA_AND_ALGORITHM = "IdenticalDataAndAlgorithm"
TRANSFER_LEARNING = "TransferLearning"
ENDED = (TuningJobStatus.COMPLETED, TuningJobStatus.STOPPED, TuningJobStatus.FAILED)


@dataclass(frozen=True)
class ParentTrial:
    """One training job of a parent: all its hyperparameters (static and tuned) and its objective."""

    parent: str
    training_job: str
    hyperparameters: dict[str, str]
    objective: float


@dataclass(frozen=True)
class WarmStart:
    """A checked WarmStartConfig with what the parents bring."""

    config: dict[str, Any]
    trials: tuple[ParentTrial, ...]
    best_summaries: tuple[dict[str, Any], ...]

    @property
    def warm_start_type(self) -> str:
        return self.config["WarmStartType"]


def _definition(request: dict[str, Any]) -> dict[str, Any]:
    return request["TrainingJobDefinition"]


def _static(request: dict[str, Any]) -> dict[str, str]:
    return dict(_definition(request).get("StaticHyperParameters") or {})


def _objective(request: dict[str, Any]) -> dict[str, Any]:
    config = request["HyperParameterTuningJobConfig"]
    return config.get("HyperParameterTuningJobObjective") or _definition(request).get("TuningObjective") or {}


def _image(request: dict[str, Any]) -> str | None:
    spec = _definition(request).get("AlgorithmSpecification") or {}
    return spec.get("TrainingImage") or spec.get("AlgorithmName")


def _channels(request: dict[str, Any]) -> dict[str, str | None]:
    return {
        channel["ChannelName"]: ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
        for channel in _definition(request).get("InputDataConfig") or []
    }


def _check_parent(
    parent: TuningJob, request: dict[str, Any], settings: TuningSettings, warm_start_type: str
) -> None:
    if parent.status not in ENDED:
        raise ValidationError(
            f"The parent hyperparameter tuning job {parent.name} is {parent.status}; every parent of a warm start "
            "tuning job must have ended (Completed, Stopped or Failed)."
        )
    theirs, ours = _objective(parent.request), _objective(request)
    if (theirs.get("MetricName"), theirs.get("Type")) != (ours.get("MetricName"), ours.get("Type")):
        raise ValidationError(
            f"The objective metric of the tuning job ({ours.get('Type')} {ours.get('MetricName')}) must be the "
            f"same as that of its parent {parent.name} ({theirs.get('Type')} {theirs.get('MetricName')})."
        )
    refused = refusal(Hyperparameters.of_request(parent.request), Hyperparameters.of_request(request))
    if refused:
        raise ValidationError(f"Parent {parent.name}: {refused[0].upper()}{refused[1:]}.")
    if warm_start_type == IDENTICAL_DATA_AND_ALGORITHM:
        if _image(parent.request) != _image(request):
            raise ValidationError(
                f"WarmStartType {IDENTICAL_DATA_AND_ALGORITHM} needs the training image of the parent "
                f"{parent.name} ({_image(parent.request)}), got {_image(request)}; use {TRANSFER_LEARNING} for "
                "another image."
            )
        if _channels(parent.request) != _channels(request):
            raise ValidationError(
                f"WarmStartType {IDENTICAL_DATA_AND_ALGORITHM} needs the input data of the parent {parent.name} "
                f"({json.dumps(_channels(parent.request), sort_keys=True)}), got "
                f"{json.dumps(_channels(request), sort_keys=True)}; use {TRANSFER_LEARNING} for other data."
            )


def resolve_warm_start(
    request: dict[str, Any], settings: TuningSettings, find_tuning_job: Callable[[str], TuningJob]
) -> WarmStart | None:
    """Check the request's WarmStartConfig against its parents; None when there is none."""
    config = request.get("WarmStartConfig")
    if not config:
        return None
    if settings.strategy == "Grid":
        raise ValidationError(
            "WarmStartConfig is not supported with the Grid strategy: a grid search runs every combination "
            "anyway. Use Bayesian, Random or Hyperband."
        )
    names = [parent["HyperParameterTuningJobName"] for parent in config["ParentHyperParameterTuningJobs"]]
    if len({name.lower() for name in names}) != len(names):
        raise ValidationError(f"ParentHyperParameterTuningJobs names a tuning job more than once: {names}.")
    if request["HyperParameterTuningJobName"].lower() in {name.lower() for name in names}:
        raise ValidationError("A tuning job cannot be its own parent.")
    trials: list[ParentTrial] = []
    bests: list[dict[str, Any]] = []
    parent_jobs = 0
    for name in names:
        parent = find_tuning_job(name)
        _check_parent(parent, request, settings, config["WarmStartType"])
        static = _static(parent.request)
        count, finished, best = parent.results()
        parent_jobs += count
        trials += [
            ParentTrial(parent.name, job, {**static, **tuned}, value) for job, tuned, value in finished
        ]
        if best is not None:
            bests.append(best)
    total = parent_jobs + settings.max_jobs
    if total > MAX_TRAINING_JOBS_PER_TUNING_JOB:
        raise ResourceLimitExceeded(
            f"The training jobs of the parent tuning jobs ({parent_jobs}) plus MaxNumberOfTrainingJobs "
            f"({settings.max_jobs}) exceed the account-level service limit 'Maximum number of training jobs per "
            f"tuning job' of {MAX_TRAINING_JOBS_PER_TUNING_JOB} Jobs."
        )
    return WarmStart(config=config, trials=tuple(trials), best_summaries=tuple(bests))


def _internal_value(dimension: Dimension, text: str) -> Any:
    """A hyperparameter string as the value of ``dimension``'s distribution; None when outside it."""
    distribution = dimension.distribution
    if dimension.kind == CATEGORICAL:
        return text if text in distribution.choices else None
    try:
        if dimension.kind == INTEGER:
            value: Any = int(float(text))
        else:
            value = float(text)
            if not math.isfinite(value):
                return None
            if dimension.reverse:
                value = 1.0 - value
    except ValueError:
        return None
    low, high = distribution.low, distribution.high
    return value if low <= value <= high else None


def seed_study(study: optuna.Study, space: dict[str, Dimension], trials: tuple[ParentTrial, ...]) -> int:
    """Add the parents' trials that fit ``space`` to ``study`` as finished trials; returns how many."""
    distributions = {name: dimension.distribution for name, dimension in space.items()}
    seeds = []
    for trial in trials:
        params = {}
        for name, dimension in space.items():
            text = trial.hyperparameters.get(name)
            value = None if text is None else _internal_value(dimension, text)
            if value is None:
                break
            params[name] = value
        else:
            seeds.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions=distributions,
                    value=trial.objective,
                    state=TrialState.COMPLETE,
                    user_attrs={"parent": trial.parent, "training_job": trial.training_job},
                )
            )
    study.add_trials(seeds)
    return len(seeds)
