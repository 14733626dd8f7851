"""The run report's plumbing in the functions: start_evaluation's run.json input and the processing request that
reads it, record_results' report_uri and the message line naming the report."""

from __future__ import annotations

import json

import boto3

from reviewtune.core import names
from reviewtune.core.code_bundle import CodeBundle
from reviewtune.core.evaluation import RUN_DIR, processing_job_request, report_input_key, write_report_input
from reviewtune.core.runs import RunsRepository
from tests.functional.test_record_results import EVALUATION, RUN_ID, evaluating_run, processing_event  # noqa: F401
from tests.support.aws import REGION

DATASET = "team/a.tsv"


def test_run_json_carries_the_run_its_trials_and_the_datasets_earlier_runs(stack):
    runs = RunsRepository(boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table))
    runs.create({"run_id": "reviewtune-old", "dataset": DATASET, "status": "SUCCEEDED", "created_at": "2026-10-01T00:00:00Z",
                 "metrics": {"accuracy": {"value": 0.7, "ci95": [0.65, 0.75]}}})
    runs.create({"run_id": "reviewtune-other", "dataset": "team/b.tsv", "status": "SUCCEEDED"})
    run = {"run_id": RUN_ID, "dataset": DATASET, "status": "TUNING", "created_at": "2026-11-01T00:00:00Z",
           "source": {"bucket": stack.bucket, "key": f"incoming/{DATASET}"}, "config": {"strategy": "Bayesian"},
           "data": {"summary": {"rows": {"train": 90}}}, "code": {"source_uri": "s3://b/code/x/src/"},
           "retry_of": "reviewtune-failed"}
    runs.create(run)
    tuning = {"status": "Completed", "trials": [
        {"name": f"{RUN_ID}-001-a", "status": "Completed", "objective": 70.0, "epochs": 2},
        {"name": f"{RUN_ID}-002-b", "status": "Stopped", "objective": 50.0, "epochs": 1},
    ]}

    uri = write_report_input(boto3.client("s3", region_name=REGION), runs, stack.bucket, run, tuning)

    assert uri == names.s3_uri(stack.bucket, report_input_key(RUN_ID)) == f"s3://{stack.bucket}/runs/{RUN_ID}/evaluation/input/run.json"
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=stack.bucket, Key=report_input_key(RUN_ID))
    assert body["ContentType"] == "application/json"
    document = json.loads(body["Body"].read())
    assert document["run_id"] == RUN_ID and document["data"] == run["data"] and "code" not in document
    assert document["retry_of"] == "reviewtune-failed"  # the report says which run's file it tunes again
    assert document["outputs"] == {  # and where the evaluation job's own output lands
        "evaluation": f"s3://{stack.bucket}/runs/{RUN_ID}/evaluation/evaluation.json",
        "report": f"s3://{stack.bucket}/runs/{RUN_ID}/evaluation/report/index.html"}
    assert [(t["name"][-1], t["early_stopped"]) for t in document["tuning"]["trials"]] == [("a", False), ("b", True)]
    assert document["history"] == [{"run_id": "reviewtune-old", "created_at": "2026-10-01T00:00:00Z", "status": "SUCCEEDED",
                                    "test_accuracy": 0.7, "ci95": [0.65, 0.75]}]


def test_processing_request_reads_run_json_and_writes_the_report_into_the_evaluation_output(stack, monkeypatch):
    from reviewtune.core.config import Settings

    settings = Settings.from_env()
    code = CodeBundle("x", "s3://b/code/x/sourcedir.tar.gz", "s3://b/code/x/src/")
    request = processing_job_request(settings, {"run_id": RUN_ID}, "s3://b/m.tar.gz", code)
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    assert inputs["run"]["S3Uri"] == f"s3://{stack.bucket}/runs/{RUN_ID}/evaluation/input/run.json"
    assert inputs["run"]["LocalPath"] == RUN_DIR
    arguments = request["AppSpecification"]["ContainerArguments"]
    [output] = request["ProcessingOutputConfig"]["Outputs"]
    report_dir = arguments[arguments.index("--output-report") + 1]
    assert arguments[arguments.index("--input-run") + 1] == RUN_DIR
    # the report folder lies inside the uploaded evaluation folder, at names.report_key
    relative = report_dir[len(output["S3Output"]["LocalPath"]):]
    assert f"{output['S3Output']['S3Uri']}{relative}/index.html" == names.s3_uri(stack.bucket, names.report_key(RUN_ID))


def test_record_results_stores_and_announces_the_report(stack, evaluating_run, lambda_context):  # noqa: F811
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=stack.bucket, Key=f"runs/{RUN_ID}/evaluation/evaluation.json", Body=json.dumps(EVALUATION).encode()
    )
    evaluating_run.handler(processing_event(stack, "Completed"), lambda_context)
    report = f"s3://{stack.bucket}/runs/{RUN_ID}/evaluation/report/index.html"
    assert stack.run(RUN_ID)["results"]["report_uri"] == report
    [message] = stack.messages()
    assert f"HTML report:         {report}" in message["Message"]
