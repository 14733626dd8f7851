"""The whole pipeline on the local runtime: real handlers, moto, the local SageMaker service, real training."""

from __future__ import annotations

import json
import time

import pytest

from reviewtune.budget import SAMPLE_MODEL, Budget
from reviewtune.core import names
from reviewtune.local.runtime import LocalRuntime
from reviewtune.sample_data import sample_tsv
from tests.support.aws import ROOT
from tests.support.files import with_extra_column

pytestmark = pytest.mark.slow

TINY = {"train_steps_per_epoch": 3, "validation_steps_per_epoch": 2, "train_batch_size": 8, "pooling": "mean"}


def tiny_budget(**overrides) -> dict[str, str]:
    budget = Budget(max_jobs=2, max_parallel_jobs=2, epochs=1, max_seq_length=32, strategy="Random",
                    ranges={"learning_rate": {"min": 5e-5, "max": 2e-4, "scaling": "Logarithmic"}}, static=dict(TINY),
                    model=SAMPLE_MODEL)
    params = budget.parameters()
    # a few training steps learn little, and a handful of test reviews may not tell them from a constant answer: these
    # runs test the pipeline, and the rule that keeps such a model from becoming champion is tested on its own
    params["ChampionMustBeatGuessing"] = "false"
    params.update(overrides)
    return params


class Pipeline:
    def __init__(self, runtime: LocalRuntime):
        self.runtime = runtime
        self.outputs = runtime.stack.outputs
        self.bucket = self.outputs["DataBucketName"]
        sqs, sns = runtime.client("sqs"), runtime.client("sns")
        self.queue = sqs.create_queue(QueueName="e2e-subscriber")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=arn)

    def drop(self, key: str, body: bytes) -> str:
        put = self.runtime.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)
        return names.tuning_job_name("reviewtune", names.object_identity(self.bucket, key, put.get("VersionId"), put.get("ETag")))

    def item(self, run_id: str) -> dict | None:
        from reviewtune.core.runs import from_item

        raw = self.runtime.table(self.outputs["RunsTableName"]).get_item(Key={"run_id": run_id}).get("Item")
        return from_item(raw) if raw else None

    def wait(self, run_id: str, statuses: set[str], timeout: float = 420) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.item(run_id)
            if item and item["status"] in statuses:
                return item
            time.sleep(1)
        raise AssertionError(f"run {run_id} did not reach {statuses}; last item: {self.item(run_id)}")

    def messages(self, count: int = 1, timeout: float = 20) -> list[dict]:
        sqs = self.runtime.client("sqs")
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for m in sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        return got


@pytest.fixture
def pipeline(tmp_path, request):
    params = getattr(request, "param", None) or tiny_budget()
    with LocalRuntime(workdir=tmp_path / "runtime", template=ROOT / "template.yaml", parameters=params, total_cpus=2) as runtime:
        yield Pipeline(runtime)


def test_dropped_file_is_tuned_evaluated_recorded_and_announced(pipeline):
    run_id = pipeline.drop("incoming/e2e/reviews.tsv", sample_tsv(per_class=40))
    item = pipeline.wait(run_id, {"SUCCEEDED", "FAILED", "STOPPED", "REJECTED"})
    assert item["status"] == "SUCCEEDED", item.get("failure_reason")

    trials = item["tuning"]["trials"]
    assert len(trials) == 2 and all(t["status"] == "Completed" for t in trials)
    best = max(trials, key=lambda t: t["objective"])
    assert item["tuning"]["best_training_job"]["objective"] == best["objective"]
    assert item["tuning"]["best_training_job"]["name"] in {t["name"] for t in trials if t["objective"] == best["objective"]}

    s3 = pipeline.runtime.client("s3")
    evaluation = json.loads(s3.get_object(Bucket=pipeline.bucket, Key=f"runs/{run_id}/evaluation/evaluation.json")["Body"].read())
    matrix = evaluation["metrics"]["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == item["data"]["summary"]["rows"]["test"]
    assert evaluation["metrics"]["accuracy"]["value"] == pytest.approx(sum(matrix[i][i] for i in range(3)) / sum(map(sum, matrix)))
    assert item["metrics"]["accuracy"]["value"] == evaluation["metrics"]["accuracy"]["value"]
    assert s3.head_object(Bucket=pipeline.bucket, Key=f"runs/{run_id}/evaluation/confusion_matrix.png")["ContentLength"] > 1000

    [message] = pipeline.messages()
    assert message["MessageAttributes"]["status"]["Value"] == "SUCCEEDED"
    assert f"{evaluation['metrics']['accuracy']['value'] * 100:.2f} %" in message["Subject"]
    assert run_id in message["Message"] and "learning_rate" in message["Message"]

    # The run item is written inside record_results; the router logs the invocation once the handler has returned.
    assert pipeline.runtime.router.wait_idle(60)
    handled = [(i.function, i.outcome.value) for i in pipeline.runtime.router.invocations]
    assert ("StartTuningFunction", "succeeded") in handled
    assert ("StartEvaluationFunction", "succeeded") in handled
    assert ("RecordResultsFunction", "succeeded") in handled


@pytest.mark.parametrize("pipeline", [tiny_budget(MaxJobs="1", MaxParallelJobs="1", StaticHyperparameters=json.dumps({**TINY, "model_name_or_path": "/no/such/model"}))], indirect=True)
def test_failing_training_fails_the_run_and_tells_why(pipeline):
    run_id = pipeline.drop("incoming/broken-model.tsv", sample_tsv(per_class=20))
    item = pipeline.wait(run_id, {"SUCCEEDED", "FAILED", "STOPPED"})
    assert item["status"] == "FAILED"
    assert item["tuning"]["trials"][0]["status"] == "Failed"
    assert item["tuning"]["trials"][0]["failure_reason"]
    [message] = pipeline.messages()
    assert "failed during tuning" in message["Subject"] and run_id in message["Message"]
    assert not pipeline.item(run_id).get("evaluation_job_name")


def test_failing_evaluation_job_fails_the_run(pipeline):
    run_id = pipeline.drop("incoming/eval-breaks.tsv", sample_tsv(per_class=20))
    item = pipeline.wait(run_id, {"TUNING", "FAILED"})
    # The processing job gets its code from code/<digest>/src/; the training jobs use the archive. Remove the script.
    bucket, prefix = names.parse_s3_uri(item["code"]["source_uri"])
    pipeline.runtime.client("s3").delete_object(Bucket=bucket, Key=prefix + "evaluate_model_metrics.py")
    item = pipeline.wait(run_id, {"SUCCEEDED", "FAILED", "STOPPED"})
    assert item["status"] == "FAILED"
    assert item["evaluation_job_name"] == f"{run_id}-eval"
    described = pipeline.runtime.client("sagemaker").describe_processing_job(ProcessingJobName=f"{run_id}-eval")
    assert described["ProcessingJobStatus"] == "Failed"
    assert item["failure_reason"] == described["FailureReason"]
    [message] = pipeline.messages()
    assert "during evaluation" in message["Subject"]


@pytest.mark.parametrize("pipeline", [tiny_budget(MaxJobs="1", MaxParallelJobs="1", Epochs="30", StaticHyperparameters=json.dumps({**TINY, "train_steps_per_epoch": 50}))], indirect=True)
def test_stopping_the_tuning_job_stops_the_run(pipeline):
    run_id = pipeline.drop("incoming/to-stop.tsv", sample_tsv(per_class=20))
    pipeline.wait(run_id, {"TUNING"})
    sagemaker = pipeline.runtime.client("sagemaker")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=run_id)["TrainingJobSummaries"]
        if jobs and jobs[0]["TrainingJobStatus"] == "InProgress":
            break
        time.sleep(0.5)
    sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=run_id)
    item = pipeline.wait(run_id, {"SUCCEEDED", "FAILED", "STOPPED"}, timeout=120)
    assert item["status"] == "STOPPED"
    assert sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=run_id)["HyperParameterTuningJobStatus"] == "Stopped"
    assert item["tuning"]["trials"][0]["status"] == "Stopped"
    [message] = pipeline.messages()
    assert "stopped" in message["Subject"]


# 120 reviews leave 6 test reviews to compare the two models on: the decision is made on them here
@pytest.mark.parametrize("pipeline", [tiny_budget(ChampionMinComparedReviews="1")], indirect=True)
def test_second_drop_of_a_dataset_warm_starts_registers_and_decides_the_champion(pipeline, capsys):
    from reviewtune.cli import main
    from reviewtune.core.champion import get_champion, mcnemar_p
    from reviewtune.core.registry import package_group_name

    body = sample_tsv(per_class=40)
    first = pipeline.drop("incoming/e2e/lifecycle.tsv", body)
    one = pipeline.wait(first, {"SUCCEEDED", "FAILED", "STOPPED", "REJECTED"})
    assert one["status"] == "SUCCEEDED", one.get("failure_reason")
    [first_message] = pipeline.messages()
    # A re-export with one more column: other content (so not DUPLICATE), the same splits.
    second = pipeline.drop("incoming/e2e/lifecycle.tsv", with_extra_column(body))
    two = pipeline.wait(second, {"SUCCEEDED", "FAILED", "STOPPED", "REJECTED"})
    assert two["status"] == "SUCCEEDED", two.get("failure_reason")
    [second_message] = pipeline.messages()

    sagemaker = pipeline.runtime.client("sagemaker")
    described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=second)
    assert described["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": first}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    assert "WarmStartConfig" not in sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=first)
    assert two["config"]["warm_start"]["channels"]["train"] == f"s3://{pipeline.bucket}/runs/{first}/data/train/"

    # Both models evaluated by the second run's evaluation job, on the second test split.
    job = sagemaker.describe_processing_job(ProcessingJobName=f"{second}-eval")
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in job["ProcessingInputs"]}
    assert inputs["champion-model"] == one["tuning"]["best_training_job"]["model_uri"]
    assert inputs["champion-train-hashes"] == one["data"]["train_hashes"]
    assert inputs["data"] == f"s3://{pipeline.bucket}/runs/{second}/data/test/"
    key = f"runs/{second}/evaluation/evaluation.json"
    evaluation = json.loads(pipeline.runtime.client("s3").get_object(Bucket=pipeline.bucket, Key=key)["Body"].read())
    comparison = evaluation["comparison"]
    test_rows = two["data"]["summary"]["rows"]["test"]
    # The same split as the first run's, whose leakage removal left no training review in it: nothing left out,
    # and the champion scores on it exactly what its own evaluation measured.
    assert (comparison["champion_run_id"], comparison["rows_compared"], comparison["rows_left_out"]) == (first, test_rows, 0)
    assert comparison["overlap_checked"] is True
    assert comparison["champion_accuracy"] == pytest.approx(one["results"]["test_accuracy"])
    assert comparison["challenger_accuracy"] == pytest.approx(two["results"]["test_accuracy"])

    group = package_group_name("e2e/lifecycle.tsv", scope=pipeline.bucket)  # the stack's own group of the dataset
    packages = sagemaker.list_model_packages(ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Ascending")[
        "ModelPackageSummaryList"
    ]
    assert [p["ModelPackageArn"] for p in packages] == [one["model_package_arn"], two["model_package_arn"]]
    # the reviews only one model got right, each way, differ by what the two got right
    only = comparison["challenger_only_correct"], comparison["champion_only_correct"]
    assert only[0] - only[1] == comparison["challenger_correct"] - comparison["champion_correct"]
    assert comparison["challenger_correct"] == round(comparison["challenger_accuracy"] * test_rows)
    gain = (comparison["challenger_accuracy"] - comparison["champion_accuracy"]) * 100
    promoted = round(gain, 9) >= 0.5 and gain > 0 and mcnemar_p(*only) <= 0.05
    assert two["champion"]["decision"] == ("promoted" if promoted else "kept")
    # one Approved package per dataset, the champion's (the one replaced goes back to pending)
    assert [p["ModelApprovalStatus"] for p in packages] == (
        ["PendingManualApproval", "Approved"] if promoted else ["Approved", "PendingManualApproval"])
    table = pipeline.runtime.table(pipeline.outputs["RunsTableName"])
    champion = get_champion(table, "e2e/lifecycle.tsv")
    assert champion.run_id == (second if promoted else first)
    assert champion.test_split == f"sha256:{one['data']['sha256']['test']}" == two["champion"]["test_split"]

    assert "Warm start:          none (no earlier succeeded run of the dataset)" in first_message["Message"]
    assert "Champion:            first champion" in first_message["Message"]
    assert f"Warm start:          IdenticalDataAndAlgorithm from {first}" in second_message["Message"]
    assert ("Champion:            new champion" if promoted else "Champion:            champion kept") in second_message["Message"]
    assert f"on the same {test_rows} test reviews" in second_message["Message"]
    assert f"Compared with:       {first} on {test_rows} test reviews of this run (0 left out" in second_message["Message"]
    assert "billable seconds" in second_message["Message"] and two["tuning"]["cost"]["billable_seconds"] > 0

    # promote overrides: the run that is not champion becomes champion, through the CLI on the local runtime.
    loser = first if promoted else second
    capsys.readouterr()
    workdir = str(pipeline.runtime.workdir)
    assert main(["--workdir", workdir, "promote", loser, "--reason", "e2e override", "--target", "local", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["run_id"] == loser and done["previous_champion"] == champion.run_id
    assert get_champion(table, "e2e/lifecycle.tsv").run_id == loser
    statuses = [sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"])["ModelApprovalStatus"] for p in packages]
    assert statuses == (["Approved", "PendingManualApproval"] if promoted else ["PendingManualApproval", "Approved"])
    assert done["previous_champion_approval"] == "PendingManualApproval"
    assert main(["--workdir", workdir, "champion", "--dataset", "e2e/lifecycle.tsv", "--target", "local", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run_id"] == loser and shown["history"][-1]["why"] == "promoted manually: e2e override"
    assert [d["run_id"] for d in shown["decisions"]] == [second, first]
