"""Which earlier tuning jobs a new run of a dataset warm-starts from, and the WarmStartConfig that says so.

SageMaker accepts 1-5 parents that have ended, with the same objective metric and the same set of static plus
tunable hyperparameter names as the new job, whose training jobs plus the new job's budget stay within 500.
``choose_parents`` keeps the newest previous runs that satisfy all of that, so CreateHyperParameterTuningJob
does not reject the request. ``warm_start_plan.py`` picks the type (``IdenticalDataAndAlgorithm`` only for the
very same input data, read from the same S3 URIs; else ``TransferLearning``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TRANSFER_LEARNING = "TransferLearning"
IDENTICAL_DATA_AND_ALGORITHM = "IdenticalDataAndAlgorithm"
MAX_PARENTS = 5
MAX_TRAINING_JOBS = 500


@dataclass(frozen=True)
class PreviousRun:
    """What the choice needs to know of one earlier, ended tuning job of the dataset."""

    tuning_job_name: str
    hyperparameter_names: frozenset[str]
    objective_metric: str
    training_jobs: int


def choose_parents(
    previous: Iterable[PreviousRun],
    *,
    hyperparameter_names: Iterable[str],
    objective_metric: str,
    max_jobs: int,
) -> list[str]:
    """The names of at most five compatible parents, in the order given (pass newest first)."""
    names = frozenset(hyperparameter_names)
    room = MAX_TRAINING_JOBS - max_jobs
    chosen: list[str] = []
    seen: set[str] = set()
    for run in previous:
        if len(chosen) == MAX_PARENTS:
            break
        key = run.tuning_job_name.lower()
        if key in seen or run.hyperparameter_names != names or run.objective_metric != objective_metric:
            continue
        if run.training_jobs > room:
            continue
        room -= run.training_jobs
        seen.add(key)
        chosen.append(run.tuning_job_name)
    return chosen


def warm_start_config(
    parents: Iterable[str], warm_start_type: str = TRANSFER_LEARNING
) -> dict[str, Any] | None:
    """The request's WarmStartConfig, or None (no warm start) when there is no parent."""
    names = list(parents)
    if not names:
        return None
    if len(names) > MAX_PARENTS:
        raise ValueError(f"at most {MAX_PARENTS} parent tuning jobs, got {len(names)}")
    if warm_start_type not in (TRANSFER_LEARNING, IDENTICAL_DATA_AND_ALGORITHM):
        raise ValueError(f"unknown warm start type {warm_start_type!r}")
    return {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": name} for name in names],
        "WarmStartType": warm_start_type,
    }
