"""start_tuning: validate and split a dropped file, then start a SageMaker tuning job for it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from reviewtune.core import (
    aws_errors,
    claims,
    display,
    duplicates,
    job_stops,
    messages,
    names,
    prefixes,
    s3_presence,
    slots,
    states,
    stop_requests,
)
from reviewtune.core.clients import AwsClients
from reviewtune.core.code_bundle import CodeBundle, ensure_uploaded
from reviewtune.core.config import (
    Settings,
    recorded_budget_seconds,
    trial_limit_seconds,
    tuning_deadline_seconds,
)
from reviewtune.core.dataset import SplitDataset, read_dropped_file, write_splits
from reviewtune.core.errors import ConfigError, DatasetError, ObjectGoneError, ObjectUnreadableError
from reviewtune.core.failures import already_final, end_run, repository
from reviewtune.core.formats import MAX_FILE_BYTES
from reviewtune.core.metrics import OBJECTIVE_METRIC, OBJECTIVE_TYPE, metric_definitions
from reviewtune.core.outbox import send_pending
from reviewtune.core.ranges import (
    MAX_HYPERPARAMETERS,
    MAX_RANGES,
    format_value,
    parameter_ranges,
    range_names,
)
from reviewtune.core.reasons import bounded
from reviewtune.core.runs import RunsRepository, RunStatus, now_iso, out_of_date, parse_iso, unsent
from reviewtune.core.train_hashes import write_train_hashes
from reviewtune.core.warm_start import SAGEMAKER_RESERVED, Hyperparameters
from reviewtune.core.warm_start_plan import apply as apply_warm_start
from reviewtune.core.warm_start_plan import plan_warm_start
from reviewtune.core.warm_start_plan import unplanned as unplanned_warm_start

logger = Logger(child=True)

TRAINING_PROGRAM = "train.py"
RUN_ID_TAG = "reviewtune:run-id"
# What reading a record of another shape raises (one written by an earlier version): the same on every try.
_RECORD_ERRORS = (TypeError, KeyError, ValueError, AttributeError)
TRAINING_VOLUME_GB = 30


@dataclass(frozen=True)
class DroppedObject:
    bucket: str
    key: str  # as stored in S3
    version_id: str | None
    etag: str | None
    size: int | None
    sequencer: str | None = None  # the event's (S3's order of the key's uploads); None: not from an event
    upload: str | None = None  # a later upload of the same bytes, bucket without versioning: its sequencer
    uploaded_at: str | None = None  # the event's time (not kept on the run)

    @property
    def identity(self) -> str:
        return names.object_identity(self.bucket, self.key, self.version_id, self.etag, self.upload)

    @property
    def own_upload(self) -> DroppedObject:
        """This upload as one of its own: a later upload of the same bytes (bucket without versioning) named by its
        sequencer."""
        return replace(self, upload=self.sequencer)

    @property
    def version_identity(self) -> str:
        """The identity of its version (key and ETag without versioning), whichever upload of those bytes it is."""
        return names.object_identity(self.bucket, self.key, self.version_id, self.etag)


def check_hyperparameter_counts(static: dict[str, str], tuned: set[str]) -> None:
    """A ConfigError where SageMaker would refuse the tuning job for the number of its hyperparameters (SageMaker's
    own, ``_tuning_objective_metric``, counted): an error botocore does not see, whose refusal every run would get."""
    if len(tuned) > MAX_RANGES:
        raise ConfigError(f"HYPERPARAMETER_RANGES names {len(tuned)} hyperparameters; SageMaker tunes at most "
                          f"{MAX_RANGES}")
    total = len(static) + len(tuned) + len(SAGEMAKER_RESERVED)
    if total > MAX_HYPERPARAMETERS:
        raise ConfigError(f"a tuning job would have {total} hyperparameters ({len(static)} static, including "
                          f"reviewtune's own and STATIC_HYPERPARAMETERS, {len(tuned)} tuned, and SageMaker's "
                          f"{len(SAGEMAKER_RESERVED)}); SageMaker allows at most {MAX_HYPERPARAMETERS}")


def static_hyperparameters(settings: Settings, code: CodeBundle, tuned: set[str]) -> dict[str, str]:
    """Hyperparameters every trial gets; anything in the ranges is left to the tuner (``check_hyperparameter_counts``
    on them and the ranges: a ConfigError)."""
    static: dict[str, Any] = {
        "model_name_or_path": settings.model_name,
        "freeze_bert_layer": False,
        "keep_layers": 0,  # all; always named, as max_train_seconds below
        "frozen_cache_mb": 0,  # off; always named, as max_train_seconds below
        "max_seq_length": settings.max_seq_length,
        "epochs": settings.epochs,
        "train_steps_per_epoch": 0,
        # always named, 0 = no limit: warm start wants the same hyperparameter names in parent and child, and a
        # local plan sets a limit only where it has a measured throughput and fits the budget
        "max_train_seconds": 0,
        "validation_batch_size": 64,
        "validation_steps_per_epoch": 0,
        "seed": 42,
        "run_validation": True,
    }
    static.update(settings.static_hyperparameters)
    static = {
        k: (json.dumps(v) if isinstance(v, dict | list) else format_value(v))
        for k, v in static.items()
        if k not in tuned
    }
    static["sagemaker_program"] = TRAINING_PROGRAM
    static["sagemaker_submit_directory"] = code.archive_uri
    check_hyperparameter_counts(static, tuned)
    return static


def completion_criteria(settings: Settings) -> dict[str, Any]:
    """TuningJobCompletionCriteria from the settings; empty when none is set (the job runs its whole budget)."""
    criteria: dict[str, Any] = {}
    if settings.target_objective_metric_value is not None:
        criteria["TargetObjectiveMetricValue"] = settings.target_objective_metric_value
    if settings.max_jobs_not_improving is not None:
        criteria["BestObjectiveNotImproving"] = {
            "MaxNumberOfTrainingJobsNotImproving": settings.max_jobs_not_improving
        }
    if settings.complete_on_convergence is not None:
        criteria["ConvergenceDetected"] = {"CompleteOnConvergence": settings.complete_on_convergence}
    return criteria


def tuning_job_request(settings: Settings, run_id: str, dataset: str, code: CodeBundle) -> dict[str, Any]:
    """The CreateHyperParameterTuningJob request of one run."""
    ranges = parameter_ranges(settings.hyperparameter_ranges)
    config: dict[str, Any] = {
        "Strategy": settings.strategy,
        "HyperParameterTuningJobObjective": {"Type": OBJECTIVE_TYPE, "MetricName": OBJECTIVE_METRIC},
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": settings.max_jobs,
            "MaxParallelTrainingJobs": settings.max_parallel_jobs,
        },
        "ParameterRanges": ranges,
        "TrainingJobEarlyStoppingType": settings.early_stopping,
        "RandomSeed": 42,
    }
    criteria = completion_criteria(settings)
    if criteria:
        config["TuningJobCompletionCriteria"] = criteria
    if settings.strategy == "Hyperband":
        config["StrategyConfig"] = {
            "HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": settings.epochs}
        }
    bucket = settings.bucket
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
    if settings.use_spot_training:
        stopping["MaxWaitTimeInSeconds"] = trial_limit_seconds(settings)
    definition: dict[str, Any] = {
        "StaticHyperParameters": static_hyperparameters(settings, code, range_names(ranges)),
        "AlgorithmSpecification": {
            "TrainingImage": settings.training_image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions(),
        },
        "RoleArn": settings.sagemaker_role_arn,
        "InputDataConfig": [
            {
                "ChannelName": split,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": names.s3_uri(bucket, names.split_prefix(run_id, split)),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/tab-separated-values",
                "CompressionType": "None",
            }
            for split in ("train", "validation")
        ],
        "OutputDataConfig": {"S3OutputPath": names.s3_uri(bucket, names.models_prefix(run_id))},
        "ResourceConfig": {
            "InstanceType": settings.training_instance_type,
            "InstanceCount": settings.training_instance_count,
            "VolumeSizeInGB": TRAINING_VOLUME_GB,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": settings.use_spot_training,
    }
    return {
        "HyperParameterTuningJobName": run_id,
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
        "Tags": [
            {"Key": RUN_ID_TAG, "Value": run_id},
            {"Key": "reviewtune:dataset", "Value": names.sagemaker_text(dataset)},
        ],
    }


def _config_summary(settings: Settings) -> dict[str, Any]:
    return {
        "strategy": settings.strategy,
        "max_jobs": settings.max_jobs,
        "max_parallel_jobs": settings.max_parallel_jobs,
        "early_stopping": settings.early_stopping,
        "hyperparameter_ranges": settings.hyperparameter_ranges,
        "static_hyperparameters": settings.static_hyperparameters,
        "model_name": settings.model_name,
        "max_seq_length": settings.max_seq_length,
        "epochs": settings.epochs,
        "training_image_uri": settings.training_image_uri,
        "training_instance_type": settings.training_instance_type,
        "training_instance_count": settings.training_instance_count,
        "use_spot_training": settings.use_spot_training,
        "max_runtime_seconds": settings.max_runtime_seconds,
        "max_wait_seconds": trial_limit_seconds(settings) if settings.use_spot_training else None,
        "completion_criteria": completion_criteria(settings),
    }


def _reject(
    obj: DroppedObject, run_id: str, error: DatasetError, settings: Settings, clients: AwsClients,
    claim: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Keep the reason (and a copy of the file) under rejected/, record the run, tell people. Nothing is lost.

    No copy is made of a file refused for its size (over the limit, possibly over CopyObject's 5 GB) or of a version
    that no longer exists; the original of a large file stays where it was dropped."""
    reason = bounded(str(error))
    target = names.rejected_key(obj.key)
    copied, not_copied, copy_version = _keep_copy(obj, target, error, settings, clients)
    report = {
        "run_id": run_id,
        "source": names.s3_uri(obj.bucket, obj.key),
        "version_id": obj.version_id,
        "reason": reason,
        "copied": copied,
    }
    reason_key = names.rejected_reason_key(obj.key)
    written = clients.s3.put_object(
        Bucket=settings.bucket,
        Key=reason_key,
        Body=json.dumps(report, indent=2).encode(),
        ContentType="application/json",
    )
    runs = repository(settings, clients)
    # The keys under rejected/ are the dropped key's: a later rejected version of the same key takes them over, so
    # the run keeps the S3 versions of its own copy and reason (the bucket is versioned).
    fields: dict[str, Any] = {"failure_reason": reason, "reason_uri": names.s3_uri(settings.bucket, reason_key)}
    if isinstance(error, ObjectUnreadableError):  # its bytes were never read: `runs retry` may try again (retries.py)
        fields["unreadable"] = True
    fields.update(_retry_of(error))
    if written.get("VersionId"):
        fields["reason_version_id"] = written["VersionId"]
    if copied:
        fields["rejected_uri"] = names.s3_uri(settings.bucket, target)
        if copy_version:
            fields["rejected_version_id"] = copy_version
    else:
        fields["not_copied"] = not_copied
    view = _message_view(obj, run_id, claim, fields)
    notice = messages.rejected(
        view, reason, fields.get("rejected_uri"), settings.runs_table, reason_uri=fields["reason_uri"],
        not_copied=not_copied, rejected_version=copy_version, reason_version=fields.get("reason_version_id"),
    )
    if runs.transition(run_id, RunStatus.CLAIMED, RunStatus.REJECTED, notice=notice, **fields) is None:
        return _moved_on(runs, settings, clients, run_id)
    send_pending(runs, clients.sns, settings.topic_arn, run_id)
    # not the reason: it may quote a row of the file (customer text), which the logs are not the place for; the
    # run, its message and the reason file keep it
    logger.warning("file rejected", extra={"run_id": run_id, "error": type(error).__name__,
                                           "reason_uri": fields["reason_uri"], "copied": copied})
    return {"run_id": run_id, "status": RunStatus.REJECTED.value, "reason": reason}


def _message_view(obj: DroppedObject, run_id: str, claim: dict[str, Any] | None,
                  fields: dict[str, Any]) -> dict[str, Any]:
    """The run as a REJECTED or DUPLICATE message reads it: the fields written now, and from its claim how it came to
    be (the reconciler's listing of incoming/ found it: messages._provenance)."""
    found = {"found_by_sweep": claim["found_by_sweep"]} if claim and claim.get("found_by_sweep") else {}
    return {**found, "run_id": run_id, "dataset": names.dataset_name(obj.key), "source": _source(obj), **fields}


def _keep_copy(
    obj: DroppedObject, target: str, error: DatasetError, settings: Settings, clients: AwsClients
) -> tuple[bool, str | None, str | None]:
    """Copy the rejected version under rejected/ when that is possible and useful: (copied, why not, the copy's
    S3 version)."""
    gone = "there is nothing to copy: the object is not there any more"
    stays = f"the original stays at {names.s3_uri(obj.bucket, obj.key)}"
    if isinstance(error, ObjectUnreadableError):
        return False, f"S3 refuses to read it, so it cannot be copied; {stays}", None
    if isinstance(error, ObjectGoneError):
        return False, gone, None
    if obj.size is None:  # neither the event nor S3 said how large it is: it might pass CopyObject's 5 GB
        return False, f"its size is unknown, so it was not copied; {stays}", None
    if not error.keeps_copy or obj.size > MAX_FILE_BYTES:
        return False, f"files over {display.size(MAX_FILE_BYTES)} are not copied; {stays}", None
    if target.endswith(names.REASON_SUFFIX):  # a copy there could take another file's reason's key over
        return False, (f"a file named *{names.REASON_SUFFIX}, as the reasons kept under {names.REJECTED_PREFIX} are, "
                       f"is not copied there; {stays}"), None
    source: dict[str, str] = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version_id:
        source["VersionId"] = obj.version_id
    condition = {"CopySourceIfMatch": names.if_match(obj.etag)} if obj.etag else {}
    try:
        copied = clients.s3.copy_object(Bucket=settings.bucket, Key=target, CopySource=source, **condition)
    except ClientError as exc:
        if aws_errors.object_unreadable(exc):  # a file refused before it was read (its type): S3 will not give it
            return False, f"S3 refuses to read it ({aws_errors.text(exc)}), so it cannot be copied; {stays}", None
        if aws_errors.code(exc) in ("AccessDenied", "403"):  # a KMS key the function may not use, say: the copy is
            # a convenience, and a rejection must not wait on it (a denial that lasts would end the run FAILED at
            # its deadline instead of REJECTED now)
            return False, f"S3 denied the copy ({aws_errors.text(exc)}); {stays}", None
        if aws_errors.object_gone(exc) is None:
            raise  # throttling, outages: the event is delivered again
        logger.warning("the rejected object went away before it was copied", extra={"key": obj.key})
        return False, gone, None
    return True, None, copied.get("VersionId")


def _duplicate(
    obj: DroppedObject,
    run_id: str,
    dataset: SplitDataset,
    original: dict[str, Any],
    settings: Settings,
    clients: AwsClients,
    claim: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The file's content is that of an earlier run in progress or succeeded: record the run DUPLICATE of it and
    tell people. Nothing is split, uploaded or started."""
    runs = repository(settings, clients)
    fields = {"duplicate_of": original["run_id"], "data": {"summary": dataset.summary()}, **_retry_of(dataset)}
    view = _message_view(obj, run_id, claim, fields)
    notice = messages.duplicate(view, original, settings.runs_table)
    if runs.transition(run_id, RunStatus.CLAIMED, RunStatus.DUPLICATE, notice=notice, **fields) is None:
        return _moved_on(runs, settings, clients, run_id)
    send_pending(runs, clients.sns, settings.topic_arn, run_id)
    logger.info("same content as an earlier run", extra={"run_id": run_id, "duplicate_of": original["run_id"]})
    return {"run_id": run_id, "status": RunStatus.DUPLICATE.value, "duplicate_of": original["run_id"]}


def _retry_of(read: SplitDataset | DatasetError) -> dict[str, str]:
    """The run's ``retry_of``, when its object version was made by `reviewtune runs retry` (retries.py): from the
    dataset read, or from the error that rejected it once read."""
    return {"retry_of": read.retry_of} if read.retry_of else {}


def _source(obj: DroppedObject) -> dict[str, Any]:
    return {
        "bucket": obj.bucket,
        "key": obj.key,
        "version_id": obj.version_id,
        "etag": obj.etag,
        "size": obj.size,
        **({"sequencer": obj.sequencer} if obj.sequencer else {}),
        **({"upload": obj.upload} if obj.upload else {}),
    }


def dropped_object(run: dict[str, Any]) -> DroppedObject:
    """The dropped object a run was claimed for (the reconciler starts a stale claim over from it)."""
    source = run["source"]
    return DroppedObject(
        source["bucket"], source["key"], source.get("version_id"), source.get("etag"), source.get("size"),
        source.get("sequencer"), source.get("upload"),
    )


def _uploaded_again(obj: DroppedObject, run: dict[str, Any]) -> bool:
    """Whether ``obj``'s event is of another upload of the same bytes at the same key than the one ``run`` (the run
    of that key and ETag) was claimed for, in a bucket without versioning: their events' sequencers differ, or, for a
    run claimed with no sequencer, the event was sent after the claim."""
    if obj.version_id is not None or obj.upload is not None or not obj.sequencer:
        return False
    earlier = (run.get("source") or {}).get("sequencer")
    if earlier:
        return earlier != obj.sequencer
    # claimed with no sequencer (the sweep of incoming/, or before runs kept one): this upload's when its event is
    # older than the claim (the event came late), another's when it was sent after (for the sweep's, after the listing
    # that found the object complete: a multipart upload's LastModified is when it began)
    try:
        claimed = max(parse_iso(moment) for moment in (run["created_at"], run.get("listed_at")) if moment)
        return obj.uploaded_at is not None and parse_iso(obj.uploaded_at) > claimed
    except (KeyError, TypeError, ValueError):
        return False


def _this_upload(obj: DroppedObject, find: Callable[[DroppedObject], dict[str, Any] | None]) -> dict[str, Any] | None:
    """``find`` (the run of an object's identity, or None) for the object's own upload, by ``claim_run``'s rule: the
    run of its version (its key and ETag without versioning), or, when that run is another upload's
    (``_uploaded_again``), the run of this upload of the same bytes."""
    run = find(obj)
    return find(obj.own_upload) if run is not None and _uploaded_again(obj, run) else run


def upload_run(obj: DroppedObject, runs: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Of ``runs`` (the object's dataset's), the one ``obj``'s event claims or claimed."""
    by_identity = {dropped_object(run).identity: run for run in runs}
    return _this_upload(obj, lambda dropped: by_identity.get(dropped.identity))


def earlier_prefix_run(runs: RunsRepository, obj: DroppedObject, prefix: str,
                       known: set[str] | None = None) -> dict[str, Any] | None:
    """``prefixes.run_under_another_prefix`` for the object's own upload (under each prefix, by ``_this_upload``)."""
    def run_of(other: str) -> dict[str, Any] | None:
        return _this_upload(obj, lambda dropped: runs.get(names.tuning_job_name(other, dropped.identity)))

    return prefixes.run_under_another_prefix(runs, prefix, run_of, known)


def _moved_on(runs: RunsRepository, settings: Settings, clients: AwsClients, run_id: str) -> dict[str, Any]:
    """Someone else moved the run (a concurrent delivery, the reconciler): report what it is now."""
    item = runs.get(run_id) or {"run_id": run_id, "status": "UNKNOWN"}
    if states.is_final(item["status"]):
        return already_final(runs, settings, clients, item)
    send_pending(runs, clients.sns, settings.topic_arn, run_id)
    logger.info("run moved on meanwhile", extra={"run_id": run_id, "status": item["status"]})
    return {"run_id": run_id, "status": item["status"], "duplicate": True}


def other_bucket(bucket: str, key: str, settings: Settings) -> dict[str, Any] | None:
    """The IGNORED outcome of an object of another bucket than the stack's, before anything of it is looked up: only
    the rule keeps other buckets' events away (a manual invoke or a redrive could bring one). None: the stack's."""
    if bucket == settings.bucket:
        return None
    logger.warning("ignored an object of another bucket", extra={"bucket": bucket, "key": key})
    return {"status": "IGNORED", "key": key, "bucket": bucket}


def run_id_of(obj: DroppedObject, settings: Settings) -> str:
    """The run of one dropped object version (its tuning job's name)."""
    return run_id_under(settings.job_name_prefix, obj)


def run_id_under(prefix: str, obj: DroppedObject) -> str:
    """``run_id_of`` under a JobNamePrefix given."""
    return names.tuning_job_name(prefix, obj.identity)


def run_id_of_upload(prefix: str, bucket: str, key: str, version_id: str | None, etag: str | None) -> str:
    """The run start_tuning gives an object version just uploaded, from PutObject's answer (its VersionId and quoted
    ETag): what `drop` and `make run` name before the run exists."""
    obj = DroppedObject(bucket, key, names.object_version(version_id), (etag or "").strip('"'), None)
    return run_id_under(prefix, obj)


def run_exists(settings: Settings, clients: AwsClients) -> Callable[[DroppedObject], bool]:
    """Whether a dropped object version has its run already (a consistent read of the runs table), under this
    JobNamePrefix or one recorded before it (a replay after the prefix changed and the version went away)."""
    runs = repository(settings, clients)
    return lambda obj: (runs.get(run_id_of(obj, settings)) is not None
                        or earlier_prefix_run(runs, obj, settings.job_name_prefix) is not None)


def claim_run(obj: DroppedObject, runs: RunsRepository, settings: Settings, **fields: Any) -> tuple[bool, dict[str, Any]]:
    """Write the run of a dropped object version in its initial state (with ``fields``), unless it exists: (created,
    the run). The same bytes uploaded again at the same key of a bucket without versioning (``_uploaded_again``) are
    a run of their own."""
    claimed, run = runs.claim(
        {"run_id": run_id_of(obj, settings), "dataset": names.dataset_name(obj.key), "source": _source(obj), **fields}
    )
    if not claimed and _uploaded_again(obj, run):
        return claim_run(obj.own_upload, runs, settings, **fields)
    return claimed, run


def store_splits(s3: Any, bucket: str, run_id: str, dataset: SplitDataset) -> tuple[dict[str, str], str]:
    """Write the run's splits and its train reviews' hashes: each split's SHA-256, the hashes' key."""
    digests = write_splits(s3, bucket, run_id, dataset)
    return digests, write_train_hashes(s3, bucket, run_id, (review.digest for review in dataset.splits["train"]))


def start_tuning(
    obj: DroppedObject, settings: Settings, clients: AwsClients, code_dir: Path | None = None
) -> dict[str, Any]:
    """Claim the run of one dropped file version, validate, split and upload it, then start its tuning job or
    queue it (spend guard). A redelivered or replayed event finds the claim and starts nothing."""
    if not names.is_accepted_key(obj.key, obj.size):
        logger.info("ignored object outside incoming/ or of another type", extra={"key": obj.key})
        return {"status": "IGNORED", "key": obj.key}
    if (ignored := other_bucket(obj.bucket, obj.key, settings)) is not None:
        return ignored
    runs = repository(settings, clients)
    earlier = earlier_prefix_run(runs, obj, settings.job_name_prefix)
    if earlier is not None:  # an event delivered again after JobNamePrefix changed: the version has its run
        logger.info("duplicate event: run exists under an earlier JobNamePrefix",
                    extra={"run_id": earlier["run_id"], "status": earlier["status"]})
        return {"run_id": earlier["run_id"], "status": earlier["status"], "duplicate": True}
    claimed, run = claim_run(obj, runs, settings)
    run_id = run["run_id"]
    if not claimed and run["status"] != RunStatus.CLAIMED:
        logger.info("duplicate event: run exists", extra={"run_id": run_id, "status": run["status"]})
        return _moved_on(runs, settings, clients, run_id)
    if stop_requests.requested(run):
        return stop_unstarted(run, settings, clients)
    if not claimed and run.get("data"):  # an earlier attempt prepared everything
        if not aws_errors.is_due(run.get("tuning_start")):  # a throttled start: its next try is the reconciler's
            logger.info("duplicate event: the run's next start is not due", extra={"run_id": run_id})
            return {"run_id": run_id, "status": run["status"], "retry_at": run["tuning_start"]["next_attempt_at"]}
        return launch_or_queue(run, settings, clients)
    # a claim without its data, taken over (Lambda's retry of a start that died, as late as 18 minutes after the
    # claim; an event after a restart): touched first, so that the reconciler does not take it for dead
    # (STALE_CLAIM_SECONDS) and restart it while this attempt reads the file
    if not claimed and runs.update_if(run_id, RunStatus.CLAIMED) is None:
        return _moved_on(runs, settings, clients, run_id)

    try:  # type and size first (nothing read), then one streaming pass; any DatasetError rejects the file
        dataset = read_dropped_file(
            clients.s3,
            obj.bucket,
            obj.key,
            obj.version_id,
            obj.size,
            obj.etag,
            **settings.split_options(),
        )
    except DatasetError as exc:  # the version gone (deleted, replaced) too; throttling and outages raise
        return _reject(obj, run_id, exc, settings, clients, run)
    if settings.skip_duplicate_content and dataset.content_sha256:  # before anything is written for the run
        original = duplicates.earlier_run(runs, run_id, run["dataset"], dataset.content_sha256)
        if original is not None:
            return _duplicate(obj, run_id, dataset, original, settings, clients, run)
    digests, hashes_key = store_splits(clients.s3, settings.bucket, run_id, dataset)
    code = ensure_uploaded(clients.s3, settings.bucket, code_dir)
    # the claim's time counts again from its data (claims.renewed_deadline): a late event taking over a claim past
    # its deadline, or a restart just before it, leaves a throttled start its next tries
    renewed = claims.renewed_deadline(run, runs, datetime.now(UTC))
    prepared = runs.update_if(
        run_id,
        RunStatus.CLAIMED,
        tuning_job_name=run_id,
        **({"deadline_at": renewed} if renewed else {}),
        config=_config_summary(settings),
        data={
            "summary": dataset.summary(),
            "sha256": digests,
            **{
                split: names.s3_uri(settings.bucket, names.split_prefix(run_id, split))
                for split in dataset.splits
            },
            "train_hashes": names.s3_uri(settings.bucket, hashes_key),
        },
        code={"digest": code.digest, "archive_uri": code.archive_uri, "source_uri": code.source_uri},
        **_retry_of(dataset),
    )
    if prepared is None:
        return _moved_on(runs, settings, clients, run_id)
    return launch_or_queue(prepared, settings, clients)


def launch_or_queue(run: dict[str, Any], settings: Settings, clients: AwsClients) -> dict[str, Any]:
    """Start the tuning job of a prepared run when a slot is free and no run is queued before it, else queue it (and
    say so), then start the oldest queued runs in any slot free by then: a slot freed by a run that ended between
    this run's look at the slots and its queueing (and found no run queued) is not left empty."""
    runs = repository(settings, clients)
    run_id = run["run_id"]
    if stop_requests.requested(run):
        return stop_unstarted(run, settings, clients)
    holders = slots.holders(clients.runs_table)
    # a run that holds a slot already (its start was throttled, or died after taking it) goes on with it
    waits_behind = run_id not in holders and _first_waiting_for_a_slot(runs, run_id, holders) is not None
    if not waits_behind and slots.acquire(clients.runs_table, run_id, settings.max_concurrent_runs):
        return launch(run, settings, clients)
    if run["status"] == RunStatus.QUEUED:
        return {"run_id": run_id, "status": RunStatus.QUEUED.value}
    # the run found waiting is one, whatever the index counts yet
    ahead = max(1, _count_waiting_for_a_slot(runs, run_id, holders)) if waits_behind else 0
    notice = messages.queued(run, len(holders), settings.max_concurrent_runs, settings.runs_table, ahead)
    if runs.transition(run_id, RunStatus.CLAIMED, RunStatus.QUEUED, notice=notice, unless_stop_requested=True) is None:
        current = runs.get(run_id)
        if current is not None and current["status"] == RunStatus.CLAIMED and stop_requests.requested(current):
            return stop_unstarted(current, settings, clients)  # stopped as it was queued: told "stopped" only
        return _moved_on(runs, settings, clients, run_id)
    logger.info("run queued", extra={"run_id": run_id, "limit": settings.max_concurrent_runs})
    try:
        send_pending(runs, clients.sns, settings.topic_arn, run_id)
    finally:  # a refused notice is sent again later; the slots are filled now
        current = _fill_free_slots(runs, settings, clients, run_id)
    return {"run_id": run_id, "status": current["status"], "rows": run["data"]["summary"]["rows"]}


def _first_waiting_for_a_slot(runs: RunsRepository, run_id: str, holders: set[str]) -> dict[str, Any] | None:
    """A queued run (other than ``run_id``) that waits for a slot: not holding one, not asked to stop, due for its
    try; None when none of the newest 100 the status index lists does. Each listed run is read again until one is
    found: the index lags, and a run started meanwhile must keep no file from a free slot."""
    for listed in runs.by_status(RunStatus.QUEUED, limit=100):
        if listed["run_id"] == run_id or listed["run_id"] in holders:
            continue
        item = runs.get(listed["run_id"])
        if _due_in_queue(item):
            return item
    return None


def _count_waiting_for_a_slot(runs: RunsRepository, run_id: str, holders: set[str]) -> int:
    """How many queued runs (other than ``run_id``) wait for a slot, as the status index has them (every page of it):
    ``_due_in_queue`` as a filter, the slot holders left out."""
    due = Attr("tuning_start.next_attempt_at").not_exists() | Attr("tuning_start.next_attempt_at").lte(now_iso())
    return runs.count_in_status(RunStatus.QUEUED, excluding={run_id, *holders},
                                condition=Attr("stop_request").not_exists() & due)


def _due_in_queue(run: dict[str, Any] | None, now: datetime | None = None) -> bool:
    """Whether a run (as read) is queued, not asked to stop (the reconciler ends it STOPPED; it takes no slot) and
    due for its next try."""
    return (run is not None and run["status"] == RunStatus.QUEUED and not stop_requests.requested(run)
            and aws_errors.is_due(run.get("tuning_start"), now))


def _fill_free_slots(runs: RunsRepository, settings: Settings, clients: AwsClients, run_id: str) -> dict[str, Any]:
    """After ``run_id`` was queued: start the oldest queued runs in any slot free by then, then ``run_id`` itself when
    a slot is still free (the status index may not list it yet). Errors are logged: the reconciler tries again.
    Returns the run as it is now."""
    try:
        refused: list[str] = []
        start_queued_runs(settings, clients, raise_transient=False, refused=refused)
        current = runs.get(run_id)
        if not refused and _due_in_queue(current) and slots.acquire(clients.runs_table, run_id,
                                                                     settings.max_concurrent_runs):
            launch(current, settings, clients)
    except Exception:  # noqa: BLE001 - the run is queued: every reconciler pass starts queued runs in free slots
        logger.exception("starting queued runs after queueing one failed", extra={"run_id": run_id})
    return runs.get(run_id) or {"run_id": run_id, "status": RunStatus.QUEUED.value}


def _try_again_later(runs: RunsRepository, settings: Settings, clients: AwsClients, run: dict[str, Any],
                     exc: BaseException, making: dict[str, str] | None) -> dict[str, Any]:
    """A try at the tuning job that SageMaker throttled or did not answer: counted in ``tuning_start`` with the time of
    the next (the reconciler makes it); after START_MAX_ATTEMPTS the run ends FAILED with the last error."""
    counted = _count_try(runs, settings, clients, run, exc, making)
    return _moved_on(runs, settings, clients, run["run_id"]) if counted is None else counted


def _count_try(runs: RunsRepository, settings: Settings, clients: AwsClients, run: dict[str, Any],
               exc: BaseException, making: dict[str, str] | None) -> dict[str, Any] | None:
    """Count one failed try at the tuning job in ``tuning_start``, with the time of the next; after START_MAX_ATTEMPTS
    end the run FAILED with the last error. None when the run had moved on from the state it was read in."""
    run_id, source_status = run["run_id"], RunStatus(run["status"])
    attempt = aws_errors.next_attempt(run.get("tuning_start"), exc)
    if attempt["attempts"] >= settings.start_max_attempts:
        reason = f"SageMaker did not start the tuning job after {aws_errors.attempts_made(attempt)}: {attempt['last_error']}"
        return _give_up(runs, settings, clients, run_id, reason, making)
    if runs.update_if(run_id, source_status, tuning_start=attempt) is None:
        return None
    logger.warning("tuning job not started yet; will retry", extra={"run_id": run_id, **attempt})
    return {"run_id": run_id, "status": source_status.value, "retry_at": attempt["next_attempt_at"]}


def launch_counted(run: dict[str, Any], settings: Settings, clients: AwsClients) -> dict[str, Any]:
    """``launch``, for a queued run given a slot (``start_queued_runs``); a start that raises what launch records
    nothing of (a denied or throttled describe of the job an earlier try made, DynamoDB failing in the warm start's
    plan) is counted as a try like a throttled one (``_count_try``; nothing when the run moved on meanwhile), then
    raised: after START_MAX_ATTEMPTS the run ends FAILED with the error and gives its slot to the runs queued behind
    it, instead of holding it until the queue's deadline (days). A count that fails too is logged; the next pass tries
    the start again. A claim's start (``launch_or_queue``) is not counted: its event is tried again at once by Lambda,
    and its claim's deadline is hours."""
    try:
        return launch(run, settings, clients)
    except Exception as exc:
        try:
            _count_try(repository(settings, clients), settings, clients, run, exc, None)
        except Exception:  # noqa: BLE001 - the start's own error is the one raised
            logger.exception("the failed start could not be counted", extra={"run_id": run["run_id"]})
        raise


def launch(run: dict[str, Any], settings: Settings, clients: AwsClients) -> dict[str, Any]:
    """Create the tuning job of a prepared run that holds a slot, and move the run to TUNING.

    Throttling and quota errors leave the run where it is with its attempt count and the time of the next try
    (the reconciler retries; after START_MAX_ATTEMPTS, or past the state's deadline, the run ends FAILED);
    every other refusal (validation, access) ends the run FAILED at once, with AWS's text."""
    runs = repository(settings, clients)
    run_id = run["run_id"]
    source_status = RunStatus(run["status"])
    try:
        code = CodeBundle(**run["code"])
        base = tuning_job_request(settings, run_id, run.get("dataset", run_id), code)
    except ConfigError as exc:  # settings SageMaker refuses for every job (ranges, their count): no try will succeed
        return _give_up(runs, settings, clients, run_id, bounded(f"the tuning job's request is not valid: {exc}"),
                        None)
    except _RECORD_ERRORS as exc:  # no request can be made of this run (an item of another shape): no try will,
        # and a run that holds a slot must not keep it from the runs queued behind it until its deadline
        logger.exception("the tuning job of a run could not be prepared", extra={"run_id": run_id})
        return _give_up(runs, settings, clients, run_id,
                        bounded(f"its tuning job could not be prepared: {type(exc).__name__}: {exc}"), None)
    # the settings the request is made with: the stack may have changed since the run was prepared (a run queued or
    # throttled across a deployment), and its record and its warm-start parents must be those of the job it gets
    sent = {**(run.get("config") or {}), **_config_summary(settings)}
    try:
        plan = plan_warm_start(
            runs, {**run, "config": sent}, enabled=settings.warm_start, strategy=settings.strategy,
            bucket=settings.bucket, request=base,
            readable=lambda uri: s3_presence.holds_objects(clients.s3, uri),
        )
    except _RECORD_ERRORS as exc:  # a parent's record of another shape: it costs the run its warm start only
        logger.exception("the warm start of a run could not be planned; starting cold", extra={"run_id": run_id})
        plan = unplanned_warm_start(settings.bucket, run_id, bounded(f"{type(exc).__name__}: {exc}"))
    making = job_stops.record_making(runs, run_id, "tuning", source_status)
    if making is None:
        return _moved_on(runs, settings, clients, run_id)
    try:
        try:
            arn = _create(clients, apply_warm_start(base, plan))
        except (ClientError, ParamValidationError) as exc:
            if not plan.config or (isinstance(exc, ClientError) and (
                    aws_errors.is_retryable(exc) or aws_errors.code(exc) == "ResourceInUse")):
                raise
            # SageMaker judges parents by more than reviewtune records (e.g. hyperparameter types, changes), and a
            # parent may be gone (ResourceNotFound): a refused warm start must not cost the run, nor every later run
            # of the dataset that would pick the same parents, so tune from scratch and say why.
            refusal = aws_errors.text(exc) if isinstance(exc, ClientError) else str(exc)
            logger.warning("warm start refused; starting cold", extra={"run_id": run_id, "error": refusal})
            plan = plan.cold(bounded(refusal))
            arn = _create(clients, apply_warm_start(base, plan))
    except ParamValidationError as exc:  # refused before it was sent: the same request always is
        return _give_up(runs, settings, clients, run_id, bounded(f"the tuning job's request is not valid: {exc}"),
                        making)
    except ClientError as exc:
        if aws_errors.code(exc) == "ResourceInUse":  # an earlier attempt created it, with the warm start it had then
            made = clients.sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=run_id)
            arn, plan = made["HyperParameterTuningJobArn"], plan.as_made(made)
            # and the hyperparameters, limits, instances, model and image it had then (the stack may have changed
            # since): the run's record, cost and deadline are those of the job it has
            base, sent = _as_made(base, made), _config_as_made(sent, made)
        elif aws_errors.is_retryable(exc):
            return _try_again_later(runs, settings, clients, run, exc, making)
        else:
            return _give_up(runs, settings, clients, run_id, f"SageMaker refused the tuning job: {aws_errors.text(exc)}",
                            making)
    except BotoCoreError as exc:  # no answer (a timeout, a lost connection): the job may have been made, or not;
        # counted like a throttled try, so that its error names the run's end if no try gets through
        return _try_again_later(runs, settings, clients, run, exc, making)
    hyperparameters = Hyperparameters.of_request(base)  # less what SageMaker adds to a described job
    config = {
        **sent,
        "hyperparameter_names": sorted(hyperparameters.names),
        "hyperparameters": hyperparameters.record(),  # what a later run's warm start compares
        "objective_metric": OBJECTIVE_METRIC,
        "warm_start": plan.summary(),
    }
    # the job's own budget: the stack's may be another (a start retried across a deployment found its job made)
    deadline = tuning_deadline_seconds(settings.run_deadlines[RunStatus.TUNING], recorded_budget_seconds(config) or 0)
    moved = runs.transition(
        run_id, (RunStatus.CLAIMED, RunStatus.QUEUED), RunStatus.TUNING, tuning_job_arn=arn, config=config,
        unless_stop_requested=True, deadline_seconds=deadline,
    )
    if moved is None:
        current = runs.get(run_id)
        if current is not None and states.is_final(current["status"]):
            # ended meanwhile (its deadline): the job just made has no run to follow it
            job_stops.stop_made_for_ended_run(runs, clients, current, "tuning", run_id, making)
        elif current is not None and stop_requests.requested(current):
            # asked to stop meanwhile: the job just made too, by this step, which then needs no record of making it
            job_stops.made_here(runs, run_id, "tuning", making)
            return stop_unstarted(current, settings, clients)
        return _moved_on(runs, settings, clients, run_id)
    _drop_queued_notice(runs, moved)
    rows = run.get("data", {}).get("summary", {}).get("rows")
    logger.info("tuning job started", extra={"run_id": run_id, "rows": rows, "warm_start": plan.summary()})
    return {
        "run_id": run_id,
        "status": RunStatus.TUNING.value,
        "tuning_job_arn": arn,
        "rows": rows,
        "warm_start_parents": list(plan.parents),
    }


def _drop_queued_notice(runs: RunsRepository, started: dict[str, Any]) -> None:
    """A run started from the queue before SNS took its "queued" notice: that notice, out of date now, is never sent.
    A refused write, or a start that dies between its TUNING write and this one, leaves it to the next sender, which
    drops it instead of sending it (outbox.send_pending, runs.out_of_date)."""
    if not any(out_of_date(started, entry) for entry in unsent(started)):
        return
    try:
        runs.supersede_notice(started["run_id"], RunStatus.QUEUED.value)
    except ClientError as exc:
        logger.warning("the out-of-date queued notice could not be dropped; it will be sent",
                       extra={"run_id": started["run_id"], "error": aws_errors.text(exc)})


def _give_up(runs: RunsRepository, settings: Settings, clients: AwsClients, run_id: str, reason: str,
             making: dict[str, str] | None) -> dict[str, Any]:
    """End a run whose tuning job SageMaker would not start FAILED, unless another invocation started the job meanwhile
    (the run moved on: its job is followed); then stop a job an earlier attempt whose answer was lost may have made."""
    try:
        ended = end_run(runs, settings, clients, run_id, stage="tuning", status=RunStatus.FAILED, reason=reason,
                        only_from=(RunStatus.CLAIMED, RunStatus.QUEUED))
    finally:  # also when the end's message could not go out yet: the job is this step's to stop
        job_stops.stop_if_ended(runs, clients, run_id, "tuning", run_id, making)
    send_pending(runs, clients.sns, settings.topic_arn, run_id)  # its record of making the job settled: out of the index
    return ended


def stop_unstarted(run: dict[str, Any], settings: Settings, clients: AwsClients) -> dict[str, Any]:
    """End a CLAIMED or QUEUED run that a person asked to stop (stop_requests.py): STOPPED (FAILED when the request is
    its deadline's), its slot freed and its message sent. A tuning job made for it (by a start whose answer was lost,
    or as the request landed) is stopped first, and the run ends only once SageMaker took that stop or said there is
    no such job running: a throttled stop raises, and the retry or the reconciler's next pass stops it again."""
    stop_tuning_job(clients, run["run_id"], before_end=True)
    final, reason = stop_requests.outcome(run)
    return end_run(repository(settings, clients), settings, clients, run["run_id"], stage="tuning",
                   status=final, reason=reason, only_from=(RunStatus.CLAIMED, RunStatus.QUEUED))


def stop_tuning_job(clients: AwsClients, run_id: str, *, before_end: bool = False) -> None:
    """Stop a run's tuning job (if there is one and it runs) so that it stops costing (``job_stops.stop_job``)."""
    job_stops.stop_job(clients, run_id, "tuning", run_id, before_end=before_end)


def _as_made(request: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """``request`` with the static hyperparameters, ranges and image of the tuning job an earlier attempt made
    (DescribeHyperParameterTuningJob's answer, each where it says it), which a later run's warm start compares."""
    definition, config = job.get("TrainingJobDefinition") or {}, job.get("HyperParameterTuningJobConfig") or {}
    made_definition, made_config = dict(request["TrainingJobDefinition"]), dict(request["HyperParameterTuningJobConfig"])
    if "StaticHyperParameters" in definition:
        made_definition["StaticHyperParameters"] = definition["StaticHyperParameters"]
    image = (definition.get("AlgorithmSpecification") or {}).get("TrainingImage")
    if image:
        made_definition["AlgorithmSpecification"] = {**made_definition["AlgorithmSpecification"], "TrainingImage": image}
    if "ParameterRanges" in config:
        made_config["ParameterRanges"] = config["ParameterRanges"]
    return {**request, "TrainingJobDefinition": made_definition, "HyperParameterTuningJobConfig": made_config}


def _config_as_made(config: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a run's record of its job's settings, ``_config_summary``) with what the tuning job an earlier
    attempt made says of its own (DescribeHyperParameterTuningJob's answer, each where it says it): strategy, limits,
    completion criteria, instances, spot training, stopping condition, image, model, epochs and sequence length."""
    tuning = job.get("HyperParameterTuningJobConfig") or {}
    definition = job.get("TrainingJobDefinition") or {}
    limits, resources = tuning.get("ResourceLimits") or {}, definition.get("ResourceConfig") or {}
    stopping, static = definition.get("StoppingCondition") or {}, definition.get("StaticHyperParameters") or {}
    described = {
        "strategy": tuning.get("Strategy"),
        "early_stopping": tuning.get("TrainingJobEarlyStoppingType"),
        "max_jobs": limits.get("MaxNumberOfTrainingJobs"),
        "max_parallel_jobs": limits.get("MaxParallelTrainingJobs"),
        "training_instance_type": resources.get("InstanceType"),
        "training_instance_count": resources.get("InstanceCount"),
        "use_spot_training": definition.get("EnableManagedSpotTraining"),
        "max_runtime_seconds": stopping.get("MaxRuntimeInSeconds"),
        "training_image_uri": (definition.get("AlgorithmSpecification") or {}).get("TrainingImage"),
        "model_name": static.get("model_name_or_path"),
        "epochs": _whole_number(static.get("epochs")),
        "max_seq_length": _whole_number(static.get("max_seq_length")),
    }
    made = {**config, **{name: value for name, value in described.items() if value is not None}}
    if stopping:  # without spot training the job has no wait time
        made["max_wait_seconds"] = stopping.get("MaxWaitTimeInSeconds")
    if tuning:  # a job without completion criteria runs its whole budget
        made["completion_criteria"] = tuning.get("TuningJobCompletionCriteria") or {}
    return made


def _whole_number(value: Any) -> int | None:
    """A hyperparameter's value (a string, as SageMaker describes it) as a whole number; None when it is not one."""
    try:
        return int(str(value))
    except ValueError:
        return None


def _create(clients: AwsClients, request: dict[str, Any]) -> str:
    return clients.sagemaker.create_hyper_parameter_tuning_job(**request)["HyperParameterTuningJobArn"]


def start_queued_runs(settings: Settings, clients: AwsClients, now: datetime | None = None, *,
                      raise_transient: bool = True, refused: list[str] | None = None) -> list[dict[str, Any]]:
    """Start the oldest queued runs while slots are free (each due for its next try). Returns what each did; a run
    whose start raised gets ``{"run_id", "error"}`` (logged; the reconciler's next pass tries it again).

    Every queued run is tried, not only those before the first without a slot: a run further back may already hold
    one (its start was throttled, or died after taking it), and taking a slot again is granted to its holder. So is
    every run after one whose start raised: one run that cannot start (an item of another shape, a refusal launch does
    not record) must not hold back the runs queued behind it until its queue deadline. Once a run due and waiting
    was refused a slot, the runs after it are read and tried only if they hold one already: a slot freed meanwhile (another
    run ending) goes to the older run, by the ended run's own start of the queue. ``raise_transient``: once
    every run was tried, raise the first error worth another try (throttling, no answer), so that the invocation
    that ended a run is tried again (the reconciler, which tries every pass, passes False). ``refused``: gets the
    ids of the runs refused a slot."""
    runs = repository(settings, clients)
    started = []
    transient: Exception | None = None
    refused = [] if refused is None else refused
    holding: set[str] | None = None  # the slot holders, read at the first refusal
    for queued in runs.all_in_status(RunStatus.QUEUED):
        run_id = queued["run_id"]
        if holding is not None and run_id not in holding:
            continue  # an older run waits for the next free slot: this one is not read
        try:
            run = runs.get(run_id)
            if not _due_in_queue(run, now):
                continue
            if slots.acquire(clients.runs_table, run_id, settings.max_concurrent_runs):
                started.append(launch_counted(run, settings, clients))
            else:
                refused.append(run_id)
                holding = slots.holders(clients.runs_table)
        except Exception as exc:  # noqa: BLE001 - the next runs are still tried
            logger.exception("starting a queued run failed", extra={"run_id": run_id})
            started.append({"run_id": run_id, "error": f"{type(exc).__name__}: {exc}"})
            if transient is None and aws_errors.transient(exc):
                transient = exc
    if transient is not None and raise_transient:
        raise transient
    return started
