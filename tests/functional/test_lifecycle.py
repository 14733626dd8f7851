"""Warm start, Model Registry, champion, completion criteria and costs, through the handlers (moto + fake SageMaker).

GIVEN a stack on moto and the in-memory SageMaker, WHEN files of a dataset are dropped and their jobs end, THEN
the requests, the run items, the registry and the messages say what happened.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters

from reviewtune.core import names, registry
from reviewtune.core.champion import get_champion, promote_manually
from reviewtune.core.dataset import split_reviews
from reviewtune.core.promotion import promote
from reviewtune.core.registration import (
    JOB_ENDED_AT,
    REGISTRATION_RETRY_SECONDS,
    job_ended_at,
    plan_champion,
    register,
    retrying,
)
from reviewtune.core.registration import test_rows as split_test_rows
from reviewtune.core.runs import RunsRepository
from reviewtune.core.train_hashes import text_hash
from tests.functional.pipeline import Pipeline, good_file, later, measured
from tests.functional.test_record_results import EVALUATION
from tests.support.aws import REGION
from tests.support.files import with_extra_column

SAGEMAKER_MODEL = boto3.client("sagemaker", region_name=REGION).meta.service_model


def valid(operation: str, request: dict) -> dict:
    """The request, checked against SageMaker's API model (what AWS would refuse as malformed)."""
    validate_parameters(request, SAGEMAKER_MODEL.operation_model(operation).input_shape)
    return request


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def start(pipeline: Pipeline, key: str = "incoming/team/a.tsv", body: bytes | None = None) -> str:
    result = pipeline.start_tuning(pipeline.drop_event(key, body))
    assert result["status"] == "TUNING", result
    return result["run_id"]


def tuning_request(pipeline: Pipeline, run_id: str) -> dict:
    return valid("CreateHyperParameterTuningJob", pipeline.sagemaker.tuning[run_id]["request"])


def channels(request: dict) -> dict[str, str]:
    return {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in request["TrainingJobDefinition"]["InputDataConfig"]
    }


def message(pipeline: Pipeline, run_id: str) -> str:
    [received] = pipeline.messages(run_id)
    return received["Message"]


# ------------------------------------------------------------------------------------------------ warm start


def test_first_run_starts_cold_and_records_what_later_runs_need(pipeline):
    run_id = start(pipeline)

    request = tuning_request(pipeline, run_id)
    assert "WarmStartConfig" not in request
    item = pipeline.run(run_id)
    assert item["config"]["warm_start"]["parents"] == [] and item["config"]["warm_start"]["reason"] == "no earlier succeeded run of the dataset"
    assert item["config"]["objective_metric"] == "validation:accuracy"
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert set(item["config"]["hyperparameter_names"]) == set(static) | {"learning_rate", "train_batch_size"}
    assert set(item["data"]["sha256"]) == {"train", "validation", "test"}


def test_the_hashes_of_the_training_reviews_are_kept_with_the_run(pipeline, stack):
    run_id = start(pipeline)

    uri = pipeline.run(run_id)["data"]["train_hashes"]
    assert uri == f"s3://{stack.bucket}/runs/{run_id}/data/train_hashes.txt"
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=stack.bucket, Key=uri.split("/", 3)[3])["Body"]
    stored = body.read().decode("ascii").split()
    train = split_reviews(good_file(), "a.tsv").splits["train"]
    assert stored == sorted({text_hash(review.text) for review in train}) and len(stored) == len(train)
    test = split_reviews(good_file(), "a.tsv").splits["test"]
    assert not {text_hash(review.text) for review in test} & set(stored)


def test_same_data_warm_starts_identically_reading_the_parent_s_data(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)

    # A re-export with one more column: other content (so not DUPLICATE), the same splits byte for byte.
    second = start(pipeline, body=with_extra_column(good_file()))

    request = tuning_request(pipeline, second)
    assert request["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": first}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    assert channels(request) == {
        "train": f"s3://{stack.bucket}/runs/{first}/data/train/",
        "validation": f"s3://{stack.bucket}/runs/{first}/data/validation/",
    }
    item = pipeline.run(second)
    assert item["data"]["sha256"] == pipeline.run(first)["data"]["sha256"]
    assert item["config"]["warm_start"]["parents"] == [first]
    assert item["config"]["warm_start"]["channels"] == channels(request)


def test_same_data_whose_parent_copy_expired_tunes_on_its_own_copy(pipeline, stack):
    """runs/ expires after RunsExpirationDays: the parent's split folders may be gone. Reading them, every training
    job would fail; the run transfers from its parent on its own copy of the same data instead."""
    first = start(pipeline)
    pipeline.succeed(first)
    s3 = boto3.client("s3", region_name=REGION)
    for listed in s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"runs/{first}/data/")["Contents"]:
        s3.delete_object(Bucket=stack.bucket, Key=listed["Key"])  # what the lifecycle rule does

    second = start(pipeline, body=with_extra_column(good_file()))

    request = tuning_request(pipeline, second)
    assert request["WarmStartConfig"]["WarmStartType"] == "TransferLearning"
    assert channels(request)["train"] == f"s3://{stack.bucket}/runs/{second}/data/train/"
    assert "their copy of it is gone" in pipeline.run(second)["config"]["warm_start"]["reason"]


def test_a_run_of_another_model_is_no_parent(pipeline, stack, monkeypatch):
    first = start(pipeline)
    pipeline.succeed(first)
    item = pipeline.run(first)
    RunsRepository(pipeline.clients.runs_table).update(first, config={**item["config"], "model_name": "roberta-base-old"})

    second = start(pipeline, body=good_file(seed=3))

    assert "WarmStartConfig" not in tuning_request(pipeline, second)
    assert pipeline.run(second)["config"]["warm_start"]["reason"] == "no earlier compatible run of the dataset"


def test_other_data_warm_starts_by_transfer_learning_on_its_own_data_and_the_message_names_the_parents(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))

    request = tuning_request(pipeline, second)
    assert request["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": first}],
        "WarmStartType": "TransferLearning",
    }
    assert channels(request)["train"] == f"s3://{stack.bucket}/runs/{second}/data/train/"

    pipeline.succeed(second)
    assert f"Warm start:          TransferLearning from {first}" in message(pipeline, second)


def test_warm_start_parameter_false_starts_every_run_cold(stack, monkeypatch):
    monkeypatch.setenv("WARM_START", "false")
    pipeline = Pipeline(stack)
    first = start(pipeline)
    pipeline.succeed(first)

    second = start(pipeline, body=with_extra_column(good_file()))  # not DUPLICATE: other bytes

    assert "WarmStartConfig" not in tuning_request(pipeline, second)
    assert pipeline.run(second)["config"]["warm_start"] == {
        "parents": [],
        "type": None,
        "channels": {
            "train": f"s3://{stack.bucket}/runs/{second}/data/train/",
            "validation": f"s3://{stack.bucket}/runs/{second}/data/validation/",
        },
        "reason": "off (WarmStart=false)",
    }


@pytest.mark.parametrize("code", ["ValidationException", "ResourceNotFound"])  # a parent SageMaker no longer has
def test_a_warm_start_sagemaker_refuses_is_dropped_and_the_run_tunes_from_scratch(pipeline, stack, code):
    first = start(pipeline)
    pipeline.succeed(first)
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = [code]

    second = start(pipeline, body=with_extra_column(good_file()))

    request = tuning_request(pipeline, second)
    assert "WarmStartConfig" not in request
    assert channels(request)["train"] == f"s3://{stack.bucket}/runs/{second}/data/train/"
    warm_start = pipeline.run(second)["config"]["warm_start"]
    assert warm_start["parents"] == [] and code in warm_start["refused"]


def test_a_warm_start_botocore_refuses_before_sending_is_dropped_too(pipeline, stack, monkeypatch):
    from botocore.exceptions import ParamValidationError

    from reviewtune.core import tuning

    first = start(pipeline)
    pipeline.succeed(first)
    create = tuning._create

    def refused_warm(clients, request):
        if "WarmStartConfig" in request:
            raise ParamValidationError(report="Invalid length for parameter WarmStartConfig.ParentHyperParameterTuningJobs")
        return create(clients, request)

    monkeypatch.setattr(tuning, "_create", refused_warm)
    second = start(pipeline, body=with_extra_column(good_file()))

    assert pipeline.run(second)["status"] == "TUNING"
    assert "WarmStartConfig" not in tuning_request(pipeline, second)
    assert "Invalid length" in pipeline.run(second)["config"]["warm_start"]["refused"]


def test_a_parent_whose_record_cannot_be_read_costs_the_run_its_warm_start_only(pipeline, stack):
    """A parent's item of another shape (written by an earlier version): the run tunes cold on its own data and
    says why, rather than end FAILED, as every later run of the dataset picking that parent would."""
    first = start(pipeline)
    pipeline.succeed(first)
    pipeline.clients.runs_table.update_item(Key={"run_id": first}, UpdateExpression="SET config = :c",
                                            ExpressionAttributeValues={":c": "an older shape"})

    second = start(pipeline, body=with_extra_column(good_file()))

    item = pipeline.run(second)
    assert item["status"] == "TUNING" and "WarmStartConfig" not in tuning_request(pipeline, second)
    assert item["config"]["warm_start"]["parents"] == []
    assert item["config"]["warm_start"]["reason"].startswith("not planned: ")
    assert channels(tuning_request(pipeline, second))["train"] == f"s3://{stack.bucket}/runs/{second}/data/train/"


def test_a_start_retried_after_its_job_was_made_records_the_warm_start_the_job_has(pipeline, stack, monkeypatch):
    """The first attempt's warm start is refused, so it makes the job cold, then dies before recording it. Lambda's
    retry plans the warm start again and finds the job made: the run records the job's cold start (as SageMaker
    describes it), not the parents it planned this time, so its message and the warm starts after it are not
    misled."""
    first = start(pipeline)
    pipeline.succeed(first)
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ValidationException"]
    died = _dies_once_before_tuning(monkeypatch)
    event = pipeline.drop_event("incoming/team/a.tsv", with_extra_column(good_file()))
    with pytest.raises(TimeoutError):
        pipeline.start_tuning(event)
    [second] = died
    assert "WarmStartConfig" not in tuning_request(pipeline, second)  # made cold

    assert pipeline.start_tuning(event)["status"] == "TUNING"  # the retry: its create finds the job made

    warm_start = pipeline.run(second)["config"]["warm_start"]
    assert warm_start["parents"] == [] and warm_start["type"] is None
    assert warm_start["reason"] == "cold start, as an earlier attempt made the job"
    assert warm_start["channels"] == channels(tuning_request(pipeline, second))


def _dies_once_before_tuning(monkeypatch) -> list[str]:
    """The first invocation that made a tuning job dies before recording it; the list gets that run's id."""
    transition, died = RunsRepository.transition, []

    def dies_once(self, run_id, sources, target, **kwargs):
        if target.value == "TUNING" and not died:
            died.append(run_id)
            raise TimeoutError("the invocation died here")
        return transition(self, run_id, sources, target, **kwargs)

    monkeypatch.setattr(RunsRepository, "transition", dies_once)
    return died


def _deployed(pipeline: Pipeline, monkeypatch, **changes) -> None:
    """A stack update: every function's container gets the changed settings."""
    import dataclasses

    for module in pipeline.handlers.values():
        monkeypatch.setattr(module, "ctx", dataclasses.replace(
            module.ctx, settings=dataclasses.replace(module.ctx.settings, **changes)))


def test_a_run_queued_across_a_model_change_records_and_warm_starts_from_the_model_its_job_trains(
    pipeline, monkeypatch
):
    """A run prepared under one ModelName and started after a deployment changed it: its job trains the new model,
    so its record says so and no run of the old model is its parent."""
    _deployed(pipeline, monkeypatch, max_concurrent_runs=1, model_name="old-model")
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=1))
    queued = pipeline.start_tuning(pipeline.drop_event("incoming/team/a.tsv", good_file(seed=2)))
    assert queued["status"] == "QUEUED"

    _deployed(pipeline, monkeypatch, model_name="new-model")
    pipeline.sagemaker.finish_tuning(second, "Failed", trials=[{"status": "Failed"}], failure="boom")
    pipeline.tuning_ended(second, "Failed")  # its slot goes to the queued run, started with the new settings

    request = tuning_request(pipeline, queued["run_id"])
    assert request["TrainingJobDefinition"]["StaticHyperParameters"]["model_name_or_path"] == "new-model"
    assert "WarmStartConfig" not in request
    config = pipeline.run(queued["run_id"])["config"]
    assert config["model_name"] == "new-model" and config["warm_start"]["parents"] == []


LEARNING_RATE = {"learning_rate": {"min": 1e-5, "max": 5e-5, "scaling": "Logarithmic"}}


def refused_warm_starts(pipeline: Pipeline, run_id: str) -> str | None:
    return pipeline.run(run_id)["config"]["warm_start"].get("refused")


def test_after_a_range_changes_type_runs_warm_start_from_the_runs_of_the_new_type_only(pipeline, monkeypatch):
    """SageMaker refuses a parent whose tuned hyperparameter had another type: a run after the change is not sent
    the runs of before (it starts cold, nothing refused), and the run after it warm-starts from it alone."""
    _deployed(pipeline, monkeypatch, hyperparameter_ranges={**LEARNING_RATE, "train_batch_size": [128, 256]})
    old = start(pipeline)
    pipeline.succeed(old)
    _deployed(pipeline, monkeypatch,
              hyperparameter_ranges={**LEARNING_RATE, "train_batch_size": {"min": 64, "max": 256, "type": "Integer"}})
    second = start(pipeline, body=good_file(seed=1))
    pipeline.succeed(second)
    third = start(pipeline, body=good_file(seed=2))

    assert "WarmStartConfig" not in tuning_request(pipeline, second) and refused_warm_starts(pipeline, second) is None
    assert tuning_request(pipeline, third)["WarmStartConfig"]["ParentHyperParameterTuningJobs"] == [
        {"HyperParameterTuningJobName": second}]


def test_a_parent_more_than_ten_changes_away_is_not_sent(pipeline, monkeypatch):
    """A tuned categorical of 11 values made static: the same names, but 11 changes for SageMaker (10 at most)."""
    _deployed(pipeline, monkeypatch, hyperparameter_ranges={
        **LEARNING_RATE, "train_batch_size": [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384]})
    first = start(pipeline)
    pipeline.succeed(first)
    _deployed(pipeline, monkeypatch, hyperparameter_ranges=LEARNING_RATE,
              static_hyperparameters={"train_batch_size": 128})
    second = start(pipeline, body=good_file(seed=1))

    assert "WarmStartConfig" not in tuning_request(pipeline, second) and refused_warm_starts(pipeline, second) is None
    assert pipeline.run(second)["config"]["warm_start"]["reason"] == "no earlier compatible run of the dataset"


def test_a_start_retried_across_a_deployment_records_the_hyperparameters_of_the_job_it_found(pipeline, monkeypatch):
    """The job is made, the invocation dies, a deployment adds a static hyperparameter, Lambda's retry finds the job:
    the run records the job's hyperparameters, so the next run (under the new settings) is not sent it as a parent
    SageMaker refuses (its names differ)."""
    died = _dies_once_before_tuning(monkeypatch)
    event = pipeline.drop_event("incoming/team/a.tsv", good_file())
    with pytest.raises(TimeoutError):
        pipeline.start_tuning(event)
    [first] = died
    _deployed(pipeline, monkeypatch, static_hyperparameters={"weight_decay": 0.01}, model_name="other-image-same-model")
    assert pipeline.start_tuning(event)["status"] == "TUNING"
    made = tuning_request(pipeline, first)
    recorded = pipeline.run(first)["config"]
    pipeline.succeed(first)
    _deployed(pipeline, monkeypatch, model_name=made["TrainingJobDefinition"]["StaticHyperParameters"][
        "model_name_or_path"])
    second = start(pipeline, body=good_file(seed=1))

    assert "weight_decay" not in recorded["hyperparameter_names"] and "weight_decay" not in recorded[
        "hyperparameters"]["static"]
    assert recorded["model_name"] == made["TrainingJobDefinition"]["StaticHyperParameters"]["model_name_or_path"]
    assert refused_warm_starts(pipeline, second) is None and "WarmStartConfig" not in tuning_request(pipeline, second)


def _deployed_with_deadlines(pipeline: Pipeline, monkeypatch, **changes) -> None:
    """A stack update as Settings.from_env reads it: the changed settings, and run deadlines raised to their tuning
    budget (the stack's RUN_STATE_DEADLINES being the defaults)."""
    import dataclasses

    from reviewtune.core.config import _deadlines_within_limits
    from reviewtune.core.states import DEFAULT_DEADLINES

    for module in pipeline.handlers.values():
        settings = dataclasses.replace(module.ctx.settings, run_deadlines=dict(DEFAULT_DEADLINES), **changes)
        settings = dataclasses.replace(settings, run_deadlines=_deadlines_within_limits(settings))
        monkeypatch.setattr(module, "ctx", dataclasses.replace(module.ctx, settings=settings))


def test_a_start_retried_across_a_deployment_records_times_and_prices_the_job_it_found(pipeline, monkeypatch):
    """The job is made under MaxJobs 40 (20 rounds of a day) without spot training, the invocation dies before its
    TUNING write, a deployment cuts MaxJobs to 4 and turns spot training on with another instance type, and Lambda's
    retry finds the job: the run records the job's own limits and instances, and its deadline covers the job's
    budget, so the healthy job is not ended as stuck on day 5."""
    day = 86400
    _deployed_with_deadlines(pipeline, monkeypatch, max_jobs=40, max_parallel_jobs=2, max_runtime_seconds=day,
                             use_spot_training=False, training_instance_type="ml.g5.xlarge")
    died = _dies_once_before_tuning(monkeypatch)
    event = pipeline.drop_event("incoming/team/a.tsv", good_file())
    with pytest.raises(TimeoutError):
        pipeline.start_tuning(event)
    [run_id] = died
    _deployed_with_deadlines(pipeline, monkeypatch, max_jobs=4, max_parallel_jobs=1, max_runtime_seconds=day // 2,
                             use_spot_training=True, training_instance_type="ml.p3.2xlarge")
    assert pipeline.start_tuning(event)["status"] == "TUNING"  # ResourceInUse: the job found is described

    item = pipeline.run(run_id)
    recorded = {k: item["config"].get(k) for k in ("max_jobs", "max_parallel_jobs", "use_spot_training",
                                                "training_instance_type", "max_runtime_seconds", "max_wait_seconds")}
    assert recorded == {"max_jobs": 40, "max_parallel_jobs": 2, "use_spot_training": False,
                        "training_instance_type": "ml.g5.xlarge", "max_runtime_seconds": day, "max_wait_seconds": None}
    given = datetime.fromisoformat(item["deadline_at"]) - datetime.fromisoformat(item["status_history"]["TUNING"])
    assert given.total_seconds() >= 20 * day

    pipeline.reconcile(now=later(hours=5 * 24))  # the job, within its own limits, still trains on day 5
    assert pipeline.run(run_id)["status"] == "TUNING"
    assert pipeline.sagemaker.tuning[run_id]["status"] == "InProgress"


def test_a_run_recorded_with_hyperparameter_names_only_is_no_parent_beside_runs_recorded_with_their_shape(
    pipeline, monkeypatch
):
    """A run recorded before reviewtune kept its hyperparameters' shape: after a range changed type its names still
    match; beside a run of the new shape it would cost the warm start (SageMaker refuses the whole config)."""
    _deployed(pipeline, monkeypatch, hyperparameter_ranges={**LEARNING_RATE, "train_batch_size": [128, 256]})
    old = start(pipeline)
    pipeline.succeed(old)
    pipeline.clients.runs_table.update_item(Key={"run_id": old}, UpdateExpression="REMOVE config.hyperparameters")
    _deployed(pipeline, monkeypatch,
              hyperparameter_ranges={**LEARNING_RATE, "train_batch_size": {"min": 64, "max": 256, "type": "Integer"}})
    second = start(pipeline, body=good_file(seed=1))  # only `old` to offer, by its names: SageMaker refuses it
    pipeline.succeed(second)
    third = start(pipeline, body=good_file(seed=2))

    assert "type of hyperparameter 'train_batch_size'" in refused_warm_starts(pipeline, second)
    assert tuning_request(pipeline, third)["WarmStartConfig"]["ParentHyperParameterTuningJobs"] == [
        {"HyperParameterTuningJobName": second}]


def test_a_run_whose_start_found_its_job_made_is_a_parent_whatever_sagemaker_adds_to_its_description(
    pipeline, monkeypatch
):
    """DescribeHyperParameterTuningJob shows `_tuning_objective_metric` among the static hyperparameters: the run's
    record leaves it out, or no later run would take it as a parent (other names)."""
    died = _dies_once_before_tuning(monkeypatch)
    event = pipeline.drop_event("incoming/team/a.tsv", good_file())
    with pytest.raises(TimeoutError):
        pipeline.start_tuning(event)
    [first] = died
    assert pipeline.start_tuning(event)["status"] == "TUNING"  # ResourceInUse: the job found is described
    pipeline.succeed(first)

    second = start(pipeline, body=good_file(seed=1))

    assert "_tuning_objective_metric" not in pipeline.run(first)["config"]["hyperparameter_names"]
    assert tuning_request(pipeline, second)["WarmStartConfig"]["ParentHyperParameterTuningJobs"] == [
        {"HyperParameterTuningJobName": first}]


def test_failed_runs_are_not_parents(pipeline):
    first = start(pipeline)
    pipeline.sagemaker.finish_tuning(first, "Failed", trials=[{"status": "Failed"}], failure="boom")
    pipeline.tuning_ended(first, "Failed")

    second = start(pipeline)

    assert "WarmStartConfig" not in tuning_request(pipeline, second)
    assert pipeline.run(second)["config"]["warm_start"]["reason"] == "no earlier succeeded run of the dataset"


def test_the_parents_are_found_past_many_newer_runs_that_did_not_succeed(pipeline, monkeypatch):
    from reviewtune.core import warm_start_plan

    monkeypatch.setattr(warm_start_plan, "CANDIDATES", 2)  # the window of succeeded runs looked at, made small
    first = start(pipeline)
    pipeline.succeed(first)
    for n in range(4):  # more refused drops of the dataset since than the window holds
        assert pipeline.start_tuning(pipeline.drop_event("incoming/team/a.tsv", b"no,reviews\n%d" % n))["status"] == "REJECTED"

    second = start(pipeline, body=good_file(seed=3))

    assert tuning_request(pipeline, second)["WarmStartConfig"]["ParentHyperParameterTuningJobs"] == [
        {"HyperParameterTuningJobName": first}]


# ------------------------------------------------------------------------------------------------ completion criteria


def test_completion_criteria_parameters_reach_the_tuning_job_request(stack, monkeypatch):
    monkeypatch.setenv("TARGET_OBJECTIVE_METRIC_VALUE", "81.5")
    monkeypatch.setenv("MAX_JOBS_NOT_IMPROVING", "5")
    monkeypatch.setenv("COMPLETE_ON_CONVERGENCE", "enabled")
    pipeline = Pipeline(stack)

    run_id = start(pipeline)

    assert tuning_request(pipeline, run_id)["HyperParameterTuningJobConfig"]["TuningJobCompletionCriteria"] == {
        "TargetObjectiveMetricValue": 81.5,
        "BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 5},
        "ConvergenceDetected": {"CompleteOnConvergence": "Enabled"},
    }


def test_no_completion_criteria_by_default(pipeline):
    run_id = start(pipeline)
    assert "TuningJobCompletionCriteria" not in tuning_request(pipeline, run_id)["HyperParameterTuningJobConfig"]


# ------------------------------------------------------------------------------------------------ registry, champion


def test_succeeded_runs_are_registered_and_the_first_becomes_champion(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=with_extra_column(good_file()))
    pipeline.succeed(second, measured(0.7330, 0.7310))

    packages = pipeline.sagemaker.packages()
    for package in packages:
        valid("CreateModelPackage", {k: v for k, v in package.items() if k not in ("ModelPackageArn",)})
    assert [p["CustomerMetadataProperties"]["run_id"] for p in packages] == [first, second]
    assert [p["ModelApprovalStatus"] for p in packages] == ["Approved", "PendingManualApproval"]
    assert {p["ModelPackageGroupName"] for p in packages} == {
        registry.package_group_name("team/a.tsv", scope=stack.bucket)}
    best = pipeline.run(first)["tuning"]["best_training_job"]["model_uri"]
    assert packages[0]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == best
    assert packages[0]["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == (
        f"s3://{stack.bucket}/runs/{first}/evaluation/evaluation.json"
    )
    assert packages[0]["ClientToken"] == first

    one, two = pipeline.run(first), pipeline.run(second)
    assert one["model_package_arn"] == packages[0]["ModelPackageArn"]
    assert one["champion"]["decision"] == "first champion" and "challenge" not in one
    assert two["champion"]["decision"] == "kept" and two["champion"]["champion_run_id"] == first
    assert two["registry"]["approval"] == "PendingManualApproval"
    champion = get_champion(pipeline.clients.runs_table, "team/a.tsv")
    assert champion.run_id == first and champion.model_package_arn == packages[0]["ModelPackageArn"]

    assert "Champion:            first champion: challenger 74.12 %" in message(pipeline, first)
    text = message(pipeline, second)
    assert f"Model registry:      {packages[1]['ModelPackageArn']} (PendingManualApproval)" in text
    assert "Champion:            champion kept: challenger 73.30 % vs champion 73.10 % on the same 309 test reviews (+0.20 points" in text


def metrics_of(accuracy: float, supports: tuple[int, int, int] = (103, 103, 103)) -> dict:
    """evaluation.json's metrics of a model at ``accuracy`` on a test split of these supports (-1, 0, 1)."""
    per_class = {label: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": support}
                 for label, support in zip(("-1", "0", "1"), supports, strict=True)}
    return {"accuracy": {"value": accuracy}, "per_class": per_class}


def test_a_model_no_better_than_guessing_never_becomes_champion_on_its_own(pipeline):
    guessing = start(pipeline)
    pipeline.succeed(guessing, metrics=metrics_of(0.3301))  # 102 of 309 balanced reviews: under a third
    good = start(pipeline, body=with_extra_column(good_file()))
    pipeline.succeed(good)
    # ahead of the champion on the compared reviews, but its split is 90 % positive and it scores 85 %
    skewed = start(pipeline, body=good_file(seed=3))
    pipeline.succeed(skewed, measured(0.85, 0.74, only=(40, 6)), metrics=metrics_of(0.85, (15, 16, 278)))

    one, two, three = pipeline.run(guessing), pipeline.run(good), pipeline.run(skewed)
    assert [run["status"] for run in (one, two, three)] == ["SUCCEEDED"] * 3
    assert (one["champion"]["decision"], one["champion"]["champion_run_id"]) == ("no better than guessing", None)
    assert one["champion"]["reason"] == (
        f"not champion: challenger 33.01 % on {split_test_rows(one)} test reviews is no better than always answering "
        "any one class (33.33 % of the test reviews); the dataset has no champion yet")
    assert (two["champion"]["decision"], two["champion"]["champion_run_id"]) == ("first champion", good)
    assert "margin_points" not in one["champion"] and "max_p_value" not in three["champion"]  # they decided nothing
    assert (three["champion"]["decision"], three["champion"]["champion_run_id"]) == ("no better than guessing", good)
    assert three["champion"]["reason"].endswith(
        "is no better than always answering positive (89.97 % of the test reviews); champion " + good + " stays")
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == good
    assert [p["ModelApprovalStatus"] for p in pipeline.sagemaker.packages()] == [
        "PendingManualApproval", "Approved", "PendingManualApproval"]
    text = message(pipeline, guessing)
    assert "Champion:            not champion: challenger 33.01 %" in text
    assert ("Warning:             no better than always answering any one class (33.33 % of the test reviews): this model "
            "has learnt nothing usable") in text
    assert "Warning" not in message(pipeline, good)

    # a person may still make it champion
    done = promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, pipeline.settings.bucket, skewed,
                   reason="the split is what production sees", by="ops")
    assert done.already_champion is False
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == skewed


def test_with_the_rule_off_the_first_run_is_champion_whatever_its_accuracy_and_its_message_still_warns(
    stack, monkeypatch
):
    monkeypatch.setenv("CHAMPION_MUST_BEAT_GUESSING", "false")
    pipeline = Pipeline(stack)
    guessing = start(pipeline)
    pipeline.succeed(guessing, metrics=metrics_of(0.2037, (18, 21, 15)))

    assert pipeline.run(guessing)["champion"]["decision"] == "first champion"
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == guessing
    assert [p["ModelApprovalStatus"] for p in pipeline.sagemaker.packages()] == ["Approved"]
    assert ("Warning:             no better than always answering neutral (38.89 % of the test reviews)"
            in message(pipeline, guessing))


# ------------------------------------------------------------------------------------------------ fair comparison


def test_each_stack_registers_a_dataset_in_a_group_of_its_own(pipeline, stack):
    """Two stacks in one account and Region (staging and production, or one deployed again after its deletion, with
    a bucket of another name), both with the default job name prefix, keep the same dataset's models apart: a
    group with one stack's champion Approved never gets the other's."""
    run_id = start(pipeline)
    pipeline.succeed(run_id)
    group = pipeline.run(run_id)["registry"]["group"]
    assert pipeline.run(run_id)["registry_group"] == group
    assert group == registry.package_group_name("team/a.tsv", scope=stack.bucket)
    other = registry.package_group_name("team/a.tsv", scope=f"{stack.bucket}-staging")
    assert other != group and other.rsplit("-", 1)[0] == group.rsplit("-", 1)[0]  # the same readable part
    assert stack.bucket in pipeline.sagemaker.group_requests[group]["ModelPackageGroupDescription"]


def test_a_dataset_whose_champion_is_in_a_group_named_by_the_dataset_alone_goes_on_in_that_group(pipeline):
    """A run whose evaluation started before runs recorded their group (evaluated by the code before) registers in
    the group named by the dataset alone, as then; a later run of the dataset follows its champion into that group
    (a deployment following the group's Approved version keeps following it), and only a dataset without a champion
    begins a group of the stack's own name."""
    legacy = registry.package_group_name("team/a.tsv")
    first = start(pipeline)
    pipeline.finish_tuning_well(first)
    pipeline.tuning_ended(first)
    pipeline.clients.runs_table.update_item(Key={"run_id": first}, UpdateExpression="REMOVE registry_group")
    pipeline.sagemaker.finish_processing(f"{first}-eval", evaluation=dict(EVALUATION))
    pipeline.evaluation_ended(first)
    assert pipeline.run(first)["registry"]["group"] == legacy
    assert pipeline.run(first)["champion"]["decision"] == "first champion"

    second = start(pipeline, body=with_extra_column(good_file()))
    pipeline.succeed(second, measured(0.7330, 0.7010))
    assert pipeline.run(second)["registry_group"] == legacy
    assert pipeline.run(second)["champion"]["decision"] == "promoted"
    packages = pipeline.sagemaker.packages()
    assert [(p["ModelPackageGroupName"], p["ModelApprovalStatus"]) for p in packages] == [
        (legacy, "PendingManualApproval"), (legacy, "Approved")]

    other = start(pipeline, key="incoming/team/b.tsv")
    pipeline.succeed(other)
    assert pipeline.run(other)["registry"]["group"] == registry.package_group_name(
        "team/b.tsv", scope=pipeline.settings.bucket)


def test_the_evaluation_job_of_a_later_run_measures_the_champion_too(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))  # another export: its own test split
    pipeline.finish_tuning_well(second)

    pipeline.tuning_ended(second)

    request = valid("CreateProcessingJob", pipeline.processing_request(second))
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    one = pipeline.run(first)
    # Both locations come from the champion's own run item.
    assert inputs["champion-model"]["S3Uri"] == one["tuning"]["best_training_job"]["model_uri"]
    assert inputs["champion-train-hashes"]["S3Uri"] == one["data"]["train_hashes"]
    assert inputs["data"]["S3Uri"] == f"s3://{stack.bucket}/runs/{second}/data/test/"  # the NEW test split
    assert len({i["LocalPath"] for i in inputs.values()}) == len(inputs) == 6
    assert pipeline.processing_argument(second, "--champion-run-id") == first
    assert pipeline.processing_argument(second, "--champion-model") == inputs["champion-model"]["LocalPath"]
    assert pipeline.processing_argument(second, "--champion-train-hashes") == inputs["champion-train-hashes"]["LocalPath"]
    assert pipeline.run(second)["challenge"] == {"champion_run_id": first, "evaluated": True, "overlap_checked": True}
    # The first run had no champion to measure.
    assert pipeline.processing_argument(first, "--champion-model") is None
    assert {i["InputName"] for i in pipeline.processing_request(first)["ProcessingInputs"]} == {"model", "data", "code", "run"}


def test_a_challenger_ahead_by_a_lead_that_may_be_chance_leaves_the_champion_and_its_message_says_so(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))

    pipeline.succeed(second, measured(235 / 309, 228 / 309, only=(25, 18)))  # 7 reviews ahead, of 43 that differ

    two = pipeline.run(second)
    assert two["champion"]["decision"] == "kept" and two["champion"]["champion_run_id"] == first
    assert two["champion"]["max_p_value"] == 0.05 and two["registry"]["approval"] == "PendingManualApproval"
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == first
    assert ("25 reviews right by the challenger only, 18 by the champion only: McNemar p 0.360, over the 0.05 a new "
            "champion needs, so the lead may be chance)") in " ".join(message(pipeline, second).split())


def test_a_challenger_better_by_the_margin_on_the_same_reviews_becomes_champion(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))

    pipeline.succeed(second, measured(0.752, 0.731, rows=297, left_out=12))

    two = pipeline.run(second)
    assert two["champion"]["decision"] == "promoted" and two["champion"]["champion_run_id"] == second
    assert two["champion"]["comparison"]["rows_left_out"] == 12 and two["champion"]["margin_points"] == 0.5
    assert two["registry"]["approval"] == "Approved"
    # one Approved package per dataset, the champion's: the one replaced goes back to pending (former_champions.py)
    assert [p["ModelApprovalStatus"] for p in pipeline.sagemaker.packages()] == ["PendingManualApproval", "Approved"]
    champion = get_champion(pipeline.clients.runs_table, "team/a.tsv")
    assert champion.run_id == second and champion.version == 2
    assert champion.model_package_arn == two["model_package_arn"]
    text = message(pipeline, second)
    assert "Champion:            new champion: challenger 75.20 % vs champion 73.10 % on the same 297 test reviews (+2.10 points, margin 0.5 points)" in text
    assert f"Compared with:       {first} on 297 test reviews of this run (12 left out: the champion was trained on them)" in text


@pytest.mark.parametrize(("minimum", "promoted"), [(None, False), ("12", True)])
def test_a_challenger_compared_on_too_few_reviews_the_champion_was_not_trained_on_leaves_it_champion(
    stack, monkeypatch, minimum, promoted
):
    """The same file dropped again with most of its reviews: only 12 test reviews are left once those the champion
    was trained on are out. 100 % against 66.67 % on them says nothing: the champion stays, and the run says why."""
    if minimum:
        monkeypatch.setenv("CHAMPION_MIN_COMPARED_REVIEWS", minimum)
    pipeline = Pipeline(stack)
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))

    pipeline.succeed(second, measured(1.0, 0.6667, rows=12, left_out=297))

    two = pipeline.run(second)
    champion = get_champion(pipeline.clients.runs_table, "team/a.tsv")
    if promoted:
        assert two["champion"]["decision"] == "promoted" and champion.run_id == second
        return
    assert two["champion"]["decision"] == "not compared" and champion.run_id == first
    assert two["champion"]["reason"] == (
        f"champion kept: only 12 test reviews were not in {first}'s training data (297 were), fewer than the 30 a "
        "comparison needs (ChampionMinComparedReviews); promote the challenger by hand if wanted")
    assert two["registry"]["approval"] == "PendingManualApproval"
    assert "fewer than the 30 a comparison needs" in message(pipeline, second)


@pytest.mark.parametrize(("margin", "promoted"), [("2", False), ("1", True)])
def test_the_margin_parameter_sets_how_much_better_a_challenger_must_be(stack, monkeypatch, margin, promoted):
    monkeypatch.setenv("CHAMPION_MARGIN_POINTS", margin)
    pipeline = Pipeline(stack)
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))

    pipeline.succeed(second, measured(0.745, 0.730))  # +1.5 points

    two = pipeline.run(second)
    assert two["champion"]["decision"] == ("promoted" if promoted else "kept")
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == (second if promoted else first)
    assert pipeline.sagemaker.packages()[1]["ModelApprovalStatus"] == ("Approved" if promoted else "PendingManualApproval")
    assert f"(+1.50 points, margin {margin} points)" in message(pipeline, second)


def test_a_champion_whose_model_is_gone_is_not_measured_and_stays(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    model = pipeline.run(first)["tuning"]["best_training_job"]["model_uri"]
    boto3.client("s3", region_name=REGION).delete_object(Bucket=stack.bucket, Key=model.split("/", 3)[3])
    second = start(pipeline, body=good_file(seed=3))

    pipeline.succeed(second)  # the evaluation job measures the challenger alone

    assert pipeline.processing_argument(second, "--champion-model") is None
    two = pipeline.run(second)
    assert two["status"] == "SUCCEEDED"
    assert two["challenge"] == {
        "champion_run_id": first,
        "evaluated": False,
        "reason": f"its model artifact cannot be read: {model} no longer exists",
    }
    assert two["champion"]["decision"] == "not compared" and two["registry"]["approval"] == "PendingManualApproval"
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == first
    assert (
        f"Champion:            champion kept: {first} was not measured on this run's test reviews: its model "
        f"artifact cannot be read: {model} no longer exists; promote the challenger by hand if wanted"
    ) in message(pipeline, second)


def test_a_champion_the_evaluation_job_could_not_use_is_not_measured_and_stays_saying_why(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))
    pipeline.finish_tuning_well(second)
    pipeline.tuning_ended(second)
    assert pipeline.processing_argument(second, "--champion-model")  # handed over: the job found it unusable
    pipeline.sagemaker.finish_processing(f"{second}-eval", evaluation={**EVALUATION, "champion_not_measured": {
        "champion_run_id": first, "error": "OSError: no file named model.safetensors"}})

    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"

    assert pipeline.run(second)["champion"]["decision"] == "not compared"
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == first
    assert (
        f"Champion:            champion kept: {first} was not measured on this run's test reviews: the evaluation "
        f"job could not use the model of {first} (OSError: no file named model.safetensors); promote the challenger "
        "by hand if wanted"
    ) in message(pipeline, second)


def test_a_champion_without_hashes_whose_model_the_job_could_not_use_is_told_for_its_model(pipeline, stack):
    """start_evaluation notes a champion without training hashes (measured on every review) and hands it over; the
    job then cannot use its model: the message tells the job's reason, not the hashes note."""
    first = start(pipeline)
    pipeline.succeed(first)
    boto3.client("s3", region_name=REGION).delete_object(Bucket=stack.bucket, Key=f"runs/{first}/data/train_hashes.txt")
    second = start(pipeline, body=good_file(seed=3))
    pipeline.finish_tuning_well(second)
    pipeline.tuning_ended(second)
    assert pipeline.processing_argument(second, "--champion-model") and pipeline.run(second)["challenge"]["reason"]
    pipeline.sagemaker.finish_processing(f"{second}-eval", evaluation={**EVALUATION, "champion_not_measured": {
        "champion_run_id": first, "error": "OSError: no file named model.safetensors"}})

    pipeline.evaluation_ended(second)

    assert pipeline.run(second)["champion"]["reason"] == (
        f"champion kept: {first} was not measured on this run's test reviews: the evaluation job could not use the "
        f"model of {first} (OSError: no file named model.safetensors); promote the challenger by hand if wanted")


@pytest.mark.parametrize("denied", ["model_uri", "train_hashes"])
def test_a_moment_s_denial_of_the_champion_s_files_is_tried_again_not_a_lost_comparison(pipeline, denied):
    """S3 denies reading the champion's model (or its training reviews' hashes) once, as IAM may during a stack
    update: the step fails and its next delivery measures the champion, rather than record it unmeasured (or every
    test review measured) for good."""
    from tests.support.faults import Failing

    first = start(pipeline)
    pipeline.succeed(first)
    one = pipeline.run(first)
    uri = one["tuning"]["best_training_job"]["model_uri"] if denied == "model_uri" else one["data"]["train_hashes"]
    second = start(pipeline, body=good_file(seed=3))
    pipeline.finish_tuning_well(second)
    s3 = pipeline.clients.s3
    denial = Failing(s3, "head_object", "403", "Forbidden", failures=1, when=lambda kw: uri.endswith(kw["Key"]))
    pipeline.use("s3", denial)
    with pytest.raises(ClientError, match="Forbidden"):
        pipeline.tuning_ended(second)
    assert pipeline.run(second)["status"] == "TUNING" and denial.failed == 1
    pipeline.tuning_ended(second)  # the event delivered again

    assert pipeline.run(second)["challenge"] == {"champion_run_id": first, "evaluated": True, "overlap_checked": True}
    assert pipeline.processing_argument(second, "--champion-run-id") == first


def test_a_denial_of_the_champion_s_model_that_lasts_leaves_it_unmeasured_with_s3_s_words(pipeline, monkeypatch):
    """An hour after the tuning job ended (evaluation.CHAMPION_READ_RETRY_SECONDS) the denial is no longer waited
    out: the challenger is measured alone and the challenge says why."""
    from reviewtune.core import evaluation
    from tests.support.faults import Failing

    first = start(pipeline)
    pipeline.succeed(first)
    model = pipeline.run(first)["tuning"]["best_training_job"]["model_uri"]
    second = start(pipeline, body=good_file(seed=3))
    pipeline.finish_tuning_well(second)
    monkeypatch.setattr(evaluation, "CHAMPION_READ_RETRY_SECONDS", 0)
    pipeline.use("s3", Failing(pipeline.clients.s3, "head_object", "403", "Forbidden", failures=None,
                               when=lambda kw: model.endswith(kw["Key"])))

    pipeline.tuning_ended(second)

    assert pipeline.run(second)["challenge"] == {
        "champion_run_id": first, "evaluated": False, "reason": f"its model artifact cannot be read: {model}: 403: Forbidden"}
    assert pipeline.processing_argument(second, "--champion-model") is None


def test_a_denial_is_waited_out_for_an_hour_after_tuning_never_near_the_run_s_deadline():
    from reviewtune.core.evaluation import denial_may_pass
    from reviewtune.core.runs import now_iso

    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    run = {"deadline_at": now_iso(now + timedelta(hours=3))}
    assert denial_may_pass(run, now_iso(now - timedelta(minutes=59)), now)
    assert not denial_may_pass(run, now_iso(now - timedelta(minutes=61)), now)
    assert not denial_may_pass(run, None, now) and not denial_may_pass(run, "soon", now)  # the end not known
    assert not denial_may_pass(run, "2026-12-06T10:30:00", now)  # a time without its zone is UTC
    assert not denial_may_pass({"deadline_at": now_iso(now + timedelta(minutes=20))}, now_iso(now), now)


def test_a_champion_without_training_hashes_is_measured_on_every_test_review(pipeline, stack):
    first = start(pipeline)
    pipeline.succeed(first)
    hashes = pipeline.run(first)["data"]["train_hashes"]
    boto3.client("s3", region_name=REGION).delete_object(Bucket=stack.bucket, Key=hashes.split("/", 3)[3])
    second = start(pipeline, body=good_file(seed=3))

    pipeline.succeed(second, measured(0.70, 0.71, overlap_checked=False))

    assert pipeline.processing_argument(second, "--champion-run-id") == first
    assert pipeline.processing_argument(second, "--champion-train-hashes") is None
    two = pipeline.run(second)
    assert two["challenge"]["evaluated"] is True and two["challenge"]["overlap_checked"] is False
    assert two["champion"]["decision"] == "kept"
    assert "none left out: the champion's training reviews are unknown" in message(pipeline, second)


def _challenger_better_than(pipeline: Pipeline) -> tuple[str, str, str]:
    """``first`` champion, ``third`` kept, and ``second``'s evaluation measured better than ``first`` by far, its
    event not yet handled."""
    first = start(pipeline)
    pipeline.succeed(first)
    third = start(pipeline, body=good_file(seed=5))
    pipeline.succeed(third, measured(0.70, 0.73))  # kept
    second = start(pipeline, body=good_file(seed=3))
    pipeline.finish_tuning_well(second)
    pipeline.tuning_ended(second)  # its evaluation job measures `first`
    pipeline.sagemaker.finish_processing(f"{second}-eval", evaluation={
        **EVALUATION, "comparison": {"champion_run_id": first, **measured(0.90, 0.73)}})
    return first, second, third


def test_a_champion_promoted_while_the_challenger_was_evaluated_is_not_replaced(pipeline):
    first, second, third = _challenger_better_than(pipeline)
    promote_manually(pipeline.clients.runs_table, "team/a.tsv", run_id=third, accuracy=0.70, test_rows=309,
                     test_split="sha256:x", reason="by hand", expected_run_id=first)

    pipeline.evaluation_ended(second)

    two = pipeline.run(second)
    assert two["status"] == "SUCCEEDED" and two["champion"]["decision"] == "not compared"
    assert two["champion"]["champion_run_id"] == third
    assert f"{third} became champion after the evaluation measured {first}" in two["champion"]["reason"]
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == third
    assert pipeline.sagemaker.packages()[2]["ModelApprovalStatus"] == "PendingManualApproval"


def approval(pipeline: Pipeline, arn: str) -> str:
    return next(p for p in pipeline.sagemaker.packages() if p["ModelPackageArn"] == arn)["ModelApprovalStatus"]


def test_a_package_approved_by_an_attempt_that_died_goes_back_to_pending_when_the_retry_decides_otherwise(
    pipeline, monkeypatch
):
    """The attempt approved the challenger's package and died before its champion transaction; a person promoted
    another run meanwhile. The retry's decision (not compared) must not leave that package Approved, nor record it
    as pending while SageMaker says Approved."""
    from reviewtune.core import champion as champion_module

    first, second, third = _challenger_better_than(pipeline)
    write = champion_module._put_with_run_update

    def timed_out(*args, **kwargs):
        raise RuntimeError("Task timed out")  # after UpdateModelPackage(Approved), before the transaction

    monkeypatch.setattr(champion_module, "_put_with_run_update", timed_out)
    with pytest.raises(RuntimeError, match="timed out"):
        pipeline.evaluation_ended(second)
    monkeypatch.setattr(champion_module, "_put_with_run_update", write)
    arn = pipeline.run(second)["model_package_arn"]
    assert approval(pipeline, arn) == "Approved"
    promote_manually(pipeline.clients.runs_table, "team/a.tsv", run_id=third, accuracy=0.70, test_rows=309,
                     test_split="sha256:x", reason="by hand", expected_run_id=first)

    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"  # the retry
    two = pipeline.run(second)
    assert two["champion"]["decision"] == "not compared"
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == third
    assert approval(pipeline, arn) == two["registry"]["approval"] == "PendingManualApproval"
    assert pipeline.statuses_told(second) == ["SUCCEEDED"]


@pytest.mark.parametrize("refusal", ["deleted", "AccessDeniedException", "ThrottlingException"])
def test_a_repeated_event_whose_run_s_package_cannot_be_read_still_does_its_work(pipeline, stack, monkeypatch, refusal):
    """Two runs of a dataset race to be its first champion; the loser marked and approved its package, then put it
    back to pending and ended SUCCEEDED. Its processing job's event comes again (a replay, after the idempotency
    record expired) once a person deleted that package, or while SageMaker refuses to describe it: the look for an
    approval left behind does not fail every delivery, and one it cannot read is put back to pending all the same; a
    passing refusal (throttling) is tried again."""
    from reviewtune.core import champion as champion_module

    a = start(pipeline, body=good_file(seed=0))
    b = start(pipeline, body=good_file(seed=1))
    for run_id in (a, b):
        pipeline.finish_tuning_well(run_id)
        pipeline.tuning_ended(run_id)
        pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    write, done = champion_module._put_with_run_update, []

    def a_lands_first(*args, **kwargs):
        if not done and kwargs.get("run_id") == b:
            done.append(pipeline.evaluation_ended(a))
        return write(*args, **kwargs)

    monkeypatch.setattr(champion_module, "_put_with_run_update", a_lands_first)
    pipeline.evaluation_ended(b)
    monkeypatch.setattr(champion_module, "_put_with_run_update", write)
    loser = pipeline.run(b)
    assert loser["status"] == "SUCCEEDED" and loser["package_marked_at"] and loser["champion"]["champion_run_id"] == a
    arn = loser["model_package_arn"]
    if refusal == "deleted":
        pipeline.sagemaker.delete_model_package(ModelPackageName=arn)
    else:  # and an approval left behind (an attempt that died before putting it back), which the event must undo
        pipeline.sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
        pipeline.sagemaker.fail["describe_model_package"] = [refusal]
    idempotency = boto3.resource("dynamodb", region_name=REGION).Table(stack.idempotency_table)
    for record in idempotency.scan()["Items"]:
        idempotency.delete_item(Key={"id": record["id"]})

    if refusal == "ThrottlingException":
        with pytest.raises(ClientError, match="Throttling"):
            pipeline.evaluation_ended(b)
    assert pipeline.evaluation_ended(b)["status"] == "SUCCEEDED"
    assert pipeline.statuses_told(b) == ["SUCCEEDED"]
    assert pipeline.run(b)["status"] == "SUCCEEDED"
    if refusal != "deleted":  # the approval was not read, or read after the throttling: put back all the same
        assert approval(pipeline, arn) == "PendingManualApproval"


def _promoted_before_the_transaction(pipeline: Pipeline, monkeypatch, first: str, third: str) -> None:
    """The challenger's package approved, a person promotes ``third`` before its champion transaction, and putting
    the package back to pending is then throttled once."""
    from reviewtune.core import champion as champion_module

    write = champion_module._put_with_run_update

    def promoted_meanwhile(*args, **kwargs):
        monkeypatch.setattr(champion_module, "_put_with_run_update", write)
        promote_manually(pipeline.clients.runs_table, "team/a.tsv", run_id=third, accuracy=0.70, test_rows=309,
                         test_split="sha256:x", reason="by hand", expected_run_id=first)
        pipeline.sagemaker.fail["update_model_package"] = ["ThrottlingException"]  # the un-approval
        return write(*args, **kwargs)

    monkeypatch.setattr(champion_module, "_put_with_run_update", promoted_meanwhile)


def test_an_unapproval_throttled_after_the_champion_changed_is_tried_again(pipeline, monkeypatch):
    """The champion changes between this run's approval and its transaction; putting the package back to pending
    is throttled: the attempt fails and is tried again, as an approval would be, instead of succeeding with a
    package Approved that is not the champion's."""
    first, second, third = _challenger_better_than(pipeline)
    _promoted_before_the_transaction(pipeline, monkeypatch, first, third)
    with pytest.raises(Exception, match="ThrottlingException"):
        pipeline.evaluation_ended(second)
    assert pipeline.run(second)["status"] == "EVALUATING"
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"
    two = pipeline.run(second)
    assert two["champion"]["champion_run_id"] == third and "error" not in two["registry"]
    assert approval(pipeline, two["model_package_arn"]) == two["registry"]["approval"] == "PendingManualApproval"


def _unapproval_refused_an_hour_in(pipeline: Pipeline, monkeypatch) -> tuple[str, str, str]:
    """``second`` approved for a champion move, the champion changed (``third`` promoted by hand) before its
    transaction, and putting its package back to pending still refused an hour into its evaluation: it SUCCEEDED,
    not champion, with its package Approved."""
    first, second, third = _challenger_better_than(pipeline)
    evaluating_for_an_hour(pipeline, second)
    _promoted_before_the_transaction(pipeline, monkeypatch, first, third)
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"
    two = pipeline.run(second)
    assert two["champion"]["champion_run_id"] == third
    assert two["registry"]["error"].startswith("approval failed: ThrottlingException")
    assert approval(pipeline, two["model_package_arn"]) == "Approved"  # not the champion's, yet Approved
    return first, second, third


def test_a_non_champion_package_still_approved_when_the_retries_ran_out_is_put_back_by_the_reconciler(
    pipeline, monkeypatch
):
    from reviewtune.console import views

    _, second, third = _unapproval_refused_an_hour_in(pipeline, monkeypatch)
    runs = RunsRepository(pipeline.clients.runs_table)
    assert second in list(runs.with_pending_notice())  # its message went out, but it owes the withdrawal
    arn = pipeline.run(second)["model_package_arn"]
    assert "not champion: the reconciler is putting it back" in views._package(pipeline.run(second))

    pipeline.sagemaker.fail["update_model_package"] = ["ThrottlingException"]
    assert "ThrottlingException" in pipeline.reconcile(later(0.05))["errors"][second]  # still refused: next pass
    assert approval(pipeline, arn) == "Approved"
    assert pipeline.reconcile(later(0.1))["withdrawn"] == 1
    assert approval(pipeline, arn) == "PendingManualApproval"
    assert second in list(runs.with_pending_notice())  # kept until no attempt can still be approving it

    pipeline.reconcile(later(0.5))
    item = pipeline.run(second)
    assert item["approval_settled_at"] and second not in list(runs.with_pending_notice())
    assert item["registry"]["approval"] == "PendingManualApproval" and "error" not in item["registry"]
    assert approval(pipeline, arn) == "PendingManualApproval"
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == third
    assert pipeline.statuses_told(second) == ["SUCCEEDED"]  # one message, sent once
    assert pipeline.reconcile(later(0.6))["withdrawn"] == 0


def test_a_non_champion_package_promoted_by_hand_before_the_pass_stays_approved(pipeline, monkeypatch):
    _, second, third = _unapproval_refused_an_hour_in(pipeline, monkeypatch)
    arn = pipeline.run(second)["model_package_arn"]
    promote_manually(pipeline.clients.runs_table, "team/a.tsv", run_id=second, accuracy=0.90, test_rows=309,
                     test_split="sha256:x", reason="by hand", expected_run_id=third)
    assert pipeline.reconcile(later(0.1))["withdrawn"] == 1
    assert approval(pipeline, arn) == "Approved"  # the champion's
    assert pipeline.run(second)["approval_settled_at"]
    assert second not in list(RunsRepository(pipeline.clients.runs_table).with_pending_notice())


@pytest.mark.parametrize("approval_refused", [False, True])
def test_a_package_promoted_by_hand_while_the_pass_withdraws_it_ends_approved(pipeline, monkeypatch, approval_refused):
    """A person promotes the run after the pass read the champion pointer and before its withdrawal reached
    SageMaker: the withdrawal undid the promotion's approval, so the pass approves the package again (the next pass,
    when SageMaker refuses that approval)."""
    from reviewtune.core import promotion

    _, second, _ = _unapproval_refused_an_hour_in(pipeline, monkeypatch)
    arn = pipeline.run(second)["model_package_arn"]
    runs = RunsRepository(pipeline.clients.runs_table)
    withdraw = registry.set_approval

    def promoted_first(sagemaker, package_arn, status, description):
        if status == registry.PENDING:
            monkeypatch.setattr(registry, "set_approval", withdraw)
            promotion.promote(runs, sagemaker, pipeline.stack.bucket, second, reason="better on the new rows",
                              by="ops")
            assert approval(pipeline, arn) == "Approved"
        withdraw(sagemaker, package_arn, status, description)
        if approval_refused:
            pipeline.sagemaker.fail["update_model_package"] = ["ThrottlingException"]

    monkeypatch.setattr(registry, "set_approval", promoted_first)
    first_pass = pipeline.reconcile(later(0.1))
    if approval_refused:
        assert "ThrottlingException" in first_pass["errors"][second]
        # the same pass's check of each champion's package approves it (former_champions.py); the withdrawal, still
        # owed, is settled by the next pass
        assert approval(pipeline, arn) == "Approved"
        assert second in list(runs.with_pending_notice())
        first_pass = pipeline.reconcile(later(0.2))
    assert first_pass["withdrawn"] == 1
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == second
    assert approval(pipeline, arn) == "Approved"  # the champion's package
    item = pipeline.run(second)
    assert item["approval_settled_at"] and item["registry"]["approval"] == "Approved" and "error" not in item["registry"]
    assert second not in list(runs.with_pending_notice())
    assert pipeline.reconcile(later(0.6))["withdrawn"] == 0
    assert approval(pipeline, arn) == "Approved"


def _a_pass_records_the_run_before_the_approval(pipeline: Pipeline, monkeypatch, table, *, reconcile=None,
                                                then=None) -> None:
    """The event's record_results marks ``second``'s package for a champion move; before it approves it, a reconciler
    pass (``reconcile``) records the run without deciding (its read of the champion refused: the package stays
    pending). ``then`` runs right after the approval; ``table``: the runs table the handlers use otherwise."""
    from reviewtune.core import results
    from tests.support.faults import Failing

    approve = results.set_approval

    def a_pass_first(entry, champion, run_id, clients, **kwargs):
        monkeypatch.setattr(results, "set_approval", approve)
        pipeline.use("runs_table", Failing(table, "get_item", "AccessDeniedException",
                                           when=lambda kw: kw["Key"]["run_id"].startswith("champion#")))
        (reconcile or (lambda: pipeline.reconcile(later(0))))()
        pipeline.use("runs_table", table)
        approved = approve(entry, champion, run_id, clients, **kwargs)
        if then is not None:
            then()
        return approved

    monkeypatch.setattr(results, "set_approval", a_pass_first)


def test_an_approval_given_after_another_attempt_recorded_the_run_not_champion_is_withdrawn(pipeline, monkeypatch):
    """The event's record_results marks the package for a champion move; before it approves it, a reconciler pass
    records the run without deciding (its read of the champion refused: the package stays pending). The approval
    given next must not stay: the event's transaction finds the run recorded, and puts the package back."""
    from reviewtune.core import results
    from tests.support.faults import Failing

    first, second, _ = _challenger_better_than(pipeline)
    approve, table = results.set_approval, pipeline.clients.runs_table

    def a_pass_first(entry, champion, run_id, clients, **kwargs):
        monkeypatch.setattr(results, "set_approval", approve)
        pipeline.use("runs_table", Failing(table, "get_item", "AccessDeniedException",
                                           when=lambda kwargs: kwargs["Key"]["run_id"].startswith("champion#")))
        pipeline.reconcile(later(0))  # reads the evaluation job's completion and records the run
        pipeline.use("runs_table", table)
        recorded = pipeline.run(second)
        assert recorded["status"] == "SUCCEEDED" and recorded["champion"]["decision"] == "not decided"
        return approve(entry, champion, run_id, clients, **kwargs)

    monkeypatch.setattr(results, "set_approval", a_pass_first)
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"
    assert get_champion(table, "team/a.tsv").run_id == first
    assert approval(pipeline, pipeline.run(second)["model_package_arn"]) == "PendingManualApproval"
    assert pipeline.statuses_told(second) == ["SUCCEEDED"]


@pytest.mark.parametrize("meanwhile", ["withdrawal refused", "promoted by hand"])
def test_an_approval_left_by_a_late_attempt_is_settled_by_the_reconciler(pipeline, monkeypatch, meanwhile):
    """As above, but the event's attempt cannot undo its approval: SageMaker refuses putting the package back to
    pending, or a person promotes the run between the attempt's read of the pointer and its withdrawal. The run,
    SUCCEEDED and told already, comes back to the pending index, and a reconciler pass settles it: its package back
    to pending, or approved again as the champion's. No second message."""
    from reviewtune.core import promotion, results, withdrawal
    from tests.support.faults import Failing

    first, second, _ = _challenger_better_than(pipeline)
    approve, table, sagemaker = results.set_approval, pipeline.clients.runs_table, pipeline.clients.sagemaker

    def a_pass_first(entry, champion, run_id, clients, **kwargs):
        monkeypatch.setattr(results, "set_approval", approve)
        pipeline.use("runs_table", Failing(table, "get_item", "AccessDeniedException",
                                           when=lambda kwargs: kwargs["Key"]["run_id"].startswith("champion#")))
        pipeline.reconcile(later(0))  # records the run, not deciding: its package stays pending
        pipeline.use("runs_table", table)
        approved = approve(entry, champion, run_id, clients, **kwargs)
        if meanwhile == "withdrawal refused":
            pipeline.use("sagemaker", Failing(sagemaker, "update_model_package", "ThrottlingException", failures=None))
        else:
            read = withdrawal.withdraw

            def promoted_first(clients_, item):  # `reviewtune promote`: the pointer moved, then the package approved
                promotion.promote(RunsRepository(table), sagemaker, pipeline.stack.bucket, second, reason="wanted it",
                                  by="ops")
                return read(clients_, item)

            monkeypatch.setattr(withdrawal, "withdraw", promoted_first)
        return approved

    monkeypatch.setattr(results, "set_approval", a_pass_first)
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"
    pipeline.use("sagemaker", sagemaker)
    item = pipeline.run(second)
    arn = item["model_package_arn"]
    assert withdrawal.owed(item) and item.get("notice_pending") and item["registry"]["approval"] == "Approved"
    assert item["registry"]["error"].startswith("approval failed: ")

    pipeline.reconcile(later(0.5))  # past SETTLE_AFTER_SECONDS since the mark

    item = pipeline.run(second)
    assert item.get("approval_settled_at") and not withdrawal.owed(item) and not item.get("notice_pending")
    assert "error" not in item["registry"]
    if meanwhile == "withdrawal refused":
        assert approval(pipeline, arn) == item["registry"]["approval"] == "PendingManualApproval"
        assert get_champion(table, "team/a.tsv").run_id == first
    else:
        assert approval(pipeline, arn) == item["registry"]["approval"] == "Approved"
        assert get_champion(table, "team/a.tsv").run_id == second
    assert pipeline.statuses_told(second) == ["SUCCEEDED"]


def test_a_withdrawal_owed_while_a_sender_clears_the_pending_index_stays_in_it(pipeline, monkeypatch):
    """The pass that records the run (not champion) reads it with every message sent and nothing owed, and clears it
    from the pending index; between that read and that clear the event's late attempt, its withdrawal refused,
    records the withdrawal owed. The clear must not drop it: a later pass settles it."""
    from reviewtune.core import withdrawal
    from tests.support.faults import Failing

    first, second, _ = _challenger_better_than(pipeline)
    table, sagemaker = pipeline.clients.runs_table, pipeline.clients.sagemaker
    clear = RunsRepository.clear_pending_notice
    delayed = []

    def in_flight(self, run_id, status, **kwargs):  # the pass's clear: sent after its read, lands later
        if run_id == second and not delayed:
            delayed.append((self, run_id, status, kwargs))
            return True
        return clear(self, run_id, status, **kwargs)

    def a_pass_whose_clear_is_in_flight():
        monkeypatch.setattr(RunsRepository, "clear_pending_notice", in_flight)
        pipeline.reconcile(later(0))
        monkeypatch.setattr(RunsRepository, "clear_pending_notice", clear)

    _a_pass_records_the_run_before_the_approval(
        pipeline, monkeypatch, table, reconcile=a_pass_whose_clear_is_in_flight,
        then=lambda: pipeline.use("sagemaker", Failing(sagemaker, "update_model_package", "ThrottlingException",
                                                       failures=None)))
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"
    pipeline.use("sagemaker", sagemaker)
    assert withdrawal.owed(pipeline.run(second)) and pipeline.run(second).get("notice_pending")
    self, run_id, status, kwargs = delayed[0]
    assert clear(self, run_id, status, **kwargs) is False  # the pass's clear lands now, and is refused

    pipeline.reconcile(later(0.5))  # past SETTLE_AFTER_SECONDS since the mark
    item = pipeline.run(second)
    assert item.get("approval_settled_at") and not item.get("notice_pending")
    assert approval(pipeline, item["model_package_arn"]) == "PendingManualApproval"
    assert get_champion(table, "team/a.tsv").run_id == first
    assert pipeline.statuses_told(second) == ["SUCCEEDED"]


@pytest.mark.parametrize("retry_refused", [False, True])
def test_an_approval_left_by_an_attempt_that_died_before_recording_it_is_undone_by_the_retry(
    pipeline, monkeypatch, retry_refused
):
    """As above, SageMaker refuses putting the package back, and then DynamoDB refuses recording that it is owed:
    the invocation fails with the run SUCCEEDED, told, out of the pending index and its package Approved. The retry
    of the event finds the package Approved while the run is not champion, and puts it back (or, refused again,
    records it owed, and a reconciler pass settles it). No second message."""
    from reviewtune.core import withdrawal
    from tests.support.faults import Failing

    first, second, _ = _challenger_better_than(pipeline)
    sagemaker = pipeline.clients.sagemaker
    table = Failing(pipeline.clients.runs_table, "update_item", "ProvisionedThroughputExceededException",
                    when=lambda kwargs: registry.APPROVAL_FAILED in str(kwargs))  # withdrawal.owe's write
    pipeline.use("runs_table", table)
    _a_pass_records_the_run_before_the_approval(
        pipeline, monkeypatch, table,
        then=lambda: pipeline.use("sagemaker", Failing(sagemaker, "update_model_package", "ThrottlingException",
                                                       failures=None)))
    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        pipeline.evaluation_ended(second)
    assert table.failed == 1
    item = pipeline.run(second)
    arn = item["model_package_arn"]
    assert item["status"] == "SUCCEEDED" and not withdrawal.owed(item) and not item.get("notice_pending")
    assert approval(pipeline, arn) == "Approved"  # not the champion's, and nothing on the run says so

    if not retry_refused:
        pipeline.use("sagemaker", sagemaker)
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"  # the event's retry
    pipeline.use("sagemaker", sagemaker)
    item = pipeline.run(second)
    if retry_refused:
        assert withdrawal.owed(item) and item.get("notice_pending") and approval(pipeline, arn) == "Approved"
        pipeline.reconcile(later(0.5))  # past SETTLE_AFTER_SECONDS since the mark
        item = pipeline.run(second)
        assert item.get("approval_settled_at") and not item.get("notice_pending")
    else:
        assert not withdrawal.owed(item) and not item.get("notice_pending")
    assert approval(pipeline, arn) == "PendingManualApproval"
    assert get_champion(table, "team/a.tsv").run_id == first
    assert pipeline.statuses_told(second) == ["SUCCEEDED"]
    calls = len(pipeline.sagemaker.calls)
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"  # settled: nothing asked again
    assert "update_model_package" not in pipeline.sagemaker.calls[calls:]


def test_a_repeated_event_for_a_run_whose_package_was_never_marked_asks_sagemaker_nothing(pipeline):
    """Only a run an attempt marked for a champion move, and recorded not champion, makes a repeated event ask
    SageMaker for its package's approval."""
    first, second, _ = _challenger_better_than(pipeline)
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"
    calls = len(pipeline.sagemaker.calls)
    for run_id in (first, second):
        assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"
    assert "describe_model_package" not in pipeline.sagemaker.calls[calls:]


def test_a_champion_item_unreadable_for_a_moment_is_read_again_before_the_run_succeeds(pipeline):
    """A throttled read of the champion pointer is not a decision: the first run of the dataset still becomes
    champion, as it would have without the throttling."""
    from tests.support.faults import Failing

    run_id = evaluated(pipeline)
    table = pipeline.clients.runs_table
    pipeline.use("runs_table", Failing(table, "get_item", "ProvisionedThroughputExceededException",
                                       when=lambda kwargs: kwargs["Key"]["run_id"].startswith("champion#")))
    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        pipeline.evaluation_ended(run_id)
    assert pipeline.run(run_id)["status"] == "EVALUATING"

    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"
    item = pipeline.run(run_id)
    assert item["champion"]["decision"] == "first champion" and "error" not in item["champion"]
    assert get_champion(table, "team/a.tsv").run_id == run_id
    assert approval(pipeline, item["model_package_arn"]) == "Approved"


def test_a_champion_whose_approval_was_refused_is_told_how_to_approve_it(pipeline):
    # refused, not throttled: a moment's throttling is tried again (the test below)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]
    run_id = start(pipeline)
    pipeline.succeed(run_id)

    item = pipeline.run(run_id)
    assert item["champion"]["champion_run_id"] == run_id and "approval failed" in item["registry"]["error"]
    assert f'approve it: reviewtune promote {run_id} --reason "approval failed"' in message(pipeline, run_id)


def test_a_refused_registration_does_not_cost_the_run_its_outcome(pipeline):
    pipeline.sagemaker.fail["create_model_package"] = ["AccessDeniedException"]
    run_id = start(pipeline)

    result = pipeline.succeed(run_id)

    assert result["status"] == "SUCCEEDED"
    item = pipeline.run(run_id)
    assert item["status"] == "SUCCEEDED" and "model_package_arn" not in item
    assert "AccessDeniedException" in item["registry"]["error"]
    assert item["champion"]["decision"] == "first champion"  # the pointer does not depend on the registry
    text = message(pipeline, run_id)
    assert "Model registry:      registration failed: AccessDeniedException" in text
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


def evaluated(pipeline: Pipeline, key: str = "incoming/team/a.tsv", body: bytes | None = None) -> str:
    """A run whose evaluation job has ended well; its event not yet handled."""
    run_id = start(pipeline, key, body)
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=EVALUATION)
    return run_id


@pytest.mark.parametrize("call", ["create_model_package", "update_model_package"])
@pytest.mark.parametrize("code", ["ThrottlingException", "ConflictException"])  # another change of the group meanwhile
def test_a_registration_throttled_for_a_moment_is_tried_again_before_the_run_succeeds(pipeline, call, code):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.fail[call] = [code]

    with pytest.raises(Exception, match=code):
        pipeline.evaluation_ended(run_id)  # Lambda delivers the event again; the reconciler would too
    item = pipeline.run(run_id)
    assert item["status"] == "EVALUATING" and get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"

    item = pipeline.run(run_id)
    assert item["model_package_arn"] and "error" not in item["registry"]
    assert item["champion"]["decision"] == "first champion" and item["registry"]["approval"] == "Approved"
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


def evaluating_for_an_hour(pipeline: Pipeline, run_id: str) -> None:
    """The run entered EVALUATING longer ago than a moment's refusal is tried again for."""
    entered = (datetime.now(UTC) - timedelta(seconds=REGISTRATION_RETRY_SECONDS + 60)).isoformat()
    pipeline.clients.runs_table.update_item(Key={"run_id": run_id}, UpdateExpression="SET status_history.EVALUATING = :t",
                                            ExpressionAttributeValues={":t": entered})


def test_a_registration_still_throttled_an_hour_into_the_evaluation_is_recorded_and_the_run_succeeds(pipeline):
    run_id = evaluated(pipeline)
    evaluating_for_an_hour(pipeline, run_id)
    pipeline.sagemaker.fail["create_model_package"] = ["ThrottlingException"]

    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"
    item = pipeline.run(run_id)
    assert "model_package_arn" not in item and "ThrottlingException" in item["registry"]["error"]
    assert "Model registry:      registration failed: ThrottlingException" in message(pipeline, run_id)


def test_a_champion_approval_throttled_is_tried_again_and_an_hour_in_is_recorded_while_the_run_succeeds(pipeline):
    run_id = evaluated(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = ["ThrottlingException"]
    with pytest.raises(Exception, match="ThrottlingException"):
        pipeline.evaluation_ended(run_id)  # nothing final written: Lambda delivers the event again
    item = pipeline.run(run_id)
    assert item["status"] == "EVALUATING" and get_champion(pipeline.clients.runs_table, item["dataset"]) is None
    assert pipeline.evaluation_ended(run_id)["status"] == "SUCCEEDED"
    item = pipeline.run(run_id)
    assert item["registry"]["approval"] == "Approved" and "error" not in item["registry"]
    assert pipeline.sagemaker.packages()[0]["ModelApprovalStatus"] == "Approved"

    # another dataset's run, whose approval is still refused an hour into its evaluation
    second = evaluated(pipeline, "incoming/team/b.tsv", good_file(1))
    evaluating_for_an_hour(pipeline, second)
    pipeline.sagemaker.fail["update_model_package"] = ["ThrottlingException"]
    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"
    second_item = pipeline.run(second)
    assert "ThrottlingException" in second_item["registry"]["error"]
    assert second_item["champion"]["decision"] == "first champion"
    assert "approval failed: ThrottlingException" in message(pipeline, second)  # the message names it
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"] and pipeline.statuses_told(second) == ["SUCCEEDED"]


def test_a_retried_record_results_registers_once(pipeline):
    run_id = start(pipeline)
    pipeline.succeed(run_id)
    item = pipeline.run(run_id)

    again = register(item, item["results"], pipeline.settings, pipeline.clients)
    champion, _ = plan_champion(item, item["results"], pipeline.settings, pipeline.clients)

    assert len(pipeline.sagemaker.packages()) == 1
    assert again["model_package_arn"] == item["model_package_arn"]
    # the retry tells the decision that made it champion, not "already champion"
    assert champion["decision"] == item["champion"]["decision"] == "first champion"
    assert champion["reason"] == item["champion"]["reason"]


# ------------------------------------------------------------------------------------------------ costs


def test_costs_are_in_the_run_item_and_the_success_message(pipeline):
    run_id = start(pipeline)
    pipeline.succeed(run_id)

    cost = pipeline.run(run_id)["tuning"]["cost"]
    assert [t["billable_seconds"] for t in cost["trials"]] == [600, 600]
    assert cost["billable_seconds"] == 1200 and cost["training_instance_type"] == "ml.g5.xlarge"
    assert cost["total"] == pytest.approx(1200 * 1.408 / 3600, abs=1e-4)
    # and the evaluation job's, from its event: 387 s on 1 x ml.m5.xlarge
    assert pipeline.run(run_id)["results"]["evaluation_cost"]["seconds"] == 387
    text = message(pipeline, run_id)
    assert ("Estimated cost:      US$ 0.49 for 1,200 billable seconds on 1 x ml.g5.xlarge and the evaluation job"
            in text)
    assert "evaluation job: 387 s on 1 x ml.m5.xlarge, US$ 0.02" in text
    assert f"  {run_id}-001-abcdef01: 600 billable seconds, US$ 0.23" in text


def test_the_evaluation_job_s_cost_is_recorded_when_the_reconciler_reads_the_job_its_event_lost(pipeline):
    run_id = start(pipeline)
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    job = pipeline.sagemaker.processing[f"{run_id}-eval"]
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation=dict(EVALUATION))  # its event never comes
    job["started_at"] = job["ended_at"] - timedelta(minutes=10)  # DescribeProcessingJob: datetimes

    pipeline.reconcile(later(0.3))

    item = pipeline.run(run_id)
    assert item["status"] == "SUCCEEDED"
    assert item["results"]["evaluation_cost"] == {"seconds": 600, "instance_type": "ml.m5.xlarge",
                                                  "instance_count": 1, "cost": 0.0383, "currency": "USD"}
    assert "evaluation job: 600 s on 1 x ml.m5.xlarge, US$ 0.04" in message(pipeline, run_id)


def test_costs_are_in_the_failure_message(pipeline):
    run_id = start(pipeline)
    pipeline.sagemaker.finish_tuning(run_id, "Failed", trials=[{"status": "Failed"}], failure="out of memory")
    pipeline.tuning_ended(run_id, "Failed")

    assert pipeline.run(run_id)["tuning"]["cost"]["billable_seconds"] == 600
    text = message(pipeline, run_id)
    assert "Estimated cost:      US$ 0.23 for 600 billable seconds" in text
    assert "Warm start:          none (no earlier succeeded run of the dataset)" in text


# ------------------------------------------------------------------------------------------------ odd names


def test_a_name_spelled_with_decomposed_accents_warm_starts_from_the_composed_spelling_s_runs(pipeline):
    composed = "incoming/équipe/avis été.tsv"
    first = start(pipeline, key=composed)
    pipeline.succeed(first)
    second = start(pipeline, key=unicodedata.normalize("NFD", composed), body=good_file(seed=3))
    assert tuning_request(pipeline, second)["WarmStartConfig"]["ParentHyperParameterTuningJobs"] == [
        {"HyperParameterTuningJobName": first}
    ]
    pipeline.succeed(second)
    packages = pipeline.sagemaker.packages()
    assert len(packages) == 2 and len({p["ModelPackageGroupName"] for p in packages}) == 1  # one registry group


@pytest.mark.parametrize(
    "key",
    ["incoming/team a/summer reviews (1).tsv", "incoming/équipe/avis, été #2 [final] ✓ & 50%!.csv",
     "incoming/" + "(x)" * 300 + ".tsv", "incoming/tab\there/new\nline\u200b.tsv"],
)
def test_a_file_named_with_characters_sagemaker_refuses_in_tags_still_tunes_and_registers(pipeline, key):
    """SageMaker's tag values and model-package metadata allow only letters, digits, spaces and ``_.:/=+-@``: the
    dataset's name goes into both, so it must be made acceptable there, not refused with the run."""
    run_id = start(pipeline, key=key)
    dataset = pipeline.run(run_id)["dataset"]
    assert dataset == names.dataset_name(key)
    [tag] = [t["Value"] for t in tuning_request(pipeline, run_id)["Tags"] if t["Key"] == "reviewtune:dataset"]
    assert tag == names.sagemaker_text(dataset) and tag != dataset

    pipeline.succeed(run_id)
    assert pipeline.run(run_id)["status"] == "SUCCEEDED"
    [package] = pipeline.sagemaker.packages()
    metadata = package["CustomerMetadataProperties"]
    assert metadata["run_id"] == run_id and metadata["dataset"] == tag
    assert pipeline.run(run_id)["model_package_arn"] == package["ModelPackageArn"]
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]
    assert "registry" not in pipeline.run(run_id) or not pipeline.run(run_id)["registry"].get("error")


def test_a_registration_throttled_after_a_long_evaluation_is_tried_again_for_an_hour_from_the_job_s_end(pipeline):
    """The hour of retries counts from the evaluation job's end, not from the run's EVALUATING: a job that waited
    for its instance and ran near its hour still gets its retries."""
    run_id = evaluated(pipeline)
    evaluating_for_an_hour(pipeline, run_id)
    pipeline.sagemaker.fail["create_model_package"] = ["ThrottlingException"]
    ended_now = int(datetime.now(UTC).timestamp() * 1000)

    with pytest.raises(Exception, match="ThrottlingException"):
        pipeline.evaluation_ended(run_id, ended_at=ended_now)
    assert pipeline.run(run_id)["status"] == "EVALUATING"
    assert pipeline.evaluation_ended(run_id, ended_at=ended_now)["status"] == "SUCCEEDED"

    item = pipeline.run(run_id)
    assert item["model_package_arn"] and "error" not in item["registry"] and "evaluation_job_ended_at" not in item
    assert item["registry"]["approval"] == "Approved"
    assert pipeline.statuses_told(run_id) == ["SUCCEEDED"]


@pytest.mark.parametrize(("ended", "entered", "deadline", "retried"), [
    (None, -10, 170, True),  # the job's end unknown: from EVALUATING
    (None, -61, 119, False),
    (-5, -61, 119, True),  # ended 5 minutes ago: its hour runs
    (-61, -62, 118, False),
    (-5, -61, 25, False),  # within half an hour of the deadline: recorded now, before the deadline ends the run
    (-70, -5, 175, True),  # an end before EVALUATING (the sample event's): from EVALUATING
], ids=["unknown-early", "unknown-late", "ended-lately", "ended-long-ago", "near-the-deadline", "end-before-entry"])
def test_the_retry_window_of_a_moment_s_refusal(ended, entered, deadline, retried):
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

    def at(minutes):
        return (now + timedelta(minutes=minutes)).isoformat()

    run = {"status_history": {"EVALUATING": at(entered)}, "deadline_at": at(deadline)}
    if ended is not None:
        run[JOB_ENDED_AT] = at(ended)
    assert retrying(run, now) is retried


@pytest.mark.parametrize(("given", "said"), [
    (1764936000000, "2025-12-05T12:00:00.000Z"),
    ("1764936000000", "2025-12-05T12:00:00.000Z"),
    (datetime(2025, 12, 5, 12, 0, tzinfo=UTC), "2025-12-05T12:00:00.000Z"),
    (None, None), ("soon", None), (True, None),
])
def test_the_job_s_end_is_read_from_its_event_or_its_description(given, said):
    assert job_ended_at({"ProcessingEndTime": given}) == said


def test_an_approval_whose_answer_was_lost_before_a_person_promoted_another_run_does_not_stay_approved(
        pipeline, monkeypatch):
    """An hour into the evaluation (a refusal is recorded, not tried again), the challenger's approval takes effect
    but its answer is lost; a person promotes another run before the challenger's transaction. Decided again, the
    challenger is not champion: its package, Approved whatever its record says, goes back to pending."""
    from botocore.exceptions import ReadTimeoutError

    first, second, third = _challenger_better_than(pipeline)
    evaluating_for_an_hour(pipeline, second)
    update = pipeline.sagemaker.update_model_package

    def answer_lost(**request):
        answer = update(**request)
        if request["ModelApprovalStatus"] == "Approved" and not lost:
            lost.append(request["ModelPackageArn"])
            promote_manually(pipeline.clients.runs_table, "team/a.tsv", run_id=third, accuracy=0.70, test_rows=309,
                             test_split="sha256:x", reason="by hand", expected_run_id=first,
                             model_package_arn=pipeline.run(third)["model_package_arn"])
            raise ReadTimeoutError(endpoint_url="https://api.sagemaker")
        return answer

    lost: list[str] = []
    monkeypatch.setattr(pipeline.sagemaker, "update_model_package", answer_lost)

    assert pipeline.evaluation_ended(second)["status"] == "SUCCEEDED"

    assert lost == [pipeline.run(second)["model_package_arn"]]
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == third
    assert pipeline.sagemaker.describe_model_package(ModelPackageName=lost[0])["ModelApprovalStatus"] == (
        "PendingManualApproval")
    assert pipeline.run(second)["registry"]["approval"] == "PendingManualApproval"


def test_a_run_a_deployment_meets_between_its_start_and_its_evaluation_is_evaluated_by_the_code_deployed_now(
    pipeline, monkeypatch, tmp_path
):
    # The run trained with an earlier deployment's training code, whose evaluation script takes no --exit-message;
    # today's start_evaluation passes it: the job must run today's script, which takes what today's request passes.
    import shutil
    import subprocess
    import sys

    from reviewtune.core import code_bundle, names

    earlier = tmp_path / "training_code"
    shutil.copytree(code_bundle.default_code_dir(), earlier, ignore=shutil.ignore_patterns("__pycache__"))
    script = earlier / "evaluate_model_metrics.py"
    source = script.read_text()
    assert '"--exit-message"' in source
    script.write_text(source.replace('"--exit-message"', '"--exit-message-of-another-version"'))
    monkeypatch.setenv("TRAINING_CODE_DIR", str(earlier))
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    monkeypatch.delenv("TRAINING_CODE_DIR")  # a deployment while the run tunes
    pipeline.finish_tuning_well(run_id)
    assert pipeline.tuning_ended(run_id)["status"] == "EVALUATING"

    trained_with = pipeline.run(run_id)["code"]
    now = code_bundle.ensure_uploaded(pipeline.clients.s3, pipeline.settings.bucket)
    assert trained_with["digest"] == code_bundle.digest_of(earlier) != now.digest
    request = pipeline.processing_request(run_id)
    (code,) = [i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"] if i["InputName"] == "code"]
    assert code == now.source_uri
    assert pipeline.sagemaker.tuning[run_id]["request"]["TrainingJobDefinition"]["StaticHyperParameters"][
        "sagemaker_submit_directory"].strip('"') == trained_with["archive_uri"]

    # the script the job gets, read back from S3, gets past its arguments (its inputs are missing here)
    bucket, prefix = names.parse_s3_uri(code)
    folder = tmp_path / "job_code"
    for item in pipeline.clients.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        target = folder / item["Key"][len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(pipeline.clients.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    arguments = request["AppSpecification"]["ContainerArguments"]
    assert "--exit-message" in arguments
    ran = subprocess.run([sys.executable, str(folder / "evaluate_model_metrics.py"), *arguments],
                         capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode != 0 and "unrecognized arguments" not in ran.stderr and "usage:" not in ran.stderr, ran.stderr
