"""Which earlier runs of a dataset a new tuning job warm-starts from, read from the runs table.

A run's item holds what the choice needs: ``config.hyperparameters`` (static values, tuned types; runs recorded
before them: ``config.hyperparameter_names``, static plus tunable),
``config.objective_metric``, ``config.training_image_uri``, ``tuning.trials`` (how many training jobs it ran),
``data.sha256`` (the hash of each split as written) and ``config.warm_start.channels`` (the S3 URIs its tuning
job actually read). Parents are the dataset's most recent SUCCEEDED runs that ``warm_start.choose_parents``
accepts.

The type: ``IdenticalDataAndAlgorithm`` when every parent trained on the very same train and validation data
(same hashes), with the same training image, read from the same S3 URIs; the new job then reads those URIs
too, because SageMaker compares the channels' URIs, not their content. Otherwise ``TransferLearning`` on the
run's own data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reviewtune.core import names, trial_records
from reviewtune.core.runs import RunsRepository
from reviewtune.core.warm_start import (
    IDENTICAL_DATA_AND_ALGORITHM,
    TRANSFER_LEARNING,
    Hyperparameters,
    PreviousRun,
    choose_parents,
    warm_start_config,
)

CHANNELS = ("train", "validation")
CANDIDATES = 25  # the dataset's newest succeeded runs looked at (five parents at most are kept)
CANDIDATES_READ = 1000  # runs of the dataset read to find them (rejected, failed, duplicate drops in between)


@dataclass(frozen=True)
class WarmStartPlan:
    """The parents of a new tuning job, its WarmStartConfig (None: cold start), the channels it reads, and why."""

    parents: tuple[str, ...]
    warm_start_type: str | None
    channels: dict[str, str]
    reason: str
    refused: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any] | None:
        if not self.parents or self.warm_start_type is None:
            return None
        return warm_start_config(self.parents, self.warm_start_type)

    def summary(self) -> dict[str, Any]:
        """What the run item keeps (``config.warm_start``) and the messages show."""
        out: dict[str, Any] = {
            "parents": list(self.parents),
            "type": self.warm_start_type,
            "channels": self.channels,
            "reason": self.reason,
        }
        if self.refused:
            out["refused"] = self.refused
        return out

    def as_made(self, job: dict[str, Any]) -> WarmStartPlan:
        """The warm start a tuning job an earlier attempt made really has (DescribeHyperParameterTuningJob): that
        attempt may have planned other parents (a run of the dataset succeeded since) or gone cold after a refusal.
        This plan when the job agrees with it."""
        warm = job.get("WarmStartConfig") or {}
        parents = tuple(p["HyperParameterTuningJobName"] for p in warm.get("ParentHyperParameterTuningJobs") or [])
        kind = warm.get("WarmStartType") if parents else None
        definition = job.get("TrainingJobDefinition") or {}
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                    for c in definition.get("InputDataConfig") or [] if "S3DataSource" in c.get("DataSource", {})}
        channels = channels or self.channels
        if (parents, kind, channels) == (self.parents, self.warm_start_type, self.channels):
            return self
        reason = (f"{kind} from {len(parents)} earlier run(s)" if parents else "cold start") + (
            ", as an earlier attempt made the job")
        return WarmStartPlan(parents, kind, channels, reason)

    def cold(self, refused: str) -> WarmStartPlan:
        """The same job without warm start, on the run's own data, after SageMaker refused the warm start."""
        return WarmStartPlan((), None, self.extra.get("own_channels", self.channels), "warm start refused", refused)


def own_channels(bucket: str, run_id: str) -> dict[str, str]:
    return {split: names.s3_uri(bucket, names.split_prefix(run_id, split)) for split in CHANNELS}


def unplanned(bucket: str, run_id: str, why: str) -> WarmStartPlan:
    """A cold start on the run's own data, when its warm start could not be planned (``why``): a parent's record of
    another shape costs the run no more than its warm start."""
    return WarmStartPlan((), None, own_channels(bucket, run_id), f"not planned: {why}")


def channels_of(run: dict[str, Any], bucket: str) -> dict[str, str]:
    """The S3 URIs a run's tuning job read (its own split folders unless it reused a parent's)."""
    used = ((run.get("config") or {}).get("warm_start") or {}).get("channels")
    return dict(used) if used else own_channels(bucket, run["run_id"])


def _previous(run: dict[str, Any]) -> PreviousRun | None:
    config = run.get("config") or {}
    trials = (run.get("tuning") or {}).get("trials")
    if not config.get("hyperparameter_names") or not config.get("objective_metric") or not isinstance(trials, list):
        return None  # a run recorded before these were kept
    hyperparameters = Hyperparameters.from_record(config.get("hyperparameters"))
    return PreviousRun(run["run_id"], hyperparameters or frozenset(config["hyperparameter_names"]),
                       config["objective_metric"], trial_records.total(run["tuning"]))


def _same_data(parent: dict[str, Any], digests: dict[str, str], image: str) -> bool:
    theirs = (parent.get("data") or {}).get("sha256") or {}
    return (
        all(digests.get(split) and theirs.get(split) == digests[split] for split in CHANNELS)
        and (parent.get("config") or {}).get("training_image_uri") == image
    )


def plan_warm_start(
    runs: RunsRepository,
    run: dict[str, Any],
    *,
    enabled: bool,
    strategy: str,
    bucket: str,
    request: dict[str, Any],
    readable: Callable[[str], bool] = lambda uri: True,
) -> WarmStartPlan:
    """The warm start of ``run``'s tuning job, whose request (without warm start) is ``request``.

    Parents are earlier succeeded runs of the dataset with the same model and objective whose hyperparameters
    SageMaker accepts (``warm_start.refusal``).
    ``readable(uri)``: whether an S3 folder still holds objects; identical data reuses the parents' folders, which
    expire with ``RunsExpirationDays``: once gone, the run tunes on its own copy (TransferLearning)."""
    mine = own_channels(bucket, run["run_id"])
    if not enabled:
        return WarmStartPlan((), None, mine, "off (WarmStart=false)")
    if strategy == "Grid":
        return WarmStartPlan((), None, mine, "not used with the Grid strategy")
    config = request["HyperParameterTuningJobConfig"]
    succeeded = runs.succeeded_of_dataset(run.get("dataset") or "", CANDIDATES, CANDIDATES_READ)  # not this run
    model = (run.get("config") or {}).get("model_name")
    # another model's search says little about this one's learning rates (SageMaker would accept it as a parent)
    candidates = {item["run_id"]: item for item in succeeded if (item.get("config") or {}).get("model_name") == model}
    previous = [p for p in map(_previous, candidates.values()) if p is not None]
    parents = choose_parents(
        previous,
        hyperparameters=Hyperparameters.of_request(request),
        objective_metric=config["HyperParameterTuningJobObjective"]["MetricName"],
        max_jobs=config["ResourceLimits"]["MaxNumberOfTrainingJobs"],
    )
    extra = {"own_channels": mine}
    if not parents:
        reason = "no earlier compatible run of the dataset" if succeeded else "no earlier succeeded run of the dataset"
        return WarmStartPlan((), None, mine, reason, extra=extra)
    chosen = [candidates[name] for name in parents]
    digests = (run.get("data") or {}).get("sha256") or {}
    image = request["TrainingJobDefinition"]["AlgorithmSpecification"].get("TrainingImage", "")
    parent_channels = [channels_of(parent, bucket) for parent in chosen]
    if all(_same_data(parent, digests, image) for parent in chosen) and all(
        c == parent_channels[0] for c in parent_channels
    ):
        if all(readable(uri) for uri in parent_channels[0].values()):
            return WarmStartPlan(
                tuple(parents), IDENTICAL_DATA_AND_ALGORITHM, parent_channels[0], "same train and validation data",
                extra=extra,
            )
        return WarmStartPlan(
            tuple(parents), TRANSFER_LEARNING, mine,
            "same data as the parents, but their copy of it is gone (RunsExpirationDays): tuned on its own copy",
            extra=extra,
        )
    return WarmStartPlan(tuple(parents), TRANSFER_LEARNING, mine, "other data than the parents", extra=extra)


def apply(request: dict[str, Any], plan: WarmStartPlan) -> dict[str, Any]:
    """The request with the plan's WarmStartConfig (if any) and channels."""
    definition = dict(request["TrainingJobDefinition"])
    definition["InputDataConfig"] = [
        {
            **channel,
            "DataSource": {
                "S3DataSource": {**channel["DataSource"]["S3DataSource"], "S3Uri": plan.channels[channel["ChannelName"]]}
            },
        }
        for channel in definition["InputDataConfig"]
    ]
    out = {**request, "TrainingJobDefinition": definition}
    out.pop("WarmStartConfig", None)
    if plan.config:
        out["WarmStartConfig"] = plan.config
    return out
