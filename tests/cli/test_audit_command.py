"""`reviewtune audit` against moto: every file version under incoming/ beside its run, matched by key and version
(whatever the run's id), a version without one named, and the exit status telling whether one over an hour old
has none.
"""

from __future__ import annotations

import json

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.core import missed_drops
from reviewtune.core.runs import RunsRepository
from tests.cli.test_runs_commands import STACK, deployed, put_run, run_json  # noqa: F401  (deployed: a fixture)

BODY = b"sentiment\treview_body\n1\tgood\n"


@pytest.fixture
def stack(deployed):  # noqa: F811
    return deployed


def drop(stack, key: str) -> str:
    return boto3.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=BODY)["VersionId"]


def with_run(stack, run_id: str, key: str, status: str) -> str:
    version = drop(stack, key)
    put_run(stack, run_id, key.removeprefix("incoming/"), status, 1)
    RunsRepository(boto3.resource("dynamodb").Table(stack.runs_table)).update(
        run_id, source={"bucket": stack.bucket, "key": key, "version_id": version})
    return version


def test_audit_shows_each_version_with_its_run_and_one_without(stack, capsys):
    first = with_run(stack, "reviewtune-a1", "incoming/team/r.tsv", "SUCCEEDED")
    second = drop(stack, "incoming/team/r.tsv")  # a second version whose event has not come yet
    other = with_run(stack, "other-prefix-b1", "incoming/b.csv", "FAILED")  # named under another prefix
    boto3.client("s3").put_object(Bucket=stack.bucket, Key="incoming/team/", Body=b"")  # a folder marker: no run owed
    boto3.client("s3").put_object(Bucket=stack.bucket, Key="rejected/x.tsv", Body=BODY)  # outside incoming/

    rows = run_json(capsys, "audit")

    assert {(r["key"], r["version_id"], r["run_id"], r["status"]) for r in rows} == {
        ("incoming/team/r.tsv", first, "reviewtune-a1", "SUCCEEDED"),
        ("incoming/team/r.tsv", second, None, "no run yet"),
        ("incoming/b.csv", other, "other-prefix-b1", "FAILED"),
    }
    assert [r["key"] for r in run_json(capsys, "audit", "--dataset", "team")] == ["incoming/team/r.tsv"] * 2
    assert main(["audit", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 versions, 2 with a run, 1 written within the hour without one yet, 0 without one" in out


def test_audit_exits_1_when_a_version_over_the_grace_has_no_run(stack, capsys, monkeypatch):
    version = drop(stack, "incoming/lost.tsv")
    monkeypatch.setattr(missed_drops, "GRACE_SECONDS", 0)  # the file counts as over an hour old at once

    assert main(["audit", "--stack", STACK, "--json"]) == 1

    [row] = json.loads(capsys.readouterr().out)
    assert (row["key"], row["version_id"], row["run_id"], row["status"]) == ("incoming/lost.tsv", version, None, "no run")
