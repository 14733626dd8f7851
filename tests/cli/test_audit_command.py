"""`reviewtune audit` against moto: every file version under incoming/ beside its run, matched by key and version
(whatever the run's id), a version without one named, an ended run's outcome message sent or not, a run past its
deadline, and the exit status telling whether anything is owed for over an hour.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.console import audit
from reviewtune.core import claims
from reviewtune.core.runs import RunsRepository, RunStatus, now_iso
from tests.cli.test_runs_commands import STACK, deployed, put_run, run_json  # noqa: F401  (deployed: a fixture)

BODY = b"sentiment\treview_body\n1\tgood\n"
HOUR = timedelta(seconds=audit.DEFAULT_GRACE_SECONDS)


@pytest.fixture
def stack(deployed):  # noqa: F811
    return deployed


def drop(stack, key: str) -> str:
    return boto3.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=BODY)["VersionId"]


def repository(stack) -> RunsRepository:
    return RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table))


def with_run(stack, run_id: str, key: str, status: str = "CLAIMED", sent: bool = False) -> str:
    """A dropped version and its run, moved to ``status`` through the state machine as the handlers move it (the
    outcome message recorded in the same write), and that message sent when ``sent``."""
    version = drop(stack, key)
    runs = repository(stack)
    assert runs.create({"run_id": run_id, "dataset": key.removeprefix("incoming/"), "status": "CLAIMED",
                        "source": {"bucket": stack.bucket, "key": key, "version_id": version}})
    path = {"CLAIMED": [], "TUNING": ["TUNING"], "FAILED": ["FAILED"], "SUCCEEDED": ["TUNING", "EVALUATING", "SUCCEEDED"]}
    current = RunStatus.CLAIMED
    for step in map(RunStatus, path[status]):
        notice = (f"{step}: {run_id}", "what happened") if step in (RunStatus.SUCCEEDED, RunStatus.FAILED) else None
        assert runs.transition(run_id, current, step, notice=notice)
        current = step
    if sent:
        assert runs.mark_sent(run_id, status, f"sns-{run_id}")
    return version


def rows_by_run(rows):
    return {row["run_id"]: row for row in rows}


def test_audit_shows_each_version_with_its_run_and_its_outcome_message(stack, capsys):
    first = with_run(stack, "reviewtune-a1", "incoming/team/r.tsv", "SUCCEEDED", sent=True)
    second = drop(stack, "incoming/team/r.tsv")  # a second version whose event has not come yet
    other = with_run(stack, "other-prefix-b1", "incoming/b.csv", "FAILED")  # another prefix; its message not sent yet
    going = with_run(stack, "reviewtune-c1", "incoming/c.tsv", "TUNING")
    boto3.client("s3").put_object(Bucket=stack.bucket, Key="incoming/team/", Body=b"")  # a folder marker: no run owed
    boto3.client("s3").put_object(Bucket=stack.bucket, Key="rejected/x.tsv", Body=BODY)  # outside incoming/

    rows = run_json(capsys, "audit")

    assert {(r["key"], r["version_id"], r["run_id"], r["status"], r["problem"]) for r in rows} == {
        ("incoming/team/r.tsv", first, "reviewtune-a1", "SUCCEEDED", None),
        ("incoming/team/r.tsv", second, None, "no run yet", None),
        ("incoming/b.csv", other, "other-prefix-b1", "FAILED", None),
        ("incoming/c.tsv", going, "reviewtune-c1", "TUNING", None),
    }
    told = rows_by_run(rows)
    assert told["reviewtune-a1"]["message_id"] == "sns-reviewtune-a1" and told["reviewtune-a1"]["message_sent_at"]
    assert told["other-prefix-b1"]["message_recorded_at"] and told["other-prefix-b1"]["message_sent_at"] is None
    assert told["reviewtune-c1"]["message_recorded_at"] is None  # no outcome yet, so none owed
    assert [r["key"] for r in run_json(capsys, "audit", "--dataset", "team")] == ["incoming/team/r.tsv"] * 2
    assert main(["audit", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("4 versions: 2 ended (1 told), 1 in progress, 1 written within the hour without a run yet; owed for over "
            "an hour: 0 without a run, 0 outcomes not told, 0 past the deadline") in out
    assert "not sent yet (recorded" in out


def test_audit_exits_1_when_a_version_over_the_grace_has_no_run(stack, capsys):
    version = drop(stack, "incoming/lost.tsv")
    # a grace of 0: the file counts as past it at once
    assert main(["audit", "--stack", STACK, "--json", "--grace-minutes", "0"]) == 1

    [row] = json.loads(capsys.readouterr().out)
    assert (row["key"], row["version_id"], row["run_id"], row["status"], row["problem"]) == (
        "incoming/lost.tsv", version, None, "no run", "no run")


def test_an_outcome_message_unsent_for_an_hour_and_a_run_an_hour_past_its_deadline_are_owed(stack, capsys):
    with_run(stack, "reviewtune-told", "incoming/told.tsv", "SUCCEEDED", sent=True)
    with_run(stack, "reviewtune-untold", "incoming/untold.tsv", "FAILED")
    with_run(stack, "reviewtune-stuck", "incoming/stuck.tsv", "CLAIMED")  # its deadline: an hour from now
    with_run(stack, "reviewtune-waiting", "incoming/waiting.tsv", "CLAIMED")
    runs, s3 = repository(stack), boto3.client("s3")
    assert runs.update_if("reviewtune-stuck", "CLAIMED", restarts=1)  # the reconciler restarted it once
    deadline = datetime.fromisoformat(runs.get("reviewtune-stuck")["deadline_at"].replace("Z", "+00:00"))

    def problems(now):
        return {r["run_id"]: r["problem"] for r in audit.audit(s3, runs, stack.bucket, None, 7, now=now)}

    soon = datetime.now(UTC) + HOUR - timedelta(minutes=2)  # the FAILED message a little under an hour unsent
    assert problems(soon) == {"reviewtune-told": None, "reviewtune-untold": None, "reviewtune-stuck": None,
                              "reviewtune-waiting": None}
    later = deadline + HOUR + timedelta(seconds=1)  # over an hour past the CLAIMED runs' deadline
    assert problems(later) == {"reviewtune-told": None, "reviewtune-untold": audit.NOT_TOLD,
                               "reviewtune-stuck": audit.OVERDUE, "reviewtune-waiting": None}
    # a claim no restart has tried yet waits for one (claims.awaits_first_restart): owed only past that too
    last = deadline + timedelta(seconds=claims.UNRESTARTED_CLAIM_GRACE_SECONDS) + HOUR + timedelta(seconds=1)
    assert problems(last)["reviewtune-waiting"] == audit.OVERDUE

    runs.mark_sent("reviewtune-untold", "FAILED", "sns-late")  # the reconciler sent it after all
    assert problems(later)["reviewtune-untold"] is None


def test_an_ended_run_without_a_recorded_message_is_owed_one_and_the_command_exits_1(stack, capsys):
    version = drop(stack, "incoming/old.tsv")
    put_run(stack, "reviewtune-old", "old.tsv", "FAILED", 1)  # ended without an outbox entry for its outcome
    repository(stack).update("reviewtune-old", source={"bucket": stack.bucket, "key": "incoming/old.tsv",
                                                       "version_id": version}, updated_at=now_iso())
    assert main(["audit", "--stack", STACK, "--grace-minutes", "0"]) == 1

    out = " ".join(capsys.readouterr().out.split())
    assert "no message recorded" in out and "1 outcome not told" in out


def test_the_grace_is_the_caller_s_both_for_versions_without_a_run_and_for_what_runs_owe(stack, capsys):
    with_run(stack, "reviewtune-untold", "incoming/untold.tsv", "FAILED")  # its message recorded, not sent
    lost = drop(stack, "incoming/lost.tsv")
    runs, s3 = repository(stack), boto3.client("s3")

    def problems(grace_hours):
        rows = audit.audit(s3, runs, stack.bucket, None, 7, now=datetime.now(UTC) + timedelta(hours=2),
                           grace_seconds=grace_hours * 3600)
        return {(r["run_id"] or r["version_id"]): (r["status"], r["problem"]) for r in rows}

    assert problems(3) == {"reviewtune-untold": ("FAILED", None), lost: (audit.NO_RUN_YET, None)}
    assert problems(1) == {"reviewtune-untold": ("FAILED", audit.NOT_TOLD), lost: (audit.MISSING, audit.MISSING)}
    with pytest.raises(ValueError, match="cannot be negative"):
        audit.audit(s3, runs, stack.bucket, None, 7, grace_seconds=-1)


def test_grace_minutes_zero_names_at_once_what_is_not_settled_and_exits_1(stack, capsys):
    version = drop(stack, "incoming/fresh.tsv")
    assert main(["audit", "--stack", STACK]) == 0  # within the default hour: on its way
    assert "1 written within the hour without a run yet" in " ".join(capsys.readouterr().out.split())

    assert main(["audit", "--stack", STACK, "--grace-minutes", "0"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "0 written within the last 0 minutes without a run yet; owed for over 0 minutes: 1 without a run" in out
    assert main(["audit", "--stack", STACK, "--grace-minutes", "0", "--json"]) == 1
    [row] = json.loads(capsys.readouterr().out)
    assert (row["version_id"], row["problem"]) == (version, audit.MISSING)


def test_the_defaults_are_the_stack_s_own_sweep_s_grace_and_window(stack, capsys):
    """A stack deployed with MissedDropGraceMinutes / MissedDropWindowDays: the audit waits as long as its reconciler
    before a version without a run is a problem, and looks back as far, unless told otherwise."""
    drop(stack, "incoming/fresh.tsv")
    boto3.client("cloudformation").create_stack(StackName="reviewtune-slow", TemplateBody=json.dumps({
        "Parameters": {"MissedDropGraceMinutes": {"Type": "Number"}, "MissedDropWindowDays": {"Type": "Number"}},
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"RunsTableName": {"Value": stack.runs_table}, "DataBucketName": {"Value": stack.bucket}},
    }), Parameters=[{"ParameterKey": "MissedDropGraceMinutes", "ParameterValue": "180"},
                    {"ParameterKey": "MissedDropWindowDays", "ParameterValue": "3"}])

    assert main(["audit", "--stack", "reviewtune-slow"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "of the last 3 days" in out and "1 written within the last 180 minutes without a run yet" in out
    assert main(["audit", "--stack", "reviewtune-slow", "--grace-minutes", "0", "--days", "1"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "of the last 1 day (" in out and "owed for over 0 minutes: 1 without a run" in out
    # the fixture's stack has no such parameters (deployed before them): an hour and a week
    assert main(["audit", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "of the last 7 days" in out and "1 written within the hour without a run yet" in out


@pytest.mark.parametrize(("parameters", "expected"), [
    ({}, (3600, 7)),
    ({"MissedDropGraceMinutes": "90", "MissedDropWindowDays": "14"}, (5400, 14)),
    ({"MissedDropGraceMinutes": "", "MissedDropWindowDays": "soon"}, (3600, 7)),
    ({"MissedDropGraceMinutes": "-5", "MissedDropWindowDays": "inf"}, (3600, 7)),
])
def test_stack_defaults_fall_back_to_the_template_s_defaults(parameters, expected):
    assert audit.stack_defaults(parameters) == expected


@pytest.mark.parametrize("option", ["--grace-minutes", "--days"])
@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
def test_a_span_that_is_not_zero_or_more_is_refused_with_the_option_named(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", option, value])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_audit_of_a_folder_leaves_out_the_folders_whose_names_start_alike(stack, capsys):
    """`audit --dataset team-a` is one team's check: team-ab's file owed a run is not its debt."""
    with_run(stack, "reviewtune-a1", "incoming/team-a/r.tsv", "SUCCEEDED", sent=True)
    drop(stack, "incoming/team-ab/r.tsv")  # no run: owed one past the grace
    drop(stack, "incoming/team-a.tsv")

    for typed in ("team-a", "team-a/"):
        assert [r["key"] for r in run_json(capsys, "audit", "--dataset", typed, "--grace-minutes", "0")] == [
            "incoming/team-a/r.tsv"]
        assert main(["audit", "--dataset", typed, "--grace-minutes", "0", "--stack", STACK]) == 0
        capsys.readouterr()
    assert [r["key"] for r in run_json(capsys, "audit", "--dataset", "team-a.tsv")] == ["incoming/team-a.tsv"]
    assert main(["audit", "--grace-minutes", "0", "--stack", STACK]) == 1  # the whole bucket: both owed


def test_audit_of_a_dataset_finds_its_versions_whose_keys_are_written_decomposed(stack, capsys):
    """macOS writes file names with decomposed accents: such a key is the same dataset (NFC) however it is typed."""
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "café")
    drop(stack, f"incoming/{decomposed}/r.tsv")  # its event lost: owed a run

    for typed in ("café", decomposed, "café/r.tsv"):
        assert main(["audit", "--dataset", typed, "--grace-minutes", "0", "--stack", STACK, "--json"]) == 1  # owed
        assert [r["dataset"] for r in json.loads(capsys.readouterr().out)] == ["café/r.tsv"]
