"""`reviewtune runs retry` against moto (the stack found through CloudFormation outputs as on AWS): the file of a run
that ended without a result is copied onto its key as a new version, the output names the run that version starts,
the retry shows on the run; what cannot be retried gets a clear error, the others are still retried.
"""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.console import commands
from reviewtune.core import names, retries
from reviewtune.core.runs import RunsRepository
from tests.cli.test_runs_commands import STACK, deployed, put_run, run_json  # noqa: F401  (deployed: a fixture)

BODY = b"sentiment\treview_body\n1\tgood\n"


@pytest.fixture
def stack(deployed):  # noqa: F811
    return deployed


def stack_with_parameters(stack, name: str, **parameters: str) -> None:
    """Another CloudFormation stack on the same table and bucket, deployed with these parameters."""
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps({
        "Parameters": {key: {"Type": "String"} for key in parameters},
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"RunsTableName": {"Value": stack.runs_table}, "DataBucketName": {"Value": stack.bucket}},
    }), Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()])


def failed_run_of_a_file(stack, run_id: str, dataset: str) -> str:
    """A FAILED run whose source is a real object version; its version id."""
    key = f"incoming/{dataset}"
    version = boto3.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=BODY, ContentType="text/tab-separated-values")["VersionId"]
    put_run(stack, run_id, dataset, "FAILED", 1)
    RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).update(
        run_id, source={"bucket": stack.bucket, "key": key, "version_id": version})
    return version


def test_retry_copies_the_version_names_the_new_run_and_shows_on_the_run(stack, capsys):
    first = failed_run_of_a_file(stack, "reviewtune-f1", "team-a/r.tsv")

    [done] = run_json(capsys, "runs", "retry", "reviewtune-f1", "--reason", "capacity is back")

    s3 = boto3.client("s3")
    latest = s3.head_object(Bucket=stack.bucket, Key="incoming/team-a/r.tsv")
    assert done["version_id"] == latest["VersionId"] != first
    assert latest["Metadata"] == {retries.RETRY_METADATA: "reviewtune-f1"}
    assert latest["ContentType"] == "text/tab-separated-values"
    identity = names.object_identity(stack.bucket, "incoming/team-a/r.tsv", latest["VersionId"], latest["ETag"])
    assert done["new_run_id"] == names.tuning_job_name("reviewtune", identity)  # the run start_tuning will make
    who = boto3.client("sts").get_caller_identity()["Arn"]
    assert done["by"] == who and done["reason"] == "capacity is back"

    assert main(["runs", "show", "reviewtune-f1", "--stack", STACK]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"retried as {done['new_run_id']} (version {done['version_id']})" in shown
    assert f"by {who}: capacity is back" in shown
    assert f"retried as {done['new_run_id']} by {who}" in shown  # the timeline's row
    assert main(["runs", "list", "--stack", STACK]) == 0
    assert "FAILED, retried" in capsys.readouterr().out
    put_run(stack, done["new_run_id"], "team-a/r.tsv", "TUNING", 2)  # as start_tuning records the copy's run
    RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).update(done["new_run_id"], retry_of="reviewtune-f1")
    assert main(["runs", "show", done["new_run_id"], "--stack", STACK]) == 0
    assert "retry of reviewtune-f1" in " ".join(capsys.readouterr().out.split())


def test_retry_prints_what_it_did_and_reports_each_refusal_while_retrying_the_others(stack, capsys):
    failed_run_of_a_file(stack, "reviewtune-f2", "team-b/r.tsv")
    put_run(stack, "reviewtune-s2", "team-c/r.tsv", "SUCCEEDED", 2, 0.7)

    code = main(["runs", "retry", "reviewtune-s2", "reviewtune-f2", "--reason", "again", "--stack", STACK])

    assert code == 1
    out, err = capsys.readouterr()
    assert err.strip() == "error: run reviewtune-s2 SUCCEEDED: its file would only end DUPLICATE of it"
    out = " ".join(out.split())
    retried = RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).get("reviewtune-f2")["retried"]
    assert (f"retry of reviewtune-f2: its file copied onto s3://{stack.bucket}/incoming/team-b/r.tsv as a new object version "
            f"{retried['version_id']}; its run is {retried['new_run_id']}") in out


def test_a_run_recorded_without_its_file_s_place_is_said_to_be_so_not_missing(stack, capsys):
    boto3.resource("dynamodb").Table(stack.runs_table).put_item(Item={
        "run_id": "reviewtune-old2", "status": "FAILED", "dataset": "a/r.tsv", "created_at": "2026-11-01T12:00:00Z"})
    capsys.readouterr()
    assert main(["runs", "retry", "reviewtune-old2", "--reason", "again", "--stack", STACK]) == 1
    assert " ".join(capsys.readouterr().err.split()) == (
        "error: run reviewtune-old2 does not record which file it read, so it cannot be retried: drop the file "
        "again (reviewtune drop FILE)")


def test_follow_takes_one_run(stack, capsys):
    with pytest.raises(SystemExit, match="--follow follows one run"):
        main(["runs", "retry", "reviewtune-a", "reviewtune-b", "--reason", "x", "--follow", "--stack", STACK])


def start_tuning_of_the_copy(stack, status: str, done: threading.Event) -> threading.Thread:
    """What the copy's Object Created event does on AWS, in the background: once the copy is in S3, its run is
    written under the dataset (as start_tuning names and records it), then ended in ``status``."""

    def run() -> None:
        s3 = boto3.client("s3")
        for _ in range(100):
            versions = s3.list_object_versions(Bucket=stack.bucket, Prefix="incoming/team-f/").get("Versions", [])
            copies = [v for v in versions if retries.RETRY_METADATA in s3.head_object(
                Bucket=stack.bucket, Key=v["Key"], VersionId=v["VersionId"])["Metadata"]]
            if copies:
                break
            time.sleep(0.1)
        [copy] = copies
        identity = names.object_identity(stack.bucket, copy["Key"], copy["VersionId"], copy["ETag"])
        new_run_id = names.tuning_job_name("reviewtune", identity)
        put_run(stack, new_run_id, "team-f/r.tsv", "TUNING", 5)
        runs = RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table))
        runs.update(new_run_id, retry_of="reviewtune-f9", source={
            "bucket": stack.bucket, "key": copy["Key"], "version_id": copy["VersionId"], "etag": copy["ETag"]})
        time.sleep(3)  # find_run looks every second: the command sees the run in progress first
        runs.table.update_item(Key={"run_id": new_run_id}, UpdateExpression="SET #s = :s",
                               ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": status})
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("outcome, code", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_follow_shows_the_new_run_until_it_ends_and_exits_by_its_outcome(stack, capsys, outcome, code):
    failed_run_of_a_file(stack, "reviewtune-f9", "team-f/r.tsv")
    ended = threading.Event()
    thread = start_tuning_of_the_copy(stack, outcome, ended)

    assert main(["runs", "retry", "reviewtune-f9", "--reason", "quota raised", "--follow", "--timeout", "60",
                 "--stack", STACK]) == code

    thread.join(5)
    assert ended.is_set()
    out = " ".join(capsys.readouterr().out.split())
    new_run_id = RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).get("reviewtune-f9")[
        "retried"]["new_run_id"]
    assert f"its run is {new_run_id}" in out
    assert f"run {new_run_id}: TUNING" in out and f"run {new_run_id}: {outcome}" in out
    assert "retry of reviewtune-f9" in out  # the new run's view, printed once it ended
    # and what a person can do next with it: tune the file again; nothing for a run without a model package
    retry = f"Next: to tune its file again once the cause is fixed: `reviewtune runs retry {new_run_id} --reason TEXT`"
    assert out.endswith(retry) if outcome == "FAILED" else "Next:" not in out


def test_follow_with_json_prints_the_retry_and_the_new_runs_record(stack, capsys):
    failed_run_of_a_file(stack, "reviewtune-f9", "team-f/r.tsv")
    ended = threading.Event()
    start_tuning_of_the_copy(stack, "SUCCEEDED", ended).join(0)

    assert main(["runs", "retry", "reviewtune-f9", "--reason", "again", "--follow", "--json", "--timeout", "60",
                 "--stack", STACK]) == 0

    [done] = json.loads(capsys.readouterr().out)  # stdout holds only the JSON; the live lines go to stderr
    assert done["outcome"]["run_id"] == done["new_run_id"] and done["outcome"]["status"] == "SUCCEEDED"
    assert done["outcome"]["retry_of"] == "reviewtune-f9"


def test_a_retry_whose_record_is_refused_after_the_copy_says_which_run_the_copy_starts_and_goes_on(
    stack, capsys, monkeypatch
):
    from tests.support.faults import client_error, refused_for_one_run

    failed_run_of_a_file(stack, "reviewtune-f1", "team-a/r.tsv")
    failed_run_of_a_file(stack, "reviewtune-f2", "team-b/r.tsv")
    throttled = client_error("ProvisionedThroughputExceededException", "slow down", "UpdateItem")
    monkeypatch.setattr(RunsRepository, "record_once",
                        refused_for_one_run(RunsRepository.record_once, "reviewtune-f1", throttled))
    capsys.readouterr()

    code = main(["runs", "retry", "", "reviewtune-f1", "reviewtune-f2", "--reason", "quota raised", "--stack", STACK])

    assert code == 1
    out, err = capsys.readouterr()
    err = " ".join(err.split())
    assert "error: an empty run id" in err
    assert ("error: the file of run reviewtune-f1 was copied (s3://" in err and "it starts run reviewtune-" in err
            and "but recording the retry on reviewtune-f1 failed (ProvisionedThroughputExceededException" in err)
    assert "retry of reviewtune-f2: its file copied" in " ".join(out.split())
    assert "retried" in RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).get("reviewtune-f2")


def test_the_new_run_is_named_with_the_stack_s_job_name_prefix(stack, capsys):
    """A stack whose JobNamePrefix changed since the run (``reviewtune-`` then, ``rt`` now): the run id printed and
    recorded is the one start_tuning gives the copy, under the stack's prefix as deployed."""
    failed_run_of_a_file(stack, "reviewtune-f1", "team-a/r.tsv")
    stack_with_parameters(stack, "reviewtune-renamed", JobNamePrefix="rt")
    capsys.readouterr()

    assert main(["runs", "retry", "reviewtune-f1", "--reason", "role fixed", "--stack", "reviewtune-renamed",
                 "--json"]) == 0

    [done] = json.loads(capsys.readouterr().out)
    assert done["new_run_id"].startswith("rt-") and names.TUNING_JOB_NAME_PATTERN.match(done["new_run_id"])
    recorded = RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).get("reviewtune-f1")["retried"]
    assert recorded["new_run_id"] == done["new_run_id"]


def test_the_retry_check_looks_back_as_far_as_the_stack_s_sweep(stack, capsys, monkeypatch):
    """A retry whose new run never started blocks a retry of the same content for the stack's MissedDropWindowDays
    (the days within which the reconciler still starts such a copy), not a fixed week."""
    failed_run_of_a_file(stack, "reviewtune-f1", "team-a/r.tsv")
    stack_with_parameters(stack, "reviewtune-long-sweep", MissedDropWindowDays="30")
    asked = []
    monkeypatch.setattr(commands, "retry_run", lambda *args, **kwargs: asked.append(kwargs["sweep_days"]) or
                        retries.retry_run(*args, **kwargs))

    assert main(["runs", "retry", "reviewtune-f1", "--reason", "x", "--stack", "reviewtune-long-sweep", "--json"]) == 0
    assert main(["runs", "retry", "reviewtune-f1", "--reason", "x", "--stack", STACK, "--json"]) == 1  # retried already
    assert asked == [30.0, 7.0]
