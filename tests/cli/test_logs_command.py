"""`reviewtune runs logs RUN_ID`: the output of a run's jobs from CloudWatch Logs, where SageMaker writes it.

GIVEN runs in the runs table and their jobs' streams in /aws/sagemaker/TrainingJobs and /ProcessingJobs (moto),
WHEN a person asks for a run's logs, THEN each trial's and the evaluation's last lines are printed under a header
naming the job, the group and the stream; ``--job`` picks one, ``--tail`` how many lines, ``--json`` for scripts;
a run without logs says so and why; ``--functions`` adds each function's lines that name the run.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.console import job_logs
from reviewtune.core import names
from tests.cli.test_runs_commands import STACK, deployed, put_run  # noqa: F401 - the fixture

RUN = "reviewtune-5e7159cbd505a81a"
T1, T2 = f"{RUN}-001-6221c9f6", f"{RUN}-002-82aaa94d"
# An hour ago, to the second: CloudWatch Logs refuses events over 14 days old or 2 hours ahead (moto too)
START_MS = (int(time.time()) - 3600) * 1000
STREAM_SUFFIX = f"algo-1-{START_MS // 1000}"


def clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def write_stream(group: str, job: str, lines: list[str], start_ms: int = START_MS, step_ms: int = 1000) -> None:
    logs = boto3.client("logs")
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    stream = f"{job}/algo-1-{start_ms // 1000}"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = [{"timestamp": start_ms + i * step_ms, "message": line} for i, line in enumerate(lines)]
    for first in range(0, len(events), 5_000):  # PutLogEvents takes at most 10,000 events
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events[first:first + 5_000])


@pytest.fixture
def logged(deployed):  # noqa: F811 - the fixture imported above
    put_run(deployed, RUN, "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    write_stream(names.TRAINING_LOG_GROUP, T2, ["epoch 1", "val_acc: 0.70", "AlgorithmError? no: done"])
    write_stream(names.TRAINING_LOG_GROUP, T1, [f"step {n}" for n in range(60)])
    write_stream(names.PROCESSING_LOG_GROUP, RUN + names.EVALUATION_SUFFIX, ["test accuracy 0.70"])
    # jobs of other runs whose names start alike: never shown
    write_stream(names.TRAINING_LOG_GROUP, f"{RUN}0-001-aaaaaaaa", ["another run"])
    write_stream(names.PROCESSING_LOG_GROUP, f"{RUN}-evaluation-x", ["not this run's"])
    return deployed


def text(capsys) -> str:
    return capsys.readouterr().out


@pytest.mark.parametrize(("job", "trials"), [("01", [1]), ("1", [1]), ("001", [1]), ("10", [10]), ("0", []),
                                             ("011-ab", [11]), ("2", [2]), ("12", [12]), ("\u00b2", [])])
def test_a_trial_s_number_names_that_trial_alone_never_those_it_starts(deployed, capsys, job, trials):  # noqa: F811
    put_run(deployed, RUN, "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    for number in range(1, 13):
        write_stream(names.TRAINING_LOG_GROUP, f"{RUN}-{number:03d}-ab{number:06d}", [f"trial {number}"])
    capsys.readouterr()
    assert main(["runs", "logs", RUN, "--job", job, "--stack", STACK, "--json"]) == (0 if trials else 1)
    out = capsys.readouterr().out
    shown = [entry["job"] for entry in json.loads(out)] if trials else []
    assert shown == [f"{RUN}-{number:03d}-ab{number:06d}" for number in trials]


def test_each_trial_s_and_the_evaluation_s_last_lines_under_a_header_naming_the_job(logged, capsys):
    assert main(["runs", "logs", "5e7159", "--stack", STACK]) == 0

    out = text(capsys)
    headers = [line for line in out.splitlines() if "─" in line]
    shown = [h.strip("─ ") for h in headers]
    day = datetime.fromtimestamp(START_MS / 1000 + 20, tz=UTC).strftime("%Y-%m-%d")  # the first line shown's day
    assert [h.split(", times UTC of ")[0] for h in shown] == [
        "trial 001-6221c9f6: the last 40 lines", "trial 002-82aaa94d: 3 lines", "evaluation: 1 line"]
    assert shown[0].split(", times UTC of ")[1].startswith(day)  # the times are UTC's, and the day is said
    assert f"\n{names.TRAINING_LOG_GROUP}  {T1}/{STREAM_SUFFIX}\n" in out  # under its header
    assert f"{clock(START_MS + 20_000)}  step 20" in out and "step 19\n" not in out
    assert f"{clock(START_MS + 59_000)}  step 59" in out
    assert "val_acc: 0.70" in out and "test accuracy 0.70" in out
    assert "another run" not in out and "not this run's" not in out


def test_one_job_by_number_suffix_or_evaluation_and_any_number_of_lines(logged, capsys):
    assert main(["runs", "logs", RUN, "--job", "2", "--stack", STACK]) == 0
    out = text(capsys)
    assert "trial 002-82aaa94d" in out and "trial 001" not in out and "evaluation" not in out

    assert main(["runs", "logs", RUN, "--job", "001-6221", "--tail", "0", "--stack", STACK]) == 0
    out = text(capsys)
    assert "trial 001-6221c9f6: 60 lines" in out and "step 0\n" in out

    assert main(["runs", "logs", RUN, "--job", "evaluation", "--stack", STACK, "--json"]) == 0
    [evaluation] = json.loads(text(capsys))
    assert evaluation == {"job": RUN + names.EVALUATION_SUFFIX, "kind": "evaluation",
                          "group": names.PROCESSING_LOG_GROUP, "stream": f"{RUN}-eval/{STREAM_SUFFIX}",
                          "truncated": False, "events": [{"timestamp": START_MS, "message": "test accuracy 0.70"}]}

    assert main(["runs", "logs", RUN, "--job", "3", "--stack", STACK]) == 1
    assert f"no log of job '3' of run {RUN} in CloudWatch Logs" in " ".join(capsys.readouterr().err.split())


def test_every_line_of_a_long_log_is_read_page_by_page(deployed, capsys):  # noqa: F811
    put_run(deployed, RUN, "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    write_stream(names.TRAINING_LOG_GROUP, T1, [f"line {n}" for n in range(12_000)], step_ms=100)
    logs = boto3.client("logs")

    events, truncated = job_logs.read(logs, names.TRAINING_LOG_GROUP, f"{T1}/{STREAM_SUFFIX}", 0)
    assert [e["message"] for e in events] == [f"line {n}" for n in range(12_000)] and not truncated
    events, truncated = job_logs.read(logs, names.TRAINING_LOG_GROUP, f"{T1}/{STREAM_SUFFIX}", 5)
    assert [e["message"] for e in events] == [f"line {n}" for n in range(11_995, 12_000)] and truncated
    events, truncated = job_logs.read(logs, names.TRAINING_LOG_GROUP, f"{T1}/{STREAM_SUFFIX}", 11_000)  # past a call's
    assert [e["message"] for e in events] == [f"line {n}" for n in range(1_000, 12_000)] and truncated


def test_every_trial_of_a_tuning_job_of_the_most_trials_is_found(deployed, capsys):  # noqa: F811
    put_run(deployed, RUN, "team-a/r.tsv", "SUCCEEDED", 1, 0.70)
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=names.TRAINING_LOG_GROUP)
    for n in range(1, 501):  # MaxJobs' most
        logs.create_log_stream(logGroupName=names.TRAINING_LOG_GROUP,
                               logStreamName=f"{RUN}-{n:03d}-abcdef{n % 100:02d}/{STREAM_SUFFIX}")
    streams = job_logs.streams_of(logs, RUN)
    assert [job for _, _, job, _ in streams] == [f"{RUN}-{n:03d}-abcdef{n % 100:02d}" for n in range(1, 501)]
    assert main(["runs", "logs", RUN, "--job", "350", "--stack", STACK]) == 0
    assert f"{RUN}-350-abcdef50" in text(capsys)


def test_a_run_that_made_no_job_says_so_and_why(deployed, capsys):  # noqa: F811
    put_run(deployed, "reviewtune-0000aaaa0000aaaa", "team-a/r.tsv", "REJECTED", 1)
    failed = put_run(deployed, "reviewtune-1111bbbb1111bbbb", "team-a/r.tsv", "FAILED", 2)
    boto3.resource("dynamodb").Table(deployed.runs_table).put_item(
        Item={**failed, "tuning_job_arn": "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/x"})
    put_run(deployed, "reviewtune-3333dddd3333dddd", "team-a/r.tsv", "STOPPED", 3)  # stopped before it made a job

    assert main(["runs", "logs", "reviewtune-0000aaaa0000aaaa", "--stack", STACK]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "no log of run reviewtune-0000aaaa0000aaaa in CloudWatch Logs: it is REJECTED and made no job" in err
    assert main(["runs", "logs", "reviewtune-1111bbbb1111bbbb", "--stack", STACK]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert ("no log of run reviewtune-1111bbbb1111bbbb in CloudWatch Logs: its jobs' log streams are gone (deleted, "
            "or past a retention set on their log groups); `--functions` adds what the functions logged about it") in err
    assert main(["runs", "logs", "reviewtune-3333dddd3333dddd", "--stack", STACK]) == 1
    assert ("no log of run reviewtune-3333dddd3333dddd in CloudWatch Logs: it is STOPPED and made no job"
            in " ".join(capsys.readouterr().err.split()))


def test_a_run_without_logs_yet_or_a_job_not_found_gets_what_to_run_next(deployed, capsys):  # noqa: F811
    put_run(deployed, "reviewtune-2222cccc2222cccc", "team-a/r.tsv", "TUNING", 1)

    assert main(["runs", "logs", "reviewtune-2222cccc2222cccc", "--functions", "--stack", STACK]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert ("no log of run reviewtune-2222cccc2222cccc in CloudWatch Logs: it is TUNING, and a job writes its first "
            "lines a minute or two after it starts; try again, or follow the run with `reviewtune runs show "
            "reviewtune-2222cccc2222cccc --follow`") in err
    assert "--functions` adds" not in err  # asked for already
    assert main(["runs", "logs", "reviewtune-2222cccc2222cccc", "--job", "7", "--stack", STACK]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert ("no log of job '7' of run reviewtune-2222cccc2222cccc in CloudWatch Logs; `reviewtune runs trials "
            "reviewtune-2222cccc2222cccc` lists its trials") in err


FUNCTIONS = {"StartTuningFunctionName": "rt-StartTuning", "RecordResultsFunctionName": "rt-RecordResults",
             "ReconcileFunctionName": "rt-Reconcile"}


def test_functions_lines_naming_the_run_follow_its_jobs(logged, capsys):
    template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"RunsTableName": {"Value": logged.runs_table}, "DataBucketName": {"Value": logged.bucket},
                            **{key: {"Value": value} for key, value in FUNCTIONS.items()}}}
    boto3.client("cloudformation").update_stack(StackName=STACK, TemplateBody=json.dumps(template))
    tuning = f'{{"level":"INFO","message":"tuning job started","run_id":"{RUN}"}}'
    write_stream("/aws/lambda/rt-StartTuning", "2026/12/04/[$LATEST]aaaa",
                 ["START RequestId: a", tuning, '{"message":"tuning job started","run_id":"reviewtune-other"}'])
    write_stream("/aws/lambda/rt-RecordResults", "2026/12/04/[$LATEST]bbbb",
                 [f'{{"message":"message sent","run_id":"{RUN}"}}'] * 3, start_ms=START_MS + 10_000)

    assert main(["runs", "logs", RUN, "--functions", "--job", "evaluation", "--tail", "2", "--stack", STACK,
                 "--json"]) == 0
    read = json.loads(text(capsys))
    assert [(e["kind"], e["job"]) for e in read] == [
        ("evaluation", RUN + "-eval"), ("function", "StartTuningFunction"), ("function", "RecordResultsFunction")]
    assert [e["message"] for e in read[1]["events"]] == [tuning]  # another run's line left out
    assert read[2]["truncated"] and len(read[2]["events"]) == 2 and read[2]["group"] == "/aws/lambda/rt-RecordResults"

    assert main(["runs", "logs", RUN, "--functions", "--stack", STACK]) == 0
    out = " ".join(text(capsys).split())
    assert "function StartTuningFunction: 1 line" in out
    assert "INFO tuning job started" in out and '"level"' not in out  # the short form of a Powertools line
    assert f"/aws/lambda/rt-StartTuning, the invocations naming {RUN}" in out


def test_job_names_a_function_too_and_more_than_one_job_may_be_named(logged, capsys):
    """``--job record_results`` reads that function's lines alone (no --functions needed, no other function's, no
    job's); with a trial named beside it, the trial too; a function the stack does not have names nothing."""
    template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"RunsTableName": {"Value": logged.runs_table}, "DataBucketName": {"Value": logged.bucket},
                            **{key: {"Value": value} for key, value in FUNCTIONS.items()}}}
    boto3.client("cloudformation").update_stack(StackName=STACK, TemplateBody=json.dumps(template))
    write_stream("/aws/lambda/rt-StartTuning", "2026/12/04/[$LATEST]aaaa",
                 [f'{{"level":"INFO","message":"tuning job started","run_id":"{RUN}"}}'])
    write_stream("/aws/lambda/rt-RecordResults", "2026/12/04/[$LATEST]bbbb",
                 [f'{{"level":"INFO","message":"message sent","run_id":"{RUN}"}}'], start_ms=START_MS + 10_000)

    def shown(*jobs: str) -> list[tuple[str, str]]:
        arguments = [argument for job in jobs for argument in ("--job", job)]
        assert main(["runs", "logs", RUN, *arguments, "--stack", STACK, "--json"]) == 0
        return [(entry["kind"], entry["job"]) for entry in json.loads(text(capsys))]

    for spelled in ("record_results", "record-results", "RecordResultsFunction", "recordresults", "rt-RecordResults"):
        assert shown(spelled) == [("function", "RecordResultsFunction")], spelled
    assert shown("2", "start_tuning") == [("trial", T2), ("function", "StartTuningFunction")]
    assert shown("2", "evaluation") == [("trial", T2), ("evaluation", RUN + "-eval")]

    assert shown("record_results", "rt-RecordResults") == [("function", "RecordResultsFunction")]

    for jobs in (["start_evaluation"], ["2", "start_evaluation"]):  # a function the stack has no output naming
        with pytest.raises(SystemExit) as exited:
            main(["runs", "logs", RUN, *[a for job in jobs for a in ("--job", job)], "--stack", STACK])
        assert ("the stack has no output naming its StartEvaluationFunction (StartEvaluationFunctionName), so its "
                "logs cannot be found") in str(exited.value.code)
    assert main(["runs", "logs", RUN, "--job", "reconcile", "--stack", STACK]) == 1  # it logged nothing on the run
    assert ("no log of job 'reconcile' of run reviewtune-5e7159cbd505a81a in CloudWatch Logs: no invocation of "
            "ReconcileFunction named it") in " ".join(capsys.readouterr().err.split())


def _powertools(message, request_id: str, **keys) -> str:
    return json.dumps({"level": "INFO", "message": message, "function_request_id": request_id, **keys})


def test_each_invocation_naming_the_run_is_shown_whole_from_start_to_report(logged, capsys):
    """On Lambda one stream holds an execution environment's invocations one after another: the run's invocation is
    read from its START to its REPORT (the event logged on entry, a print, the runtime's own line with it), not its
    neighbours; a reconciler pass's lines on other runs are left out."""
    template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"RunsTableName": {"Value": logged.runs_table}, "DataBucketName": {"Value": logged.bucket},
                            **{key: {"Value": value} for key, value in FUNCTIONS.items()}}}
    boto3.client("cloudformation").update_stack(StackName=STACK, TemplateBody=json.dumps(template))
    event = _powertools({"detail-type": "Object Created", "source": "aws.s3"}, "r2")
    mine = [
        "START RequestId: r2 Version: $LATEST", event, "a print from the handler",
        "[WARNING]\t2026-12-04T23:23:19.137Z\tr2\tthe runtime's own format",
        _powertools("tuning job started", "r2", run_id=RUN),
        "END RequestId: r2", "REPORT RequestId: r2\tDuration: 812.00 ms\tMemory Size: 2048 MB",
    ]
    neighbours = (["START RequestId: r1 Version: $LATEST", _powertools("tuning job started", "r1", run_id="rt-other"),
                   "END RequestId: r1", "REPORT RequestId: r1\tDuration: 1.00 ms"], mine,
                  ["START RequestId: r3 Version: $LATEST", "a print of the next invocation", "END RequestId: r3",
                   "REPORT RequestId: r3\tDuration: 1.00 ms"])
    write_stream("/aws/lambda/rt-StartTuning", "2026/12/04/[$LATEST]env1", [line for part in neighbours for line in part])
    sweep = ["START RequestId: r4 Version: $LATEST", _powertools("run looked at", "r4", run_id="rt-other"),
             _powertools("message sent", "r4", run_id=RUN), "END RequestId: r4", "REPORT RequestId: r4\tDuration: 3 ms"]
    write_stream("/aws/lambda/rt-Reconcile", "2026/12/04/[$LATEST]env2", sweep, start_ms=START_MS + 20_000)

    assert main(["runs", "logs", RUN, "--functions", "--job", "evaluation", "--tail", "0", "--stack", STACK,
                 "--json"]) == 0
    read = {entry["job"]: [e["message"] for e in entry["events"]] for entry in json.loads(text(capsys))}
    assert read["StartTuningFunction"] == mine
    assert read["ReconcileFunction"] == [sweep[0], sweep[2], sweep[3], sweep[4]]

    assert main(["runs", "logs", RUN, "--functions", "--job", "evaluation", "--stack", STACK]) == 0
    out = text(capsys)
    assert "INFO event: Object Created (aws.s3)" in out and "a print from the handler" in out
    assert "next invocation" not in out and "rt-other" not in out
    assert f"/aws/lambda/rt-StartTuning, the invocations naming {RUN}" in " ".join(out.split())


@pytest.mark.parametrize(("message", "request_id"), [
    ("START RequestId: 8f5e-11aa Version: $LATEST", "8f5e-11aa"),
    ("REPORT RequestId: 8f5e-11aa\tDuration: 3 ms", "8f5e-11aa"),
    ("[ERROR]\t2026-12-04T23:23:19.137Z\t8f5e-11aa-22bb\tboom", "8f5e-11aa-22bb"),
    ('{"level":"INFO","message":"x","function_request_id":"8f5e"}', "8f5e"),
    ('{"errorMessage":"boom","errorType":"KeyError","requestId":"8f5e","stackTrace":[]}', "8f5e"),
    ("a print", None), ('{"level":"INFO","message":"no context"}', None), ("[1, 2]", None), ("{not json", None),
])
def test_the_request_id_a_function_line_belongs_to(message, request_id):
    assert job_logs.request_id(message) == request_id


@pytest.mark.parametrize(("line", "shown"), [
    ('{"level":"INFO","location":"launch:499","message":"tuning job started","timestamp":"2026-12-04 23:23:19,137",'
     '"service":"reviewtune","cold_start":true,"function_name":"f","function_request_id":"r","run_id":"' + RUN + '",'
     '"rows":{"train":1080,"test":60}}', 'INFO tuning job started  rows={"train":1080,"test":60}'),
    ('{"level":"INFO","message":{"detail-type":"SageMaker Processing Job State Change","source":"aws.sagemaker",'
     '"detail":{"x":1}},"function_name":"f"}', "INFO event: SageMaker Processing Job State Change (aws.sagemaker)"),
    ('{"level":"WARNING","message":"run ended","run_id":"reviewtune-other"}',
     'WARNING run ended  run_id="reviewtune-other"'),
    ("START RequestId: a Version: $LATEST", "START RequestId: a Version: $LATEST"),
    ('{"_aws":{"Timestamp":1796433250614,"CloudWatchMetrics":[{"Namespace":"reviewtune/x","Dimensions":[["service"]],'
     '"Metrics":[{"Name":"TestAccuracy","Unit":"Percent"},{"Name":"RunsSucceeded","Unit":"Count"}]}]},'
     '"service":"reviewtune","TestAccuracy":[68.33333333333333],"RunsSucceeded":[1.0]}',
     "METRICS TestAccuracy=68.33  RunsSucceeded=1"),
    ('{"_aws":{"CloudWatchMetrics":[{"Metrics":[{"Name":"Rows"}]}]},"Rows":[1200, 60.5]}', "METRICS Rows=1200,60.5"),
    ('{"_aws":{"CloudWatchMetrics":"not a list"},"x":1}', '{"_aws":{"CloudWatchMetrics":"not a list"},"x":1}'),
    ('{"not": "powertools"}', '{"not": "powertools"}'),
    ('["a"]', '["a"]'),
])
def test_a_function_s_powertools_line_is_shown_short(line, shown):
    assert job_logs.short_line(line, RUN) == shown


def test_a_long_short_line_is_cut_and_says_so():
    line = json.dumps({"level": "INFO", "message": "m", "big": "x" * 1000})
    assert len(job_logs.short_line(line)) == job_logs.SHORT_LINE_CHARS and job_logs.short_line(line).endswith("...")
