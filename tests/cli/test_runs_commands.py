"""`reviewtune runs ...` and `reviewtune drop` against moto: run items written directly, the stack found through
CloudFormation outputs as on AWS, tables by default and --json parsed back."""

from __future__ import annotations

import functools
import json
import re
import time
import unicodedata
from datetime import datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber

from reviewtune.cli import main
from reviewtune.console import commands, follow, queries, views
from reviewtune.console.target import default_stack_name
from reviewtune.core import names
from reviewtune.core.runs import RunsRepository, RunStatus
from tests.support.aws import REGION, create_stack
from tests.unit.test_console_text import rendered

STACK = "reviewtune-test"


@pytest.fixture
def deployed(moto_account):
    stack = create_stack()
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"RunsTableName": {"Value": stack.runs_table}, "DataBucketName": {"Value": stack.bucket}},
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    yield stack


def put_run(stack, run_id: str, dataset: str, status: str, minutes: int, accuracy: float | None = None) -> dict:
    item = {
        "run_id": run_id,
        "dataset": dataset,
        "status": status,
        "created_at": (datetime(2026, 11, 1, 12, 0) + timedelta(minutes=minutes)).isoformat() + "Z",
        "source": {"bucket": stack.bucket, "key": f"incoming/{dataset}", "version_id": "v1"},
        "config": {"strategy": "Bayesian", "max_jobs": 4, "max_parallel_jobs": 1, "epochs": 2, "model_name": "m"},
        "data": {"summary": {"rows": {"train": 90, "validation": 5, "test": 5}}},
    }
    if accuracy is not None:
        item["tuning"] = {"best_training_job": {"name": f"{run_id}-001-aaaaaaaa", "objective": 71.5,
                                                "tuned_hyperparameters": {"learning_rate": "8.4e-05"}}}
        item["metrics"] = {"accuracy": {"value": accuracy, "ci95": [accuracy - 0.05, accuracy + 0.04]},
                           "macro_f1": {"value": 0.7},
                           "per_class": {"-1": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 2}}}
        item["results"] = {"report_uri": names.s3_uri(stack.bucket, names.report_key(run_id))}
    if status == "FAILED":
        item["failure_reason"] = "AlgorithmError: out of memory"
    RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).create(item)
    return item


def run_json(capsys, *argv: str):
    capsys.readouterr()
    assert main([*argv, "--stack", STACK, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_is_newest_first_across_statuses_and_filters_by_dataset_and_status(deployed, capsys):
    put_run(deployed, "reviewtune-a1", "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    put_run(deployed, "reviewtune-b1", "team-b/r.tsv", "FAILED", 2)
    put_run(deployed, "reviewtune-a2", "team-a/r.tsv", "TUNING", 3)
    put_run(deployed, "reviewtune-a3", "team-a/r.tsv", "SUCCEEDED", 4, 0.74)

    assert [r["run_id"] for r in run_json(capsys, "runs", "list")] == [
        "reviewtune-a3", "reviewtune-a2", "reviewtune-b1", "reviewtune-a1"]
    assert [r["run_id"] for r in run_json(capsys, "runs", "list", "--limit", "2")] == ["reviewtune-a3", "reviewtune-a2"]
    assert [r["run_id"] for r in run_json(capsys, "runs", "list", "--dataset", "team-a/r.tsv")] == [
        "reviewtune-a3", "reviewtune-a2", "reviewtune-a1"]
    assert [r["run_id"] for r in run_json(capsys, "runs", "list", "--status", "SUCCEEDED")] == [
        "reviewtune-a3", "reviewtune-a1"]
    assert [r["run_id"] for r in run_json(capsys, "runs", "list", "--dataset", "team-a/r.tsv", "--status", "TUNING")] == [
        "reviewtune-a2"]

    assert main(["runs", "list", "--stack", STACK]) == 0
    shown = capsys.readouterr()
    table = shown.out
    assert "reviewtune-a3" in table and "74.00" in table and f"stack {STACK}" in table
    assert "there are more" not in shown.err
    assert main(["runs", "list", "--limit", "3", "--stack", STACK]) == 0  # one more than shown: said
    assert "the newest 3 shown; there are more: `--limit N` shows N" in capsys.readouterr().err
    assert main(["runs", "list", "--limit", "4", "--stack", STACK]) == 0  # all four: nothing to say
    assert "there are more" not in capsys.readouterr().err
    assert main(["runs", "list", "--status", "SUCCEEDED", "--stack", STACK]) == 0
    assert "SUCCEEDED runs, newest first" in " ".join(capsys.readouterr().out.split())


def test_a_folder_given_as_the_dataset_lists_the_runs_of_every_dataset_under_it(deployed, capsys):
    """`drop FILE --dataset team-a` uploads to incoming/team-a/FILE: `runs list --dataset team-a` then finds its runs,
    deleted files' too; a folder nothing was dropped into says what a dataset is."""
    put_run(deployed, "reviewtune-a1", "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    put_run(deployed, "reviewtune-a2", "team-a/more/s.csv", "FAILED", 3)
    put_run(deployed, "reviewtune-a3", "team-a/gone.tsv", "FAILED", 2)
    put_run(deployed, "reviewtune-b1", "team-ab/r.tsv", "SUCCEEDED", 4, 0.71)
    s3 = boto3.client("s3")
    for key in ("incoming/team-a/", "incoming/team-a/r.tsv", "incoming/team-a/more/s.csv", "incoming/team-a/gone.tsv",
                "incoming/team-ab/r.tsv"):
        s3.put_object(Bucket=deployed.bucket, Key=key, Body=b"x")
    s3.delete_object(Bucket=deployed.bucket, Key="incoming/team-a/gone.tsv")  # its versions are kept

    for typed in ("team-a", "team-a/"):
        assert [r["run_id"] for r in run_json(capsys, "runs", "list", "--dataset", typed)] == [
            "reviewtune-a2", "reviewtune-a3", "reviewtune-a1"]
    assert [r["run_id"] for r in run_json(capsys, "runs", "list", "--dataset", "team-a", "--status", "FAILED",
                                          "--limit", "1")] == ["reviewtune-a2"]
    assert main(["runs", "list", "--dataset", "team-a", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Runs of the 3 datasets under team-a/, newest first" in out and "reviewtune-b1" not in out

    assert main(["runs", "list", "--dataset", "team-c", "--stack", STACK, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == []
    err = " ".join(err.split())
    assert "no runs of dataset 'team-c', and no files under incoming/team-c/: a dataset is a file's path" in err
    assert "`reviewtune audit --dataset team-c` lists every file of a folder" in err
    assert main(["runs", "list", "--dataset", "team-a/r.tsv", "--stack", STACK]) == 0
    assert "no runs of dataset" not in capsys.readouterr().err
    # a dataset with runs, none in the status asked for: said so, not called a folder without files
    assert main(["runs", "list", "--dataset", "team-a/r.tsv", "--status", "TUNING", "--stack", STACK]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err == ("no TUNING runs of dataset 'team-a/r.tsv'; `reviewtune runs list --dataset team-a/r.tsv` lists its "
                   "runs of every status")


def test_a_folder_whose_keys_are_written_decomposed_lists_its_runs_however_it_is_typed(deployed, capsys):
    """A file dropped from macOS keeps its decomposed accents in its key; its run records the dataset composed."""
    import unicodedata

    put_run(deployed, "reviewtune-a1", "café/r.tsv", "SUCCEEDED", 1, 0.70)
    boto3.client("s3").put_object(Bucket=deployed.bucket, Key=f"incoming/{unicodedata.normalize('NFD', 'café')}/r.tsv",
                                  Body=b"x")

    for typed in ("café", unicodedata.normalize("NFD", "café"), "café/"):
        assert [r["run_id"] for r in run_json(capsys, "runs", "list", "--dataset", typed)] == ["reviewtune-a1"]


@pytest.mark.parametrize("folder", ["exports[/old]", "exports [old]", "team [bold]a"])
def test_a_folder_whose_name_looks_like_markup_is_named_as_it_is(deployed, capsys, folder):
    """The title names the folder: as text ('exports[/old]' raised rich's MarkupError, '[bold]' turned bold)."""
    put_run(deployed, "reviewtune-m1", f"{folder}/r.tsv", "FAILED", 1)
    boto3.client("s3").put_object(Bucket=deployed.bucket, Key=f"incoming/{folder}/r.tsv", Body=b"x")
    capsys.readouterr()
    assert main(["runs", "list", "--dataset", folder, "--stack", STACK]) == 0
    assert f"under {folder}/, newest first" in " ".join(capsys.readouterr().out.split())


def test_a_prefix_too_short_to_look_up_says_how_long_one_must_be(deployed):  # noqa: F811
    put_run(deployed, "reviewtune-5e7159cbd505a81a", "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    with pytest.raises(SystemExit) as raised:
        main(["runs", "show", "5e7", "--stack", STACK])
    assert str(raised.value.code).endswith("(a prefix of a run's id needs 4 or more characters)")
    assert main(["runs", "show", "5e71", "--stack", STACK]) == 0


def test_a_folder_with_more_datasets_than_are_read_says_it_shows_the_first(deployed, capsys, monkeypatch):
    monkeypatch.setattr(queries, "MAX_FOLDER_DATASETS", 2)
    for n in range(3):
        put_run(deployed, f"reviewtune-c{n}", f"team-c/{n}.tsv", "FAILED", n)
        boto3.client("s3").put_object(Bucket=deployed.bucket, Key=f"incoming/team-c/{n}.tsv", Body=b"x")

    assert main(["runs", "list", "--dataset", "team-c", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Runs of the first 2 datasets under team-c/" in out
    assert "reviewtune-c1" in out and "reviewtune-c2" not in out


def test_a_dataset_typed_with_decomposed_accents_lists_its_runs(deployed, capsys):
    put_run(deployed, "reviewtune-e1", "équipe/avis.tsv", "SUCCEEDED", 1, 0.70)  # recorded composed (NFC)
    typed = unicodedata.normalize("NFD", "équipe/avis.tsv")
    assert [r["run_id"] for r in run_json(capsys, "runs", "list", "--dataset", typed)] == ["reviewtune-e1"]


def test_show_prints_the_run_and_json_round_trips(deployed, capsys):
    put_run(deployed, "reviewtune-a1", "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    put_run(deployed, "reviewtune-b1", "team-b/r.tsv", "FAILED", 2)

    shown = run_json(capsys, "runs", "show", "reviewtune-a1")
    assert shown["metrics"]["accuracy"]["value"] == 0.70 and shown["data"]["summary"]["rows"]["train"] == 90

    assert main(["runs", "show", "reviewtune-a1", "--stack", STACK]) == 0
    text = capsys.readouterr().out
    for expected in ("70.00 %", "(95 % CI 65.00-74.00 %)", "learning_rate=8.40e-05", "71.50 %", "negative (-1)",
                     names.report_key("reviewtune-a1"), "Timeline"):
        assert expected in text
    logs = " ".join(text.split())  # on AWS: the CloudWatch Logs commands of its jobs
    assert ("Logs: `reviewtune runs logs reviewtune-a1` (its jobs); trials `aws logs tail /aws/sagemaker/TrainingJobs --log-stream-name-prefix reviewtune-a1`; "
            "evaluation `aws logs tail /aws/sagemaker/ProcessingJobs --log-stream-name-prefix reviewtune-a1-eval`") in logs
    assert main(["runs", "show", "reviewtune-b1", "--stack", STACK]) == 0
    failed = capsys.readouterr().out
    assert "AlgorithmError: out of memory" in failed
    logs = " ".join(failed.split())  # failed in tuning: its trials' logs, no evaluation job's
    assert "trials `aws logs tail /aws/sagemaker/TrainingJobs" in logs and "ProcessingJobs" not in logs

    with pytest.raises(SystemExit, match="no run 'reviewtune-zz'"):
        main(["runs", "show", "reviewtune-zz", "--stack", STACK])


def test_show_says_which_job_made_after_the_run_ended_is_still_to_stop(deployed, capsys):
    put_run(deployed, "reviewtune-b1", "team-b/r.tsv", "FAILED", 2)
    put_run(deployed, "reviewtune-b2", "team-b/r.tsv", "FAILED", 3)
    runs = RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table))
    runs.update("reviewtune-b1", evaluation_job_to_stop="reviewtune-b1-eval")

    assert main(["runs", "show", "reviewtune-b1", "--stack", STACK]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "job to stop" in text and "evaluation job reviewtune-b1-eval: made as the run ended" in text
    assert main(["runs", "show", "reviewtune-b2", "--stack", STACK]) == 0
    assert "job to stop" not in capsys.readouterr().out


def test_show_of_a_failed_run_says_why_its_trials_failed(deployed, capsys):
    put_run(deployed, "reviewtune-f3", "team-f/r.tsv", "FAILED", 2)
    trials = [{"name": f"reviewtune-f3-00{i}-abcdef0{i}", "status": "Failed",
               "failure_reason": f"AlgorithmError: CUDA out of memory in trial {i}"} for i in range(1, 8)]
    RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table)).update(
        "reviewtune-f3", failure_reason="No training job succeeded after 5 attempts", tuning={"trials": trials})
    assert main(["runs", "show", "reviewtune-f3", "--stack", STACK]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "failed trials 001-abcdef01: AlgorithmError: CUDA out of memory in trial 1" in text
    assert "005-abcdef05: AlgorithmError: CUDA out of memory in trial 5" in text and "trial 6" not in text
    assert "and 2 more: `reviewtune runs trials reviewtune-f3`" in text
    put_run(deployed, "reviewtune-f4", "team-f/r.tsv", "FAILED", 3)
    assert main(["runs", "show", "reviewtune-f4", "--stack", STACK]) == 0
    assert "failed trials" not in capsys.readouterr().out


def test_report_downloads_the_html_and_says_when_there_is_none(deployed, capsys, tmp_path):
    put_run(deployed, "reviewtune-a1", "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    put_run(deployed, "reviewtune-a2", "team-a/r.tsv", "TUNING", 2)
    boto3.client("s3").put_object(Bucket=deployed.bucket, Key=names.report_key("reviewtune-a1"),
                                  Body=b"<html>report</html>", ContentType="text/html")

    got = run_json(capsys, "runs", "report", "reviewtune-a1", "--out", str(tmp_path / "reports"))
    assert (tmp_path / "reports" / "reviewtune-a1.html").read_bytes() == b"<html>report</html>"
    assert got == {"run_id": "reviewtune-a1", "path": str(tmp_path / "reports" / "reviewtune-a1.html")}
    with pytest.raises(SystemExit, match=r"no report at s3://.*reviewtune-a2/evaluation/report/index.html .*status "
                                         r"TUNING: its evaluation job writes the report, and this run did not get"):
        main(["runs", "report", "reviewtune-a2", "--stack", STACK, "--out", str(tmp_path)])


def test_drop_uploads_under_incoming_with_a_content_type(deployed, capsys, tmp_path):
    data = tmp_path / "reviews.tsv"
    data.write_text("sentiment\treview_body\n1\tgood\n")
    s3 = boto3.client("s3")

    got = run_json(capsys, "drop", str(data), "--dataset", "team-a")
    assert got["key"] == "incoming/team-a/reviews.tsv" and got["content_type"] == "text/tab-separated-values"
    head = s3.head_object(Bucket=deployed.bucket, Key="incoming/team-a/reviews.tsv")
    assert head["ContentType"] == "text/tab-separated-values" and head["VersionId"] == got["version_id"]
    assert run_json(capsys, "drop", str(data))["key"] == "incoming/reviews.tsv"
    assert run_json(capsys, "drop", str(data), "--dataset", "team-b/all.tsv")["key"] == "incoming/team-b/all.tsv"

    for pasted, meant in (("team-b/all.tsv ", "team-b/all.tsv"), (" team-b/all.tsv", "team-b/all.tsv"),
                          ("team-b/all.tsv/ ", "team-b/all.tsv"), ("team c /\tall.tsv", "team c/all.tsv"),
                          ("team c ", "team c")):
        with pytest.raises(SystemExit, match=re.escape(f"the dataset {pasted!r} has white space around its name or a "
                                                       f"folder's, which would make it another dataset: give {meant!r}")):
            main(["drop", str(data), "--dataset", pasted, "--stack", STACK])
    assert run_json(capsys, "drop", str(data), "--dataset", "team c")["key"] == "incoming/team c/reviews.tsv"
    padded = tmp_path / "reviews.tsv "
    padded.write_text("sentiment\treview_body\n1\tgood\n")
    with pytest.raises(SystemExit, match=re.escape("the file's name 'reviews.tsv ' has white space around it, which would "
                                                   "make it another dataset: rename it, or give the dataset with "
                                                   "--dataset 'reviews.tsv'")):
        main(["drop", str(padded), "--stack", STACK])
    with pytest.raises(SystemExit, match=re.escape("the file's name 'reviews.tsv ' has white space around it, which "
                                                   "would make it another dataset: rename it, or give the dataset with "
                                                   "--dataset 'team-a/reviews.tsv'")):
        main(["drop", str(padded), "--dataset", "team-a", "--stack", STACK])  # a folder: the file's name joins it
    with pytest.raises(SystemExit, match=r"the dataset 'team-a/ /r.tsv' .* give 'team-a/r.tsv' if"):
        main(["drop", str(data), "--dataset", "team-a/ /r.tsv", "--stack", STACK])
    with pytest.raises(ValueError, match=r"the dataset ' / ' has white space around its name or a folder's, "
                                         r"which would make it another dataset$"):  # nothing to suggest
        queries.drop_key(data, " / ")  # (the command line refuses a blank --dataset before)
    # a dataset's key pasted (`runs show` prints s3://bucket/incoming/team-a/r.tsv): incoming/incoming/... is not meant
    with pytest.raises(SystemExit, match=re.escape("the dataset 'incoming/team-a/r.tsv' starts with incoming/, where "
                                                   "every dataset is: it would make the dataset "
                                                   "incoming/incoming/team-a/r.tsv; give 'team-a/r.tsv' for "
                                                   "incoming/team-a/r.tsv")):
        main(["drop", str(data), "--dataset", "incoming/team-a/r.tsv", "--stack", STACK])
    with pytest.raises(SystemExit, match=re.escape("the dataset 'incoming' is incoming/, where every dataset is")):
        main(["drop", str(data), "--dataset", "/incoming/", "--stack", STACK])
    assert [v["Key"] for v in s3.list_object_versions(Bucket=deployed.bucket).get("Versions", [])
            if v["Key"].strip() != v["Key"] or "/ " in v["Key"] or " /" in v["Key"]
            or v["Key"].startswith("incoming/incoming")] == []  # none was uploaded

    bad = tmp_path / "reviews.txt"
    bad.write_text("x")
    with pytest.raises(SystemExit, match=r"only \.tsv, \.csv, \.tsv\.gz, \.csv\.gz .* files are accepted"):
        main(["drop", str(bad), "--stack", STACK])


def test_drop_names_the_run_its_file_will_have_where_the_stack_says_its_prefix(deployed, capsys, tmp_path):
    from reviewtune.core import tuning

    template = {
        "Parameters": {"JobNamePrefix": {"Type": "String", "Default": "ops"}},
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"RunsTableName": {"Value": deployed.runs_table}, "DataBucketName": {"Value": deployed.bucket}},
    }
    boto3.client("cloudformation").create_stack(StackName="reviewtune-ops", TemplateBody=json.dumps(template))
    data = tmp_path / "reviews.tsv"
    data.write_text("sentiment\treview_body\n1\tgood\n")

    assert main(["drop", str(data), "--dataset", "team-a", "--json", "--stack", "reviewtune-ops"]) == 0
    got = json.loads(capsys.readouterr().out)
    obj = tuning.DroppedObject(deployed.bucket, got["key"], got["version_id"], got["etag"].strip('"'), None)
    settings = type("Named", (), {"job_name_prefix": "ops"})()
    assert got["run_id"] == tuning.run_id_of(obj, settings)  # as start_tuning names it
    assert main(["drop", str(data), "--dataset", "team-a", "--stack", "reviewtune-ops"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "; its run will be ops-" in out and "(`reviewtune runs show ops-" in out
    assert "run_id" not in run_json(capsys, "drop", str(data))  # a stack that does not say its prefix: not guessed


def test_missing_stack_is_a_clear_error(deployed):
    with pytest.raises(SystemExit, match="cannot read the outputs of stack 'nope'"):
        main(["runs", "list", "--stack", "nope"])


def test_an_unreachable_aws_and_no_local_runtime_is_a_clear_error_naming_both(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there: no connection
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    workdir = tmp_path / ".reviewtune"
    with pytest.raises(SystemExit) as refused:
        main(["--workdir", str(workdir), "runs", "list"])
    text = str(refused.value)
    assert "cannot read the outputs of stack" in text and "Could not connect to the endpoint URL" in text
    assert text.startswith(f"error: no local runtime is running here ({workdir / 'local.json'}): `reviewtune local "
                           "up` starts one")  # first: what a person without AWS set up reads
    assert "REVIEWTUNE_WORKDIR names another one's folder" in text
    with pytest.raises(SystemExit) as refused:
        main(["--workdir", str(workdir), "runs", "list", "--target", "aws"])
    assert "Could not connect" in str(refused.value) and "local up" not in str(refused.value)


def test_default_stack_name_comes_from_samconfig(tmp_path):
    config = tmp_path / "samconfig.toml"
    config.write_text('version = 0.1\n[default.global.parameters]\nstack_name = "reviews-prod"\n')
    assert default_stack_name(config) == "reviews-prod"
    assert default_stack_name(tmp_path / "absent.toml") == "reviewtune"


def _completed_tuning_job(name: str, start: datetime) -> dict:
    return {"HyperParameterTuningJobName": name,
            "HyperParameterTuningJobArn": f"arn:aws:sagemaker:us-east-1:1:hyper-parameter-tuning-job/{name}",
            "HyperParameterTuningJobConfig": {"Strategy": "Bayesian", "ResourceLimits": {"MaxParallelTrainingJobs": 1}},
            "HyperParameterTuningJobStatus": "Completed", "CreationTime": start,
            "TrainingJobStatusCounters": {}, "ObjectiveStatusCounters": {}}


def test_trial_rows_have_the_sdk_columns_epochs_and_early_stop():
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    start = datetime(2026, 11, 1, 12, 0)
    summaries = [
        {"TrainingJobName": "t-001-aaaaaaaa", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/a",
         "CreationTime": start, "TrainingStartTime": start, "TrainingEndTime": start + timedelta(seconds=90),
         "TrainingJobStatus": "Completed", "TunedHyperParameters": {"learning_rate": "5e-05", "pooling": "mean"},
         "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:accuracy", "Value": 70.5}},
        {"TrainingJobName": "t-002-bbbbbbbb", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/b",
         "CreationTime": start, "TrainingStartTime": start, "TrainingEndTime": start + timedelta(seconds=30),
         "TrainingJobStatus": "Stopped", "TunedHyperParameters": {"learning_rate": "1e-04", "pooling": "cls"},
         "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:accuracy", "Value": 60.0}},
    ]
    with Stubber(client) as stub:
        stub.add_response("describe_hyper_parameter_tuning_job", _completed_tuning_job("t", start))
        stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job",
                          {"TrainingJobSummaries": summaries[:1], "NextToken": "page-2"},
                          {"HyperParameterTuningJobName": "t", "MaxResults": 100})
        stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": summaries[1:]},
                          {"HyperParameterTuningJobName": "t", "MaxResults": 100, "NextToken": "page-2"})
        for epochs, planned in ((2, [81.3]), (1, [])):  # the second trial's train.py printed no planned_steps_pct
            stub.add_response("describe_training_job", {
                "TrainingJobName": "x", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x",
                "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k"}, "TrainingJobStatus": "Completed",
                "SecondaryStatus": "Completed", "AlgorithmSpecification": {"TrainingInputMode": "File"},
                "ResourceConfig": {"VolumeSizeInGB": 1}, "StoppingCondition": {}, "CreationTime": start,
                "FinalMetricDataList": [{"MetricName": "train:epoch", "Value": float(epochs), "Timestamp": start},
                                        *({"MetricName": "train:planned_steps_pct", "Value": v, "Timestamp": start}
                                          for v in planned)]})
        rows = queries.trial_rows(client, "t")

    assert rows == [
        {"learning_rate": 5e-05, "pooling": "mean", "TrainingJobName": "t-001-aaaaaaaa", "TrainingJobStatus": "Completed",
         "FinalObjectiveValue": 70.5, "TrainingStartTime": start, "TrainingEndTime": start + timedelta(seconds=90),
         "TrainingElapsedTimeSeconds": 90.0, "Epochs": 2, "PlannedStepsPct": 81.3, "EarlyStopped": False},
        {"learning_rate": 1e-04, "pooling": "cls", "TrainingJobName": "t-002-bbbbbbbb", "TrainingJobStatus": "Stopped",
         "FinalObjectiveValue": 60.0, "TrainingStartTime": start, "TrainingEndTime": start + timedelta(seconds=30),
         "TrainingElapsedTimeSeconds": 30.0, "Epochs": 1, "PlannedStepsPct": None, "EarlyStopped": True},
    ]


def test_a_deleted_trial_is_listed_from_the_tuning_job_and_marked_deleted():
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    start = datetime(2026, 11, 1, 12, 0)
    summary = {"TrainingJobName": "t-001-aaaaaaaa", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/a",
               "CreationTime": start, "TrainingStartTime": start, "TrainingEndTime": start + timedelta(seconds=90),
               "TrainingJobStatus": "Completed", "TunedHyperParameters": {"learning_rate": "5e-05"},
               "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:accuracy", "Value": 70.5}}
    with Stubber(client) as stub:
        stub.add_response("describe_hyper_parameter_tuning_job", _completed_tuning_job("t", start))
        stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [summary]})
        stub.add_client_error("describe_training_job", "ValidationException", "Requested resource not found.")
        rows = queries.trial_rows(client, "t")

    assert rows == [{"learning_rate": 5e-05, "TrainingJobName": "t-001-aaaaaaaa", "TrainingJobStatus": "Completed",
                     "FinalObjectiveValue": 70.5, "TrainingStartTime": start,
                     "TrainingEndTime": start + timedelta(seconds=90), "TrainingElapsedTimeSeconds": 90.0,
                     "Deleted": True, "EarlyStopped": False}]
    [line] = [line for line in rendered(views.trials_table(rows, "Trials of t")).splitlines() if "aaaaaaaa" in line]
    assert [cell.strip() for cell in line.split("│")[2:5]] == ["001-aaaaaaaa", "Completed (deleted)", "70.50"]


def test_make_run_copies_the_report_into_out(deployed, tmp_path):
    from reviewtune.cli import _download_results

    s3 = boto3.client("s3")
    item = put_run(deployed, "reviewtune-a1", "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    prefix = names.evaluation_prefix("reviewtune-a1")
    for name, body in (("evaluation.json", b"{}"), ("confusion_matrix.png", b"png"), ("report/index.html", b"<html>")):
        s3.put_object(Bucket=deployed.bucket, Key=prefix + name, Body=body)
    item["results"].update(evaluation_uri=names.s3_uri(deployed.bucket, prefix + "evaluation.json"),
                           confusion_matrix_uri=names.s3_uri(deployed.bucket, prefix + "confusion_matrix.png"))

    class Runtime:
        def client(self, service):
            return boto3.client(service)

    files = _download_results(Runtime(), item, tmp_path / "out")
    assert files["report.html"].read_bytes() == b"<html>" and files["report.html"] == tmp_path / "out" / "report.html"
    assert json.loads(files["run.json"].read_text())["run_id"] == "reviewtune-a1"
    assert "plan.json" not in files and not (tmp_path / "out" / "plan.json").exists()


def test_make_run_keeps_its_plan_beside_the_results_and_never_an_earlier_one(deployed, tmp_path):
    from reviewtune.budget import Budget, plan_run
    from reviewtune.cli import _download_results, finished_text

    item = put_run(deployed, "reviewtune-a2", "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    boto3.client("s3").put_object(Bucket=deployed.bucket, Key=names.report_key("reviewtune-a2"), Body=b"<html>")

    class Runtime:
        def client(self, service):
            return boto3.client(service)

    plan = plan_run(Budget(), {"train": 21_137, "validation": 1_174, "test": 1_175})
    files = _download_results(Runtime(), item, tmp_path / "out", plan)
    kept = json.loads(files["plan.json"].read_text())
    assert kept["estimated_minutes"] == pytest.approx(plan.estimated_minutes, abs=0.01) and kept["minutes"] == 30
    assert kept["steps_per_epoch"] == plan.steps_per_epoch < kept["full_steps_per_epoch"] == 1322
    assert kept["rows"]["train"] == 21_137 and kept["class_balance"] == "downsample"
    assert kept["lines"] == plan.lines() and kept["max_train_seconds"] == plan.max_train_seconds
    assert finished_text(1470.4, plan) == (f"Finished in 24 min 30 s (1,470 s; the plan estimated "
                                           f"{plan.estimated_minutes:.1f} of 30 min)")
    # a run without a plan (a file the plan could not split) leaves no earlier run's plan behind
    files = _download_results(Runtime(), item, tmp_path / "out")
    assert "plan.json" not in files and not (tmp_path / "out" / "plan.json").exists()
    assert finished_text(101.6, None) == "Finished in 1 min 42 s (102 s)"


def test_text_from_runs_is_shown_as_written_never_as_markup_or_terminal_controls(deployed, capsys):
    """A key may hold rich markup ('[/quote]' crashed the command, '[red]' vanished) or terminal controls."""
    dataset = "team-[bold]x[/bold]/[red]draft\x1b[2J.tsv"
    item = put_run(deployed, "reviewtune-r1", dataset, "REJECTED", 1)
    RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table)).update(
        "reviewtune-r1", failure_reason="row 3: label '[/quote]' is not -1, 0 or 1")

    for argv in (["runs", "show", "reviewtune-r1"], ["runs", "list"]):
        assert main([*argv, "--stack", STACK]) == 0
        out = capsys.readouterr().out
        assert "team-[bold]x[/bold]/[red]draft\\x1b[2J.tsv" in out and "\x1b" not in out
    assert main(["runs", "show", "reviewtune-r1", "--stack", STACK]) == 0
    assert "label '[/quote]' is not -1, 0 or 1" in capsys.readouterr().out
    assert run_json(capsys, "runs", "show", "reviewtune-r1")["dataset"] == item["dataset"]  # JSON keeps it exact


def test_a_name_with_a_line_break_is_shown_on_one_line_with_its_escape(deployed, capsys):
    """"team-x/two\nlines.tsv" shown as two lines reads as two names, or as "team-x/two lines.tsv" wrapped."""
    put_run(deployed, "reviewtune-l1", "team-x/two\nlines.tsv", "SUCCEEDED", 1, 0.7)
    for argv in (["runs", "show", "reviewtune-l1"], ["runs", "list"]):
        assert main([*argv, "--stack", STACK]) == 0
        out = capsys.readouterr().out
        assert "team-x/two\\x0alines.tsv" in " ".join(out.split()).replace(" ", "")  # a cell may wrap, never break
        assert not any(line.strip().startswith("lines.tsv") for line in out.splitlines())
    assert main(["runs", "show", "reviewtune-l1", "--stack", STACK]) == 0
    assert "s3://" + deployed.bucket + "/incoming/team-x/two\\x0alines.tsv (version v1)" in capsys.readouterr().out
    RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table)).update(  # a rejected file's copies
        "reviewtune-l1", rejected_uri="s3://b/rejected/team-x/two\nlines.tsv", rejected_version_id="v2",
        reason_uri="s3://b/rejected/team-x/two\nlines.tsv.reason.txt")
    assert main(["runs", "show", "reviewtune-l1", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split()).replace(" ", "")
    assert "s3://b/rejected/team-x/two\\x0alines.tsv(versionv2)" in out and "two\\x0alines.tsv.reason.txt" in out


def test_drop_follow_that_runs_out_of_time_says_the_file_is_uploaded(deployed, tmp_path):
    data = tmp_path / "reviews.tsv"
    data.write_text("sentiment\treview_body\n1\tgood\n")
    with pytest.raises(SystemExit, match=r"no run of s3://.*/incoming/reviews.tsv appeared within 0 s \(the file is uploaded"):
        main(["drop", str(data), "--follow", "--timeout", "0", "--stack", STACK])


def test_drop_follow_ends_with_a_clear_error_when_the_run_does_not_end_in_time(deployed, tmp_path, monkeypatch):
    data = tmp_path / "reviews.tsv"
    data.write_text("sentiment\treview_body\n1\tgood\n")
    def found_late(*args, **kwargs):  # finding the run took part of the time given
        time.sleep(1.5)
        return {"run_id": "reviewtune-a9", "status": "TUNING"}

    monkeypatch.setattr(queries, "find_run", found_late)
    put_run(deployed, "reviewtune-a9", "reviews.tsv", "TUNING", 1)
    with pytest.raises(SystemExit, match=r"run reviewtune-a9 did not finish within 2 s .*`reviewtune runs show "
                                         r"reviewtune-a9 --follow` follows it\)"):  # the time given, not what was left
        main(["drop", str(data), "--follow", "--timeout", "2", "--stack", STACK])


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_while_following_says_the_run_goes_on_and_how_to_follow_or_stop_it(deployed, tmp_path, monkeypatch):
    data = tmp_path / "reviews.tsv"
    data.write_text("sentiment\treview_body\n1\tgood\n")
    put_run(deployed, "reviewtune-c1", "reviews.tsv", "TUNING", 1)
    monkeypatch.setattr(commands, "wait_for_run", _interrupted)
    goes_on = (r"stopped following run reviewtune-c1; the run goes on \(`reviewtune runs show reviewtune-c1 --follow` "
               r"follows it again, `reviewtune runs stop reviewtune-c1` stops it\)")
    with pytest.raises(SystemExit, match=goes_on):
        main(["runs", "show", "reviewtune-c1", "--follow", "--stack", STACK])
    monkeypatch.setattr(queries, "find_run", lambda *a, **k: {"run_id": "reviewtune-c1", "status": "TUNING"})
    with pytest.raises(SystemExit, match=goes_on):
        main(["drop", str(data), "--follow", "--stack", STACK])
    monkeypatch.setattr(queries, "find_run", _interrupted)  # before the run appeared
    with pytest.raises(SystemExit, match=r"stopped waiting for the run of s3://.*/incoming/reviews.tsv \(the file is "
                                         r"uploaded; `reviewtune runs list` shows its run once it has one\)"):
        main(["drop", str(data), "--follow", "--stack", STACK])


def test_show_follow_shows_a_run_in_progress_live_until_it_ends(deployed, capsys, monkeypatch):
    put_run(deployed, "reviewtune-f1", "team-a/r.tsv", "TUNING", 1)
    put_run(deployed, "reviewtune-f2", "team-a/r.tsv", "FAILED", 2)
    runs = RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table))
    polls = []

    def poll(self):  # the tuning job's trials: here, the run moves on while it is followed
        polls.append(self.run_id)
        if len(polls) == 2:
            runs.table.update_item(Key={"run_id": "reviewtune-f1"}, UpdateExpression="SET #s = :s",
                                   ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "SUCCEEDED"})

    monkeypatch.setattr(follow.Progress, "poll", poll)
    monkeypatch.setattr(follow, "wait_for_run", functools.partial(follow.wait_for_run, poll_s=0.01))
    monkeypatch.setattr(commands, "wait_for_run", follow.wait_for_run)

    assert main(["runs", "show", "reviewtune-f1", "--follow", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "run reviewtune-f1: TUNING" in out and "run reviewtune-f1: SUCCEEDED" in out
    assert out.index("run reviewtune-f1: SUCCEEDED") < out.index("status SUCCEEDED")  # then the record, as it ended

    followed = len(polls)
    assert main(["runs", "show", "reviewtune-f2", "--follow", "--stack", STACK]) == 1  # ended: shown, not followed
    assert "run reviewtune-f2: FAILED" not in capsys.readouterr().out and len(polls) == followed
    with pytest.raises(SystemExit, match=r"following run reviewtune-f3: .* `reviewtune runs show reviewtune-f3 "
                                         r"--follow` follows it again"):
        put_run(deployed, "reviewtune-f3", "team-a/r.tsv", "QUEUED", 3)
        main(["runs", "show", "reviewtune-f3", "--follow", "--timeout", "0.05", "--stack", STACK])


def test_runs_of_a_dataset_are_read_past_a_page_of_large_items(deployed):
    """A query page holds 1 MB; run items may be ~100 KB each (the trial records' budget)."""
    runs = RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table))
    for index in range(30):
        item = put_run(deployed, f"reviewtune-{index:03d}", "team-a/r.tsv", "SUCCEEDED", index)
        runs.update(item["run_id"], tuning={"trials": [{"name": "t", "failure_reason": "x" * 90_000}]})
    newest = runs.by_dataset("team-a/r.tsv", limit=20)
    assert [r["run_id"] for r in newest] == [f"reviewtune-{index:03d}" for index in range(29, 9, -1)]
    assert len(runs.by_dataset("team-a/r.tsv", limit=50)) == 30


def test_trials_of_a_run_without_a_tuning_job_says_so(deployed, monkeypatch):
    put_run(deployed, "reviewtune-q1", "team-a/r.tsv", "QUEUED", 1)
    with pytest.raises(SystemExit, match="run reviewtune-q1 is QUEUED: it has no tuning job, so no trials"):
        main(["runs", "trials", "reviewtune-q1", "--stack", STACK])
    put_run(deployed, "reviewtune-f1", "team-a/r.tsv", "FAILED", 2)  # failed before its tuning job was made
    with pytest.raises(SystemExit, match="run reviewtune-f1 is FAILED: it has no tuning job, so no trials"):
        main(["runs", "trials", "reviewtune-f1", "--stack", STACK])
    with pytest.raises(SystemExit, match="error: tuning job reviewtune-zz: "):
        main(["runs", "trials", "reviewtune-zz", "--stack", STACK])


def test_a_stale_local_runtime_file_says_how_to_go_on(tmp_path):
    """A crashed `local up` leaves .reviewtune/local.json: --target auto would use it; the error says what to do."""
    workdir = tmp_path / ".reviewtune"
    workdir.mkdir()
    (workdir / "local.json").write_text(json.dumps({"pid": 2**22 + 12345, "endpoints": {}, "outputs": {}}))
    with pytest.raises(SystemExit, match=r"is not running: start it with `reviewtune local up`, or remove the stale "
                                         r"file with `reviewtune local down`.*--target aws"):
        main(["--workdir", str(workdir), "runs", "list"])


def test_show_of_the_champion_pointer_points_to_the_champion_command(deployed):
    with pytest.raises(SystemExit, match=r"'champion#team-a/r.tsv' is the champion pointer of dataset 'team-a/r.tsv', "
                                         r"not a run: `reviewtune champion --dataset team-a/r.tsv` shows it"):
        main(["runs", "show", "champion#team-a/r.tsv", "--stack", STACK])


@pytest.mark.parametrize("command", [["runs", "show"], ["runs", "show", "--follow", "--timeout", "1"],
                                     ["runs", "report"], ["runs", "trials"], ["runs", "logs"]])
def test_reviewtune_s_own_items_of_the_runs_table_are_no_runs(deployed, command):
    table = boto3.resource("dynamodb", region_name=REGION).Table(deployed.runs_table)
    table.put_item(Item={"run_id": "#slots", "holders": {"reviewtune-x1"}})
    with pytest.raises(SystemExit, match=r"no run '#slots' in .*: it is one of reviewtune's own items of the runs "
                                         r"table \(such as the tuning slots, the prefixes used or a content marker\), not a run"):
        main([*command[:2], "#slots", *command[2:], "--stack", STACK])


def test_the_champion_command_suggested_for_a_pointer_is_quoted_for_the_shell(deployed):
    with pytest.raises(SystemExit, match=r"`reviewtune champion --dataset 'team a/\$\(x\)\.tsv'` shows it"):
        main(["runs", "show", "champion#team a/$(x).tsv", "--stack", STACK])


def test_show_says_which_messages_went_out_and_which_are_still_to_send(deployed, capsys):
    runs = RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table))
    put_run(deployed, "reviewtune-q1", "team-q/r.tsv", "CLAIMED", 1)
    assert runs.transition("reviewtune-q1", RunStatus.CLAIMED, RunStatus.QUEUED, notice=("Queued: r.tsv", "waiting"))
    runs.mark_sent("reviewtune-q1", "QUEUED", "sns-queued-1")
    assert runs.transition("reviewtune-q1", RunStatus.QUEUED, RunStatus.FAILED, notice=("Failed: r.tsv", "why"))

    assert main(["runs", "show", "reviewtune-q1", "--stack", STACK]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "told: Queued: r.tsv (SNS message sns-queued-1)" in text
    assert "message not sent FAILED (recorded " in text and "sent by the reconciler's next pass" in text
    assert main(["runs", "list", "--stack", STACK]) == 0
    assert "FAILED, not told yet" in capsys.readouterr().out

    runs.mark_sent("reviewtune-q1", "FAILED", "sns-failed-1")
    assert main(["runs", "show", "reviewtune-q1", "--stack", STACK]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "told: Failed: r.tsv (SNS message sns-failed-1)" in text and "message not sent" not in text
    assert main(["runs", "list", "--stack", STACK]) == 0
    assert "not told" not in capsys.readouterr().out


def test_show_report_and_trials_take_the_start_of_a_recent_run_s_id(deployed, capsys, monkeypatch, tmp_path):
    put_run(deployed, "reviewtune-5e7159cbd505a81a", "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    put_run(deployed, "reviewtune-5e71aa00d505a81b", "team-a/r.tsv", "FAILED", 2)
    put_run(deployed, "reviewtune-9c0ffee1d505a81c", "team-b/r.tsv", "QUEUED", 3)

    assert run_json(capsys, "runs", "show", "5e715")["run_id"] == "reviewtune-5e7159cbd505a81a"  # the digest's start
    assert run_json(capsys, "runs", "show", "reviewtune-5e71a")["run_id"] == "reviewtune-5e71aa00d505a81b"
    with pytest.raises(SystemExit, match="'5e71' starts 2 runs' ids: reviewtune-5e71aa00d505a81b, "
                                         "reviewtune-5e7159cbd505a81a; type more"):
        main(["runs", "show", "5e71", "--stack", STACK])
    with pytest.raises(SystemExit, match="no run '5e7'"):  # too short to be taken for the start of an id
        main(["runs", "show", "5e7", "--stack", STACK])
    with pytest.raises(SystemExit, match="no run 'reviewtune-5e72'"):
        main(["runs", "show", "reviewtune-5e72", "--stack", STACK])
    with pytest.raises(SystemExit, match="run reviewtune-9c0ffee1d505a81c is QUEUED: it has no tuning job"):
        main(["runs", "trials", "9c0ffee", "--stack", STACK])

    boto3.client("s3").put_object(Bucket=deployed.bucket, Key=names.report_key("reviewtune-5e7159cbd505a81a"),
                                  Body=b"<html>report</html>")
    assert run_json(capsys, "runs", "report", "5e7159", "--out", str(tmp_path))["run_id"] == "reviewtune-5e7159cbd505a81a"


def test_the_start_of_an_id_is_looked_for_among_the_newest_runs_of_each_status_only(deployed):
    for n in range(4):
        put_run(deployed, f"reviewtune-ab{n}0000000000000", "team-a/r.tsv", "FAILED", n)
    table = boto3.resource("dynamodb").Table(deployed.runs_table)

    assert queries.runs_with_prefix(table, "ab") == [f"reviewtune-ab{n}0000000000000" for n in (3, 2, 1, 0)]
    assert queries.runs_with_prefix(table, "ab", limit=2) == ["reviewtune-ab30000000000000", "reviewtune-ab20000000000000"]


def test_a_folder_s3_refuses_to_list_says_so_and_lists_nothing(deployed, capsys, monkeypatch):
    from botocore.exceptions import ClientError

    def refused(*_args):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "ListObjectVersions")

    monkeypatch.setattr(queries, "datasets_under", refused)
    assert main(["runs", "list", "--dataset", "team-a", "--stack", STACK, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == []
    err = " ".join(err.split())
    assert "could not list the files under incoming/team-a/ to find its datasets: AccessDenied" in err
    assert "no runs of dataset 'team-a': a dataset is" in err  # nothing said of files it could not list


def test_drop_follow_drops_the_file_when_the_runs_before_it_cannot_be_read(deployed, tmp_path, monkeypatch, capsys):
    from botocore.exceptions import ClientError

    def refused(*args, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no Query"}}, "Query")

    data = tmp_path / "reviews.tsv"
    data.write_text("sentiment\treview_body\n1\tgood\n")
    monkeypatch.setattr(queries, "run_ids", refused)
    with pytest.raises(SystemExit, match=r"no run of s3://.*/incoming/reviews.tsv appeared within 0 s \(the file is uploaded"):
        main(["drop", str(data), "--follow", "--timeout", "0", "--stack", STACK])
    assert "warning: the runs of reviews.tsv could not be read before the drop" in capsys.readouterr().err


def test_show_ends_with_the_command_a_person_would_run_next(deployed, capsys):
    runs = RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table))
    put_run(deployed, "reviewtune-n1", "team-n/r.tsv", "FAILED", 1)
    put_run(deployed, "reviewtune-n2", "team-n/r.tsv", "STOPPED", 2)
    put_run(deployed, "reviewtune-n3", "team-n/r.tsv", "TUNING", 3)
    put_run(deployed, "reviewtune-n4", "team-n/r.tsv", "DUPLICATE", 4)
    runs.update("reviewtune-n4", duplicate_of="reviewtune-n3")
    put_run(deployed, "reviewtune-n5", "team-n/r.tsv", "REJECTED", 5)
    put_run(deployed, "reviewtune-n6", "team-n/r.tsv", "REJECTED", 6)
    runs.update("reviewtune-n6", unreadable=True)
    put_run(deployed, "reviewtune-n7", "team-n/r.tsv", "FAILED", 7)
    runs.update("reviewtune-n7", retried={"at": "2026-11-01T13:00:00Z", "by": "ops", "new_run_id": "reviewtune-n8"})
    put_run(deployed, "reviewtune-n9", "team-n/r.tsv", "SUCCEEDED", 9, 0.7)  # no champion yet
    runs.update("reviewtune-n9", model_package_arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1",
                results={"test_accuracy": 0.7}, champion={"decision": "no better than guessing"})
    expected = {
        "reviewtune-n1": "Next: to tune its file again once the cause is fixed: `reviewtune runs retry reviewtune-n1 --reason TEXT`",
        "reviewtune-n2": "Next: to tune its file again: `reviewtune runs retry reviewtune-n2 --reason TEXT`",
        "reviewtune-n3": "Next: to watch it to its end: `reviewtune runs show reviewtune-n3 --follow`",
        "reviewtune-n4": "Next: the run that tunes its content: `reviewtune runs show reviewtune-n3`",
        "reviewtune-n5": "Next: fix the file and drop it into incoming/ again",
        "reviewtune-n6": "Next: once S3 can read the file: `reviewtune runs retry reviewtune-n6 --reason TEXT`",
        "reviewtune-n7": "Next: its retry: `reviewtune runs show reviewtune-n8`",
        "reviewtune-n9": "Next: it is not champion (no better than guessing); a person can make it so: "
                         "`reviewtune promote reviewtune-n9 --reason TEXT`",
    }
    for run_id, line in expected.items():
        assert main(["runs", "show", run_id, "--stack", STACK]) == 0
        out = capsys.readouterr().out
        assert line in out.splitlines(), (run_id, out[-400:])
    assert "Next" not in json.dumps(run_json(capsys, "runs", "show", "reviewtune-n1"))  # --json: the item only


def test_show_names_no_command_that_would_be_refused_and_says_why(deployed, capsys):
    """promote takes a run with a model package and a test accuracy; retry refuses a run of a bucket without
    versioning, or one whose content a later run kept: `Next` says so instead of naming the command."""
    runs = RunsRepository(boto3.resource("dynamodb").Table(deployed.runs_table))
    put_run(deployed, "reviewtune-p1", "team-p/r.tsv", "SUCCEEDED", 1, 0.7)  # its registration failed: no package
    put_run(deployed, "reviewtune-p2", "team-p/r.tsv", "FAILED", 2)
    runs.update("reviewtune-p2", source={"bucket": deployed.bucket, "key": "incoming/team-p/r.tsv"})  # no version
    put_run(deployed, "reviewtune-p3", "team-q/r.tsv", "FAILED", 3)
    put_run(deployed, "reviewtune-p4", "team-q/r.tsv", "SUCCEEDED", 4, 0.7)  # the same bytes dropped again
    for run_id in ("reviewtune-p3", "reviewtune-p4"):
        runs.update(run_id, data={"summary": {"rows": {"train": 90}, "content_sha256": "c" * 64}})
    put_run(deployed, "reviewtune-p5", "team-p/r.tsv", "REJECTED", 5)  # S3 would not read it, in a bucket without versions
    runs.update("reviewtune-p5", unreadable=True, source={"bucket": deployed.bucket, "key": "incoming/team-p/r.tsv"})

    def next_line(run_id: str) -> str | None:
        assert main(["runs", "show", run_id, "--stack", STACK]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Next:")]
        return lines[0] if lines else None

    assert next_line("reviewtune-p1") is None
    assert next_line("reviewtune-p2") == (
        "Next: a retry would be refused: run reviewtune-p2 read its file from a bucket without versioning, where a copy "
        "of it could not be told from the run it retries: drop the file again (reviewtune drop FILE), the same bytes "
        "dropped again are a run of their own")
    assert next_line("reviewtune-p3") == (
        "Next: a retry would be refused: run reviewtune-p4 (SUCCEEDED) has the same content: a retry of reviewtune-p3 "
        "would end DUPLICATE of it (`reviewtune runs show reviewtune-p4`)")
    assert next_line("reviewtune-p5").startswith(  # the file may be fine: not "fix the file"
        "Next: a retry would be refused: run reviewtune-p5 read its file from a bucket without versioning")


def test_empty_lists_say_how_runs_and_champions_come_to_be(deployed, capsys):
    capsys.readouterr()
    assert main(["runs", "list", "--stack", STACK]) == 0
    assert "no runs yet: `reviewtune drop FILE --dataset NAME` tunes a file" in " ".join(capsys.readouterr().err.split())
    assert main(["champion", "--stack", STACK]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "no dataset has a champion yet" in said and "reviewtune runs list --status SUCCEEDED" in said
    assert main(["runs", "list", "--status", "FAILED", "--stack", STACK]) == 0  # no runs at all: how to make one
    assert "no runs yet: `reviewtune drop" in " ".join(capsys.readouterr().err.split())
    put_run(deployed, "reviewtune-e1", "team-e/r.tsv", "FAILED", 1)
    assert main(["runs", "list", "--status", "SUCCEEDED", "--stack", STACK]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "no SUCCEEDED runs; `reviewtune runs list` lists the runs of every status" in said and "drop" not in said
    assert main(["runs", "list", "--stack", STACK]) == 0
    assert "no runs" not in capsys.readouterr().err
