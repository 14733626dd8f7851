"""start_evaluation: after a tuning job ends, record its trials and evaluate the best model on the test split.

When the dataset has a champion, the same processing job also measures the champion's model on the same test
reviews, leaving out those the champion was trained on (``ChampionInput``); record_results decides on those numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from reviewtune.core import aws_errors, costs, job_stops, names, states, stop_requests, trial_records
from reviewtune.core.champion import get_champion
from reviewtune.core.clients import AwsClients
from reviewtune.core.code_bundle import CodeBundle, ensure_uploaded
from reviewtune.core.config import MIN_EVALUATING_DEADLINE_SECONDS, Settings
from reviewtune.core.failures import already_final, end_run, repository
from reviewtune.core.metrics import OBJECTIVE_METRIC as OBJECTIVE_METRIC_NAME
from reviewtune.core.metrics import OBJECTIVE_TYPE
from reviewtune.core.outbox import send_pending
from reviewtune.core.reasons import bounded
from reviewtune.core.registration import REGISTRY_GROUP, group_for, within_retry_window
from reviewtune.core.runs import RunsRepository, RunStatus, parse_iso
from reviewtune.core.trial_facts import (
    DELETED_TRAINING_JOB,
    describe_training_job,
    early_stopped,
    trial_extras,
)
from reviewtune.core.tuning import RUN_ID_TAG

logger = Logger(child=True)

PROCESSING_ROOT = "/opt/ml/processing"
MODEL_DIR = f"{PROCESSING_ROOT}/input/model"
DATA_DIR = f"{PROCESSING_ROOT}/input/data"
CODE_DIR = f"{PROCESSING_ROOT}/input/code"
OUTPUT_DIR = f"{PROCESSING_ROOT}/output/evaluation"
RUN_DIR = f"{PROCESSING_ROOT}/input/run"
CHAMPION_MODEL_DIR = f"{PROCESSING_ROOT}/input/champion/model"
CHAMPION_HASHES_DIR = f"{PROCESSING_ROOT}/input/champion/train_hashes"
REPORT_DIR = f"{OUTPUT_DIR}/report"  # uploaded with the evaluation output: names.report_key
EXIT_MESSAGE_FILE = "/opt/ml/output/message"  # SageMaker reads its first KB as the job's ExitMessage
REPORT_HISTORY_LIMIT = 50
EVALUATION_SCRIPT = "evaluate_model_metrics.py"
# How long after the tuning job ended a denied read of the champion's files is tried again (denial_may_pass).
CHAMPION_READ_RETRY_SECONDS = 3600
EVALUATION_OUTPUT = "evaluation"
EVALUATION_MAX_RUNTIME = 3600  # the job's limit, unless its test split needs longer (evaluation_max_runtime)
# The slowest scoring that limit allows for: a base-size model in fp32 on 2 physical cores (the default ml.m5.xlarge)
# scored 4.1 reviews/s when measured on such cores; half that, so that the limit ends a hung job, never a slow one.
EVALUATION_ROWS_PER_SECOND = 2
EVALUATION_START_SECONDS = 900  # the instance, the image, the models' download, before the first review
SAGEMAKER_MAX_PROCESSING_RUNTIME = 777_600  # ProcessingStoppingCondition.MaxRuntimeInSeconds' most (9 days)


def _epoch(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


def list_trials(sagemaker: Any, tuning_job_name: str) -> list[dict[str, Any]]:
    """Every training job of a tuning job, with what it tried, what it reached and what it cost (a deleted one: what
    the tuning job's listing says of it, marked ``deleted``)."""
    trials = []
    paginator = sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    # pages of 100 (the most SageMaker gives; 10 unasked): up to MaxJobs 500 trials in 5 calls, not 50
    for page in paginator.paginate(HyperParameterTuningJobName=tuning_job_name, PaginationConfig={"PageSize": 100}):
        for summary in page["TrainingJobSummaries"]:
            described = describe_training_job(sagemaker, summary["TrainingJobName"])
            if described is None:
                logger.warning("a trial's training job was deleted; recorded from the tuning job's listing",
                               extra={"training_job_name": summary["TrainingJobName"]})
            detail = described or {}
            objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {})
            trials.append(
                {
                    "name": summary["TrainingJobName"],
                    "status": summary["TrainingJobStatus"],
                    "objective_status": summary.get("ObjectiveStatus"),
                    "objective": objective.get("Value"),
                    "tuned_hyperparameters": summary.get("TunedHyperParameters", {}),
                    "created_at": _epoch(summary.get("CreationTime")),
                    "started_at": _epoch(summary.get("TrainingStartTime")),
                    "ended_at": _epoch(summary.get("TrainingEndTime")),
                    "training_seconds": detail.get("TrainingTimeInSeconds"),
                    "billable_seconds": detail.get("BillableTimeInSeconds"),
                    "failure_reason": summary.get("FailureReason") or detail.get("FailureReason"),
                    **trial_extras(detail),
                    # what stopped a stopped trial: MaxRuntimeExceeded (its time limit) is no early stop of the tuner's
                    **({"secondary_status": detail.get("SecondaryStatus")}
                       if summary["TrainingJobStatus"] == "Stopped" else {}),
                    **({"deleted": True} if described is None else {}),
                }
            )
    return sorted(trials, key=lambda t: t["name"])


def report_input_key(run_id: str) -> str:
    return f"{names.evaluation_prefix(run_id)}input/run.json"


def write_report_input(
    s3: Any, runs: RunsRepository, bucket: str, run: dict[str, Any], tuning: dict[str, Any]
) -> str:
    """Write what the report needs and the processing job cannot ask AWS for (the run, its trials, this
    dataset's earlier runs) to S3; return its URI."""
    trials = [
        {**trial, "early_stopped": early_stopped(trial["status"], tuning["status"], trial.get("secondary_status"))}
        for trial in tuning.get("trials", [])
    ]
    history = [
        {
            "run_id": earlier["run_id"],
            "created_at": earlier.get("created_at"),
            "status": earlier.get("status"),
            "test_accuracy": earlier.get("metrics", {}).get("accuracy", {}).get("value"),
            "ci95": earlier.get("metrics", {}).get("accuracy", {}).get("ci95"),
        }
        for earlier in runs.by_dataset(run.get("dataset", ""), limit=REPORT_HISTORY_LIMIT)
        if earlier["run_id"] != run["run_id"]
    ]
    document = {
        **{k: run.get(k) for k in ("run_id", "dataset", "source", "created_at", "config", "data", "retry_of")},
        "tuning": {**tuning, "trials": trials},
        "history": history,
        # where the job's own output lands: the report lists it beside the data and the model
        "outputs": {"evaluation": names.s3_uri(bucket, names.evaluation_key(run["run_id"])),
                    "report": names.s3_uri(bucket, names.report_key(run["run_id"]))},
    }
    key = report_input_key(run["run_id"])
    s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(document, default=str).encode(), ContentType="application/json"
    )
    return names.s3_uri(bucket, key)
def training_cost(run: dict[str, Any], settings: Settings, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The estimated cost of the trials (costs.py): billable seconds per trial and in total, priced."""
    config = run.get("config") or {}
    return costs.run_cost(
        trials,
        training_instance_type=config.get("training_instance_type") or settings.training_instance_type,
        instance_count=int(config.get("training_instance_count") or settings.training_instance_count),
        spot=bool(config.get("use_spot_training", settings.use_spot_training)),
    ).as_dict()


@dataclass(frozen=True)
class ChampionInput:
    """The dataset's champion, measured by the evaluation job beside the run's best model: its model artifact and
    the hashes of the reviews it was trained on (None for a champion recorded without them). Both locations are
    read from the champion's own run item, where start_tuning and start_evaluation recorded them."""

    run_id: str
    model_uri: str
    train_hashes_uri: str | None


def denial_may_pass(run: dict[str, Any], tuning_ended_at: str | None, now: datetime | None = None) -> bool:
    """Whether S3 denying a read of the champion's files (AccessDenied: IAM during a stack update) is still taken for
    a moment's denial, so that the step fails and is tried again (the event's redelivery, the reconciler) rather than
    measure the challenger without its champion: for CHAMPION_READ_RETRY_SECONDS after the tuning job ended (not at
    all when that is not known), never close to the run's deadline (registration.within_retry_window)."""
    if not tuning_ended_at:
        return False
    try:
        since = parse_iso(str(tuning_ended_at))
    except ValueError:
        return False
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    return within_retry_window(run, since, CHAMPION_READ_RETRY_SECONDS, now or datetime.now(UTC))


def _unreadable(s3: Any, uri: str, patient: bool = False) -> str | None:
    """Why the object at ``uri`` cannot be read by the job (None: it is there). Throttling raises (retry), and so
    does a denial while ``patient`` (denial_may_pass); an object gone, or one S3 will never give (archived, its KMS
    key disabled), is said at once."""
    bucket, key = names.parse_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws_errors.is_retryable(exc):
            raise
        if aws_errors.missing(exc):
            return f"{uri} no longer exists"
        if patient and not aws_errors.object_unreadable(exc):
            raise
        return f"{uri}: {aws_errors.text(exc)}"
    return None


def champion_input(
    run: dict[str, Any], runs: RunsRepository, clients: AwsClients, patient: bool = False
) -> tuple[ChampionInput | None, dict[str, Any] | None, dict[str, Any] | None]:
    """The champion the evaluation job measures too (None: none, or it cannot be measured), the run item's
    ``challenge`` record (which champion, whether it is measured, and why not) and the champion's run item (None
    without a champion). While ``patient``, a denial of its files raises rather than leave the champion unmeasured
    (denial_may_pass)."""
    dataset = run.get("dataset")
    champion = get_champion(clients.runs_table, dataset) if dataset else None
    if champion is None or champion.run_id == run["run_id"]:
        return None, None, None
    challenge: dict[str, Any] = {"champion_run_id": champion.run_id, "evaluated": False}
    champion_run = runs.get(champion.run_id) or {}
    model_uri = ((champion_run.get("tuning") or {}).get("best_training_job") or {}).get("model_uri")
    if not model_uri:
        return None, {**challenge, "reason": f"the run item of {champion.run_id} names no model artifact"}, champion_run
    gone = _unreadable(clients.s3, model_uri, patient)
    if gone:
        return None, {**challenge, "reason": f"its model artifact cannot be read: {gone}"}, champion_run
    hashes_uri = (champion_run.get("data") or {}).get("train_hashes")
    hashes_gone = _unreadable(clients.s3, hashes_uri, patient) if hashes_uri else "the run recorded none"
    challenge.update(evaluated=True, overlap_checked=hashes_gone is None)
    if hashes_gone:
        challenge["reason"] = f"no hashes of its training reviews ({hashes_gone}): no test review is left out"
        hashes_uri = None
    return ChampionInput(champion.run_id, model_uri, hashes_uri), challenge, champion_run


def evaluation_max_runtime(run: dict[str, Any], models: int) -> int:
    """The evaluation job's MaxRuntimeInSeconds: an hour, or longer when the run's test split (each review scored by
    ``models`` models: the challenger, and the champion on the same reviews) needs longer at the slowest scoring
    allowed for; a large file's evaluation must not be ended by its limit after its whole tuning job."""
    rows = int(((run.get("data") or {}).get("summary") or {}).get("rows", {}).get("test") or 0)
    needed = EVALUATION_START_SECONDS + math.ceil(rows * models / EVALUATION_ROWS_PER_SECOND)
    return min(max(EVALUATION_MAX_RUNTIME, needed), SAGEMAKER_MAX_PROCESSING_RUNTIME)


def evaluating_deadline_seconds(settings: Settings, runtime: int) -> int | None:
    """The EVALUATING deadline of a run whose job may run ``runtime`` seconds: the stack's, unless the job's limit is
    over the hour that deadline is made for (config.MIN_EVALUATING_DEADLINE_SECONDS); None: the stack's."""
    if runtime <= EVALUATION_MAX_RUNTIME:
        return None
    return max(settings.run_deadlines[RunStatus.EVALUATING],
               runtime + MIN_EVALUATING_DEADLINE_SECONDS - EVALUATION_MAX_RUNTIME)


def processing_job_request(
    settings: Settings, run: dict[str, Any], model_uri: str, code: CodeBundle, champion: ChampionInput | None = None
) -> dict[str, Any]:
    """The CreateProcessingJob request that evaluates a model on the run's test split (and the champion's model on
    the same reviews, when given). Each model is scored at the max_seq_length it was trained with (its
    label_map.json): a static hyperparameter or a tuned range may have set another than MaxSeqLength.

    ``code`` is the training code deployed with this function (``code_bundle.ensure_uploaded``), not the bundle the
    run trained with: its evaluation script is the one that takes the arguments built here and writes what
    record_results reads, also for a run that a deployment met between its start and its evaluation (the script
    reads models saved by earlier training code, as it reads a champion's)."""
    run_id = run["run_id"]

    def s3_input(name: str, uri: str, local_path: str) -> dict[str, Any]:
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": local_path,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }

    inputs = [
        s3_input("model", model_uri, MODEL_DIR),
        s3_input("data", names.s3_uri(settings.bucket, names.split_prefix(run_id, "test")), DATA_DIR),
        s3_input("code", code.source_uri, CODE_DIR),
        s3_input("run", names.s3_uri(settings.bucket, report_input_key(run_id)), RUN_DIR),
    ]
    champion_arguments: list[str] = []
    if champion is not None:
        inputs.append(s3_input("champion-model", champion.model_uri, CHAMPION_MODEL_DIR))
        champion_arguments = ["--champion-model", CHAMPION_MODEL_DIR, "--champion-run-id", champion.run_id]
        if champion.train_hashes_uri:
            inputs.append(s3_input("champion-train-hashes", champion.train_hashes_uri, CHAMPION_HASHES_DIR))
            champion_arguments += ["--champion-train-hashes", CHAMPION_HASHES_DIR]
    return {
        "ProcessingJobName": names.evaluation_job_name(run_id),
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": EVALUATION_OUTPUT,
                    "S3Output": {
                        "S3Uri": names.s3_uri(settings.bucket, names.evaluation_prefix(run_id).rstrip("/")),
                        "LocalPath": OUTPUT_DIR,
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": settings.processing_instance_type,
                "VolumeSizeInGB": 30,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": evaluation_max_runtime(run, 2 if champion else 1)},
        "AppSpecification": {
            "ImageUri": settings.processing_image_uri,
            "ContainerEntrypoint": ["python3", f"{CODE_DIR}/{EVALUATION_SCRIPT}"],
            "ContainerArguments": [
                "--input-model",
                MODEL_DIR,
                "--input-data",
                DATA_DIR,
                "--output-data",
                OUTPUT_DIR,
                "--input-run",
                RUN_DIR,
                "--output-report",
                REPORT_DIR,
                "--exit-message",
                EXIT_MESSAGE_FILE,
                *champion_arguments,
            ],
        },
        "Environment": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        "RoleArn": settings.sagemaker_role_arn,
        "Tags": [{"Key": RUN_ID_TAG, "Value": run_id}],
    }


def eligible(training_job_status: str | None, objective_status: str | None, objective: Any) -> bool:
    """Whether a trial can be the best, as SageMaker decides: it reported the objective (ObjectiveStatus
    Succeeded) and either Completed or was Stopped by early stopping."""
    if objective is None:
        return False
    if training_job_status == "Completed":
        return objective_status in (None, "Succeeded")
    return training_job_status == "Stopped" and objective_status == "Succeeded"


def best_trial_name(description: dict[str, Any], trials: list[dict[str, Any]]) -> str | None:
    """The best training job: SageMaker's BestTrainingJob when eligible, else the best eligible trial."""
    best = description.get("BestTrainingJob") or {}
    if best and eligible(
        best.get("TrainingJobStatus"),
        best.get("ObjectiveStatus", "Succeeded" if best.get("TrainingJobStatus") == "Completed" else None),
        best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"),
    ):
        return best["TrainingJobName"]
    objective_type = (
        description.get("HyperParameterTuningJobConfig", {})
        .get("HyperParameterTuningJobObjective", {})
        .get("Type", OBJECTIVE_TYPE)
    )
    candidates = [t for t in trials if eligible(t["status"], t.get("objective_status"), t.get("objective"))]
    if not candidates:
        return None
    pick = min if objective_type == "Minimize" else max
    return pick(candidates, key=lambda t: t["objective"])["name"]


def choose_best(
    description: dict[str, Any], trials: list[dict[str, Any]], sagemaker: Any, s3: Any, patient: bool = False,
    passed_over: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """The best trial that left a model (a trial stopped before it saved one has none, even with an objective, and a
    deleted one cannot say where it is: the next best is taken); None when no eligible trial has one. SageMaker names
    the artifact's location for every training job, saved or not: the object itself is looked for
    (``_model_missing``; ``patient``: a denial raises). ``passed_over``: gets each trial passed over, with why."""
    left_out: dict[str, str] = {} if passed_over is None else passed_over
    while True:
        name = best_trial_name(
            description if not left_out else {**description, "BestTrainingJob": None},
            [t for t in trials if t["name"] not in left_out],
        )
        if name is None:
            return None
        best = _best(name, description, trials, sagemaker)
        if isinstance(best, str):
            missing: str | None = best
        elif best is None:
            missing = "its description names no model artifact"
        else:
            missing = _model_missing(s3, best, patient)
        if missing is None and isinstance(best, dict):
            return best
        logger.warning("the best trial left no model; taking the next",
                       extra={"training_job_name": name, "reason": missing})
        left_out[name] = missing


def _model_missing(s3: Any, best: dict[str, Any], patient: bool) -> str | None:
    """Why the trial's model is not there to evaluate (None: it is, or cannot be told). Only S3 saying the object is
    missing, or that it will never give it, counts; throttling and server errors raise (tried again), and so does a
    denial while ``patient``. A denial after that is no sign of a missing model (the evaluation job reads it with
    SageMaker's role): the trial is taken, as before the object was looked for."""
    bucket, key = names.parse_s3_uri(best["model_uri"])
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws_errors.missing(exc) or aws_errors.object_unreadable(exc):
            return f"{best['model_uri']}: {aws_errors.text(exc)}"
        if aws_errors.is_retryable(exc) or patient:
            raise
        logger.warning("the best trial's model could not be looked for; taken", extra={
            "training_job_name": best["name"], "error": aws_errors.text(exc)})
    return None


def _best(
    name: str, description: dict[str, Any], trials: list[dict[str, Any]], sagemaker: Any
) -> dict[str, Any] | str | None:
    """The trial ``name`` to evaluate, as its description has it; None when it names no model, DELETED_TRAINING_JOB
    when there is no description."""
    trial = next((t for t in trials if t["name"] == name), {})
    reported = description.get("BestTrainingJob") or {}
    if reported.get("TrainingJobName") == name:
        trial = {
            "objective": reported.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"),
            "tuned_hyperparameters": reported.get("TunedHyperParameters", {}),
            **{k: v for k, v in trial.items() if v is not None},
        }
    training = describe_training_job(sagemaker, name)
    if training is None:
        return DELETED_TRAINING_JOB
    model_uri = (training.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not model_uri:
        return None  # an answer without the location SageMaker always gives: no model to evaluate
    final = {m["MetricName"]: m["Value"] for m in training.get("FinalMetricDataList", [])}
    objective = trial.get("objective")
    return {
        "name": name,
        "status": training.get("TrainingJobStatus"),
        "objective_metric": OBJECTIVE_METRIC_NAME,
        "objective": objective,
        "tuned_hyperparameters": trial.get("tuned_hyperparameters") or {},
        "hyperparameters": {
            k: v for k, v in training.get("HyperParameters", {}).items() if not k.startswith("sagemaker_")
        },
        "model_uri": model_uri,
        "final_metrics": final,
    }


def start_evaluation(
    tuning_job_name: str, event_status: str, settings: Settings, clients: AwsClients
) -> dict[str, Any]:
    """After the tuning job of a TUNING run ended: record its trials, then evaluate the best model (EVALUATING)
    or end the run. Any other state means the step was taken already (a duplicate event, the reconciler)."""
    runs = repository(settings, clients)
    run = runs.get(tuning_job_name)
    if run is None:
        logger.warning(
            "no run recorded for this tuning job; ignoring", extra={"tuning_job_name": tuning_job_name}
        )
        return {"status": "IGNORED", "tuning_job_name": tuning_job_name}
    if states.is_final(run["status"]):
        return already_final(runs, settings, clients, run)
    if run["status"] != RunStatus.TUNING:
        logger.info(
            "duplicate event: run moved on", extra={"run_id": tuning_job_name, "status": run["status"]}
        )
        send_pending(runs, clients.sns, settings.topic_arn, tuning_job_name)
        return {"run_id": tuning_job_name, "status": run["status"], "duplicate": True}

    description = clients.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name
    )
    status = description["HyperParameterTuningJobStatus"]
    trials = list_trials(clients.sagemaker, tuning_job_name)
    tuning = {
        "status": status,
        "status_counters": description.get("TrainingJobStatusCounters", {}),
        "objective_counters": description.get("ObjectiveStatusCounters", {}),
        "started_at": _epoch(description.get("CreationTime")),
        "ended_at": _epoch(description.get("HyperParameterTuningEndTime")),
        "trials": trials,
        "total_billable_seconds": sum(t["billable_seconds"] or 0 for t in trials),
        "cost": training_cost(run, settings, trials),
    }
    def stored() -> dict[str, Any]:  # what the item keeps of ``tuning`` (the best trials when all do not fit)
        return trial_records.for_item(tuning, clients.s3, settings.bucket, tuning_job_name)

    def end_tuning(stage: str = "tuning", **outcome: Any) -> dict[str, Any]:
        return end_run(runs, settings, clients, tuning_job_name, stage=stage, tuning=stored(), **outcome)

    making: dict[str, str] | None = None  # this step's record that it is making the evaluation job (job_stops.record_making)

    def give_up(reason: str) -> dict[str, Any]:
        # unless another invocation (the event, the reconciler) started the job meanwhile; then stop a job an earlier
        # attempt whose answer was lost may have made
        try:
            ended = end_tuning(stage="evaluation", status=RunStatus.FAILED, reason=reason, only_from=(RunStatus.TUNING,))
        finally:  # also when the end's message could not go out yet: the job is this step's to stop
            job_stops.stop_if_ended(runs, clients, tuning_job_name, "evaluation",
                                    names.evaluation_job_name(tuning_job_name), making)
        send_pending(runs, clients.sns, settings.topic_arn, tuning_job_name)  # its record of making settled
        return ended

    if status in ("Completed", "Stopped") and stop_requests.requested(run):  # stopped, or past its deadline: nothing
        # evaluated. An earlier attempt may have made the evaluation job as the request landed, then died before
        # stopping it
        stop_evaluation_job(clients, tuning_job_name, names.evaluation_job_name(tuning_job_name), before_end=True)
        final, reason = stop_requests.outcome(run)
        return end_tuning(status=final, reason=reason)
    if status in ("Failed", "Stopped"):
        reason = description.get("FailureReason") or f"the tuning job ended {status}"
        final = RunStatus.FAILED if status == "Failed" else RunStatus.STOPPED
        return end_tuning(status=final, reason=reason)
    if status != "Completed":
        # The event said the job ended but the API does not agree yet: Lambda's retries, then the reconciler, look again.
        raise RuntimeError(f"tuning job {tuning_job_name} is {status} although its event said {event_status}")
    if best_trial_name(description, trials) is None:
        return end_tuning(status=RunStatus.FAILED, reason="no training job of the tuning job succeeded")
    passed_over: dict[str, str] = {}
    best = choose_best(description, trials, clients.sagemaker, clients.s3,
                       patient=denial_may_pass(run, tuning["ended_at"]), passed_over=passed_over)
    if best is None:
        why = "; ".join(f"{name}: {reason}" for name, reason in passed_over.items())
        return end_tuning(status=RunStatus.FAILED, reason=bounded(
            f"no training job that reported its objective left a model to evaluate ({why})"))
    tuning["best_training_job"] = best
    write_report_input(clients.s3, runs, settings.bucket, run, tuning)
    champion, challenge, champion_run = champion_input(run, runs, clients,
                                                       patient=denial_may_pass(run, tuning["ended_at"]))
    code = ensure_uploaded(clients.s3, settings.bucket)
    request = processing_job_request(settings, run, best["model_uri"], code, champion)
    def moved_on(item: dict[str, Any] | None) -> dict[str, Any]:  # ended, or another attempt made the job
        if item and states.is_final(item["status"]):
            return already_final(runs, settings, clients, item)
        return {"run_id": tuning_job_name, "status": item["status"] if item else "UNKNOWN", "duplicate": True}

    making = job_stops.record_making(runs, tuning_job_name, "evaluation", RunStatus.TUNING)
    if making is None:
        return moved_on(runs.get(tuning_job_name))
    runtime = request["StoppingCondition"]["MaxRuntimeInSeconds"]
    try:
        clients.sagemaker.create_processing_job(**request)
    except ClientError as exc:
        if aws_errors.code(exc) == "ResourceInUse":
            # an earlier attempt created it, maybe beside a champion this one could not read: its limit is at most
            # that of two models on the run's test split (which never changes)
            runtime = evaluation_max_runtime(run, 2)
        elif aws_errors.is_retryable(exc):
            attempt = aws_errors.next_attempt(run.get("evaluation_start"), exc)
            if attempt["attempts"] >= settings.start_max_attempts:
                reason = (
                    f"SageMaker did not start the evaluation job after {aws_errors.attempts_made(attempt)}: "
                    f"{attempt['last_error']}"
                )
                return give_up(reason)
            runs.update_if(tuning_job_name, RunStatus.TUNING, evaluation_start=attempt, tuning=stored())
            logger.warning("evaluation job not started yet; will retry", extra={"run_id": tuning_job_name, **attempt})
            return {"run_id": tuning_job_name, "status": RunStatus.TUNING.value, "retry_at": attempt["next_attempt_at"]}
        else:
            return give_up(f"SageMaker refused the evaluation job: {aws_errors.text(exc)}")
    moved = runs.transition(
        tuning_job_name,
        RunStatus.TUNING,
        RunStatus.EVALUATING,
        tuning=stored(),
        evaluation_job_name=request["ProcessingJobName"],
        unless_stop_requested=True,
        deadline_seconds=evaluating_deadline_seconds(settings, runtime),
        **{REGISTRY_GROUP: group_for(run, champion_run, settings)},
        **({"challenge": challenge} if challenge else {}),
    )
    if moved is None:
        item = runs.get(tuning_job_name)
        if item and item["status"] == RunStatus.TUNING and stop_requests.requested(item):
            # a person stopped the run meanwhile, or it passed its deadline: the evaluation job just made evaluates
            # nothing
            stop_evaluation_job(clients, tuning_job_name, request["ProcessingJobName"], before_end=True)
            job_stops.made_here(runs, tuning_job_name, "evaluation", making)  # stopped by this step, which made it
            final, reason = stop_requests.outcome(item)
            return end_tuning(status=final, reason=reason)
        if item and states.is_final(item["status"]) and item["status"] != RunStatus.SUCCEEDED:
            # ended meanwhile (its deadline): the job just made has no run to record it
            job_stops.stop_made_for_ended_run(runs, clients, item, "evaluation", request["ProcessingJobName"], making)
        return moved_on(item)
    logger.info(
        "evaluation started",
        extra={
            "run_id": tuning_job_name,
            "best": best["name"],
            "objective": best["objective"],
            "challenge": challenge,
        },
    )
    return {
        "run_id": tuning_job_name,
        "status": RunStatus.EVALUATING.value,
        "best_training_job": best["name"],
    }


def stop_evaluation_job(clients: AwsClients, run_id: str, job_name: str, *, before_end: bool = False) -> None:
    """Stop a run's evaluation job (if there is one and it runs) so that it stops costing (``job_stops.stop_job``)."""
    job_stops.stop_job(clients, run_id, "evaluation", job_name, before_end=before_end)
