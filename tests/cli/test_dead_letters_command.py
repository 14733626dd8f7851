"""`reviewtune dead-letters` against moto: each function's queue found through the stack outputs, what each
message was about, why it failed and its run as it is now, and nothing taken out of a queue but, when asked, the
messages whose run has ended and told its outcome."""

from __future__ import annotations

import json

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.console.dead_letters import QUEUES
from tests.cli.test_audit_command import with_run
from tests.support.aws import create_stack, load_event

STACK = "reviewtune-dlq"


@pytest.fixture
def stack(moto_account):
    return create_stack()


@pytest.fixture
def deployed(stack):
    sqs = boto3.client("sqs")
    urls = {function: sqs.create_queue(QueueName=f"{function}-dlq")["QueueUrl"] for function in QUEUES}
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "RunsTableName": {"Value": stack.runs_table},
            **{output: {"Value": urls[function]} for function, output in QUEUES.items()},
        },
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    yield urls


def send(url: str, body: str, **attributes: str) -> None:
    boto3.client("sqs").send_message(QueueUrl=url, MessageBody=body, MessageAttributes={
        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()})


def test_each_queue_shows_what_its_events_were_about_and_why_they_failed_and_keeps_them(deployed, capsys):
    created = load_event("s3_object_created.json")
    created["detail"]["object"]["key"] = "incoming/team a/late (1).tsv"
    send(deployed["StartTuning"], json.dumps(created), ErrorMessage="ClientError: SlowDown when calling HeadObject")
    tuning = load_event("tuning_job_completed.json")
    send(deployed["StartEvaluation"], json.dumps(tuning), ERROR_CODE="SDK_CLIENT_ERROR",
         ERROR_MESSAGE="Unable to invoke Lambda function")
    send(deployed["RecordResults"], "not json {")

    capsys.readouterr()
    assert main(["dead-letters", "--stack", STACK, "--json"]) == 1  # messages wait: exit status 1
    states = {s["function"]: s for s in json.loads(capsys.readouterr().out)}

    assert {f: s["waiting"] for f, s in states.items()} == {
        "StartTuning": 1, "StartEvaluation": 1, "RecordResults": 1, "Reconcile": 0}
    [start] = states["StartTuning"]["messages"]
    version = created["detail"]["object"]["version-id"]
    assert start["about"] == f"s3://{created['detail']['bucket']['name']}/incoming/team a/late (1).tsv (version {version})"
    assert start["error"] == "ClientError: SlowDown when calling HeadObject" and start["sent_at"].endswith("Z")
    [evaluation] = states["StartEvaluation"]["messages"]
    name = tuning["detail"]["HyperParameterTuningJobName"]
    assert evaluation["about"] == f"{name} Completed"
    assert evaluation["error"] == "SDK_CLIENT_ERROR: Unable to invoke Lambda function"
    assert states["RecordResults"]["messages"][0]["about"] == "not JSON: 'not json {'" and states["Reconcile"]["messages"] == []

    assert main(["dead-letters", "--stack", STACK]) == 1  # the table, and the messages are still there
    text = capsys.readouterr().out
    for expected in ("late (1).tsv", "SlowDown", f"{name} Completed", "(empty)", "taken back by the reconciler"):
        assert expected in text
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=deployed["StartTuning"], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "1"


def test_limit_caps_the_messages_shown_but_not_the_count(deployed, capsys):
    for i in range(25):
        send(deployed["Reconcile"], json.dumps({"source": "aws.scheduler", "n": i}), ErrorMessage=f"Task timed out {i}")

    capsys.readouterr()
    assert main(["dead-letters", "--stack", STACK, "--json", "--limit", "12"]) == 1
    reconcile = next(s for s in json.loads(capsys.readouterr().out) if s["function"] == "Reconcile")

    assert reconcile["waiting"] == 25 and len(reconcile["messages"]) == 12
    assert {m["about"] for m in reconcile["messages"]} == {"a reconciler pass"}
    assert len({m["message_id"] for m in reconcile["messages"]}) == 12
    sqs = boto3.client("sqs")  # every message read is visible again at once
    visible = sqs.get_queue_attributes(QueueUrl=deployed["Reconcile"], AttributeNames=["All"])["Attributes"]
    assert visible["ApproximateNumberOfMessages"] == "25" and visible["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert main(["dead-letters", "--stack", STACK, "--json", "--limit", "100"]) == 1
    again = next(s for s in json.loads(capsys.readouterr().out) if s["function"] == "Reconcile")
    assert len({m["message_id"] for m in again["messages"]}) == 25


def _job_event(name: str, run_id: str, status: str = "Completed") -> str:
    event = load_event("tuning_job_completed.json" if name == "tuning" else "processing_job_completed.json")
    if name == "tuning":
        event["detail"]["HyperParameterTuningJobName"] = run_id
    else:
        event["detail"]["ProcessingJobName"] = f"{run_id}-eval"
    return json.dumps(event)


def test_each_event_is_put_beside_its_run_now_and_only_settled_ones_are_deleted_when_asked(stack, deployed, capsys):
    with_run(stack, "reviewtune-done", "incoming/done.tsv", "SUCCEEDED", sent=True)
    with_run(stack, "reviewtune-going", "incoming/going.tsv", "TUNING")
    with_run(stack, "reviewtune-untold", "incoming/untold.tsv", "FAILED")  # its message recorded, not sent yet
    version = with_run(stack, "reviewtune-dropped", "incoming/team a/late (1).tsv", "SUCCEEDED", sent=True)
    created = load_event("s3_object_created.json")
    created["detail"]["bucket"]["name"] = stack.bucket
    created["detail"]["object"].update({"key": "incoming/team+a/late+%281%29.tsv", "version-id": version})  # encoded
    send(deployed["StartTuning"], json.dumps(created), ErrorMessage="Task timed out")
    send(deployed["StartEvaluation"], _job_event("tuning", "reviewtune-done"), ErrorMessage="Task timed out")
    send(deployed["StartEvaluation"], _job_event("tuning", "reviewtune-going"), ErrorMessage="Task timed out")
    send(deployed["RecordResults"], _job_event("processing", "reviewtune-untold"), ErrorMessage="Task timed out")
    send(deployed["RecordResults"], _job_event("processing", "reviewtune-gone"), ErrorMessage="Task timed out")
    send(deployed["Reconcile"], json.dumps({"source": "aws.scheduler"}), ErrorMessage="Task timed out")

    def shown(*options: str) -> dict[str, dict[str, tuple]]:
        capsys.readouterr()
        assert main(["dead-letters", "--stack", STACK, "--json", *options]) == 1  # some are left each time
        return {state["function"]: {m["message_id"]: (m["run_id"], m["run_now"], m["settled"], m["deleted"])
                                    for m in state["messages"]} for state in json.loads(capsys.readouterr().out)}

    def runs_now(states: dict) -> dict[str, list[tuple]]:
        return {function: sorted(rows.values(), key=str) for function, rows in states.items()}

    before = runs_now(shown())
    assert before == {
        "StartTuning": [("reviewtune-dropped", "SUCCEEDED, told", True, False)],
        "StartEvaluation": [("reviewtune-done", "SUCCEEDED, told", True, False),
                            ("reviewtune-going", "TUNING", False, False)],
        "RecordResults": [("reviewtune-untold", "FAILED, not told yet", False, False),
                          (None, "no run found", False, False)],
        "Reconcile": [(None, "-", False, False)],  # a reconciler pass: about no run
    }
    assert runs_now(shown()) == before  # reading deletes nothing

    deleted = runs_now(shown("--delete-settled"))
    assert deleted["StartTuning"] == [("reviewtune-dropped", "SUCCEEDED, told", True, True)]
    assert deleted["StartEvaluation"][0] == ("reviewtune-done", "SUCCEEDED, told", True, True)
    after = runs_now(shown())
    assert after == {**before, "StartTuning": [], "StartEvaluation": [("reviewtune-going", "TUNING", False, False)]}
    capsys.readouterr()
    assert main(["dead-letters", "--stack", STACK, "--delete-settled"]) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert "0 settled messages deleted" in text and "reviewtune-going: TUNING" in text


@pytest.mark.parametrize("body", ["[1, 2]", "42", '"text"', "null"])
def test_a_body_that_is_json_but_no_event_is_shown_as_such_and_left_in_its_queue(deployed, capsys, body):
    send(deployed["StartTuning"], body, ErrorMessage="boom")
    capsys.readouterr()
    assert main(["dead-letters", "--stack", STACK, "--json"]) == 1
    [message] = {s["function"]: s for s in json.loads(capsys.readouterr().out)}["StartTuning"]["messages"]
    assert message["about"].startswith("not an event") and message["run_now"] == "-"
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=deployed["StartTuning"], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "1"  # seen, and visible again for the next reader


def test_the_exit_status_says_whether_any_queue_still_holds_a_message(stack, deployed, capsys):
    assert main(["dead-letters", "--stack", STACK]) == 0  # every queue empty
    with_run(stack, "reviewtune-done", "incoming/done.tsv", "SUCCEEDED", sent=True)
    send(deployed["StartEvaluation"], _job_event("tuning", "reviewtune-done"), ErrorMessage="Task timed out")
    assert main(["dead-letters", "--stack", STACK]) == 1  # settled, but still there: its alarm is on
    assert main(["dead-letters", "--stack", STACK, "--delete-settled"]) == 0  # deleted: nothing left
    assert main(["dead-letters", "--stack", STACK]) == 0
