"""Which earlier tuning jobs a new run of a dataset warm-starts from, and the WarmStartConfig that says so.

SageMaker accepts 1-5 parents that have ended, with the same objective metric and the same set of static plus
tunable hyperparameter names as the new job, each tuned hyperparameter of the same type (continuous, integer,
categorical), at most 10 changes each (a tuned hyperparameter made static counts its categorical values, 1 for a
range; a changed static value counts 2: "Warm Start Tuning Restrictions" of SageMaker's guide), whose training jobs
plus the new job's budget stay within 500. ``choose_parents`` keeps the newest previous runs that satisfy all of
that, so CreateHyperParameterTuningJob does not reject the request (``refusal`` is the one reading of those rules:
the local SageMaker service refuses by it too). ``warm_start_plan.py`` picks the type (``IdenticalDataAndAlgorithm`` only for the
very same input data, read from the same S3 URIs; else ``TransferLearning``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRANSFER_LEARNING = "TransferLearning"
IDENTICAL_DATA_AND_ALGORITHM = "IdenticalDataAndAlgorithm"
MAX_PARENTS = 5
MAX_TRAINING_JOBS = 500
MAX_CHANGES = 10
# static hyperparameters DescribeHyperParameterTuningJob shows that SageMaker adds to the job itself (the SageMaker
# Python SDK's HyperparameterTuner.attach drops them the same way)
SAGEMAKER_RESERVED = frozenset({"_tuning_objective_metric"})


@dataclass(frozen=True)
class Hyperparameters:
    """A tuning job's hyperparameters as warm start compares them: the static values, and each tuned one's type
    (Continuous, Integer, Categorical) with its number of values (a categorical's; 1 for a range)."""

    static: Mapping[str, str]
    tuned: Mapping[str, tuple[str, int]]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.static) | frozenset(self.tuned)

    @classmethod
    def of_request(cls, request: dict[str, Any]) -> Hyperparameters:
        """Of a CreateHyperParameterTuningJob request (or DescribeHyperParameterTuningJob's answer, less the static
        hyperparameters SageMaker adds itself)."""
        ranges = request["HyperParameterTuningJobConfig"].get("ParameterRanges") or {}
        tuned = {entry["Name"]: (kind.removesuffix("ParameterRanges"), len(entry.get("Values") or ()) or 1)
                 for kind, entries in ranges.items() for entry in entries}
        static = request["TrainingJobDefinition"].get("StaticHyperParameters") or {}
        return cls({name: value for name, value in static.items() if name not in SAGEMAKER_RESERVED}, tuned)

    def record(self) -> dict[str, Any]:
        """What a run's item keeps (``config.hyperparameters``)."""
        return {"static": dict(self.static), "tuned": {name: list(shape) for name, shape in self.tuned.items()}}

    @classmethod
    def from_record(cls, record: Any) -> Hyperparameters | None:
        """The record's hyperparameters; None for a run recorded before they were kept, or of another shape."""
        if not isinstance(record, dict) or not isinstance(record.get("static"), dict) or not isinstance(
                record.get("tuned"), dict):
            return None
        try:
            tuned = {str(name): (str(kind), int(count)) for name, (kind, count) in record["tuned"].items()}
        except (TypeError, ValueError):
            return None
        return cls({str(k): str(v) for k, v in record["static"].items()}, tuned)


def refusal(parent: Hyperparameters, child: Hyperparameters) -> str | None:
    """Why SageMaker refuses ``parent`` as a warm start parent of a job with ``child``'s hyperparameters; None when
    it accepts them."""
    if parent.names != child.names:
        return (f"the static plus tunable hyperparameters must be the same: missing {sorted(parent.names - child.names)}, "
                f"added {sorted(child.names - parent.names)} (make a hyperparameter static instead of removing it)")
    for name, (kind, _) in child.tuned.items():
        before = parent.tuned.get(name)
        if before is not None and before[0] != kind:
            return f"the type of hyperparameter {name!r} must not change ({before[0]} to {kind})"
    changes = sum(count for name, (_, count) in parent.tuned.items() if name in child.static)
    changes += sum(2 for name, value in parent.static.items() if name in child.static and child.static[name] != value)
    if changes > MAX_CHANGES:
        return (f"it makes {changes} changes to the hyperparameters (tunable made static, static values changed); at "
                f"most {MAX_CHANGES} are allowed")
    return None


@dataclass(frozen=True)
class PreviousRun:
    """What the choice needs to know of one earlier, ended tuning job of the dataset: its hyperparameters (their
    names only, for a run recorded before they were kept)."""

    tuning_job_name: str
    hyperparameters: Hyperparameters | frozenset[str]
    objective_metric: str
    training_jobs: int

    def accepts(self, child: Hyperparameters) -> bool:
        if isinstance(self.hyperparameters, Hyperparameters):
            return refusal(self.hyperparameters, child) is None
        return self.hyperparameters == child.names


def choose_parents(
    previous: Iterable[PreviousRun],
    *,
    hyperparameters: Hyperparameters,
    objective_metric: str,
    max_jobs: int,
) -> list[str]:
    """The names of at most five compatible parents, in the order given (pass newest first): runs whose
    hyperparameters are recorded; runs recorded with their names only when none of those is compatible (SageMaker
    refuses the whole warm start for one parent it does not accept, and their names alone cannot tell)."""
    previous = list(previous)
    known = [run for run in previous if isinstance(run.hyperparameters, Hyperparameters)]
    names_only = [run for run in previous if not isinstance(run.hyperparameters, Hyperparameters)]
    return (_choose(known, hyperparameters, objective_metric, max_jobs)
            or _choose(names_only, hyperparameters, objective_metric, max_jobs))


def _choose(previous: list[PreviousRun], hyperparameters: Hyperparameters, objective_metric: str,
            max_jobs: int) -> list[str]:
    room = MAX_TRAINING_JOBS - max_jobs
    chosen: list[str] = []
    seen: set[str] = set()
    for run in previous:
        if len(chosen) == MAX_PARENTS:
            break
        key = run.tuning_job_name.lower()
        if key in seen or run.objective_metric != objective_metric or not run.accepts(hyperparameters):
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
