"""A dropped file whose "Object Created" event never came still gets its run: the reconciler lists incoming/.

GIVEN the handlers on moto with an in-memory SageMaker, WHEN a file lands in incoming/ and its event is never
delivered (nor dead-lettered), THEN a reconciler pass an hour later claims its run (marked as found by the sweep),
a later pass starts it, and it ends in one outcome told once, as if the event had come; an event that does come late
finds the claim and goes on with it; what start_tuning gives no outcome is left alone.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from reviewtune.core import claims, missed_drops, names, reconciler, states, tuning
from reviewtune.core.runs import RunsRepository, now_iso, parse_iso
from tests.functional.pipeline import Pipeline, good_file, later
from tests.support.aws import REGION, load_event
from tests.support.faults import Failing, TableWithClient


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def put(pipeline: Pipeline, key: str, body: bytes) -> dict:
    """A file written to S3 whose event is never delivered; its version."""
    return boto3.client("s3", region_name=REGION).put_object(Bucket=pipeline.stack.bucket, Key=key, Body=body)


def run_id_of(pipeline: Pipeline, key: str, written: dict) -> str:
    obj = tuning.DroppedObject(pipeline.stack.bucket, key, written["VersionId"], written["ETag"].strip('"'), None)
    return tuning.run_id_of(obj, pipeline.settings)


def runs_of(pipeline: Pipeline) -> list[dict]:
    table = RunsRepository(pipeline.clients.runs_table).table
    return [item for item in table.scan()["Items"] if "status" in item]


def test_a_file_whose_event_never_came_is_claimed_after_an_hour_started_and_told_once(pipeline):
    written = put(pipeline, "incoming/team/lost.tsv", good_file())
    run_id = run_id_of(pipeline, "incoming/team/lost.tsv", written)

    early = pipeline.reconcile(later(0.5))  # its event may still be on its way
    assert early["missed_drops"]["looked_at"] == 0 and runs_of(pipeline) == []

    found = pipeline.reconcile(later(1.5))

    assert found["missed_drops"] == {"listed": 1, "looked_at": 1, "claimed": 1, "unread": 0, "failed": 0,
                                     "named_otherwise": 0, "resumed": False, "more": False,
                                     "cut_short": False}
    run = pipeline.run(run_id)
    assert run["status"] == "CLAIMED" and run["found_by_sweep"]
    # claimed at the pass's clock, which its timeline shows too
    assert run["created_at"] == run["status_history"]["CLAIMED"] == run["found_by_sweep"]
    assert run["source"] == {"bucket": pipeline.stack.bucket, "key": "incoming/team/lost.tsv",
                             "version_id": written["VersionId"], "etag": written["ETag"].strip('"'), "size": len(good_file())}
    assert pipeline.reconcile(later(1.6))["missed_drops"]["claimed"] == 0  # claimed once
    pipeline.reconcile(later(1.8))  # the claim is stale (15 min) and within its hour: started over from the file
    assert pipeline.run(run_id)["status"] == "TUNING"
    pipeline.succeed(run_id)
    assert [s for s in pipeline.statuses_told(run_id) if s in states.FINAL_STATUSES] == ["SUCCEEDED"]
    [told] = pipeline.messages(run_id)
    assert run["found_by_sweep"].endswith("Z")
    found_at = run["found_by_sweep"][:19].replace("T", " ") + " UTC"  # 2026-12-04T22:17:49.030Z -> ... 22:17:49 UTC
    assert f"The file's Object Created event never came: reviewtune found it in incoming/ at {found_at}" in told["Message"]


@pytest.mark.parametrize("outcome", ["REJECTED", "DUPLICATE"])
def test_a_rejected_or_duplicate_file_whose_event_never_came_says_so_in_its_message(pipeline, outcome):
    if outcome == "DUPLICATE":
        pipeline.start_tuning(pipeline.drop_event("incoming/team/lost.tsv", good_file()))  # the same bytes, tuning
    key, body = ("incoming/team/lost.xlsx", b"x") if outcome == "REJECTED" else ("incoming/team/lost.tsv", good_file())
    written = put(pipeline, key, body)
    run_id = run_id_of(pipeline, key, written)
    pipeline.reconcile(later(1.5))  # claimed by the sweep
    pipeline.reconcile(later(1.8))  # started over from the file: its outcome

    run = pipeline.run(run_id)
    assert run["status"] == outcome and run["found_by_sweep"]
    [told] = pipeline.messages(run_id)
    assert "The file's Object Created event never came: reviewtune found it in incoming/ at " in told["Message"]


def test_an_event_that_comes_after_the_sweep_claimed_the_run_goes_on_with_that_run(pipeline):
    event = pipeline.drop_event("incoming/late.tsv")
    assert pipeline.reconcile(later(1.5))["missed_drops"]["claimed"] == 1

    result = pipeline.start_tuning(event)

    assert result["status"] == "TUNING" and len(runs_of(pipeline)) == 1
    assert pipeline.run(result["run_id"])["found_by_sweep"]


def test_files_with_runs_folder_markers_and_old_versions_are_left_alone(pipeline):
    result = pipeline.start_tuning(pipeline.drop_event("incoming/seen.tsv"))  # its event came
    put(pipeline, "incoming/team/", b"")  # the console's "Create folder"
    put(pipeline, "rejected/elsewhere.tsv", good_file(1))  # outside incoming/

    swept = pipeline.reconcile(later(1.5))["missed_drops"]
    assert (swept["listed"], swept["looked_at"], swept["claimed"]) == (2, 1, 0)

    old = put(pipeline, "incoming/old.tsv", good_file(2))
    swept = pipeline.reconcile(later(24 * 8))["missed_drops"]  # a week and a day later: out of the window
    assert swept["looked_at"] == 0 and swept["claimed"] == 0
    assert [r["run_id"] for r in runs_of(pipeline)] == [result["run_id"]]
    assert run_id_of(pipeline, "incoming/old.tsv", old) != result["run_id"]


def test_the_stack_s_grace_and_window_set_which_versions_the_pass_claims(pipeline):
    """MissedDropGraceMinutes / MissedDropWindowDays (the reconciler's environment): a stack whose StartTuning events
    may wait longer gives them longer before it claims their runs, and looks further back."""
    settings = dataclasses.replace(pipeline.settings, missed_drop_grace_minutes=180, missed_drop_window_days=10)
    written = put(pipeline, "incoming/slow.tsv", good_file())

    assert reconciler.reconcile(settings, pipeline.clients, later(2.5))["missed_drops"]["looked_at"] == 0
    assert reconciler.reconcile(pipeline.settings, pipeline.clients, later(24 * 9))["missed_drops"]["looked_at"] == 0
    assert reconciler.reconcile(settings, pipeline.clients, later(24 * 9))["missed_drops"]["claimed"] == 1
    assert pipeline.run(run_id_of(pipeline, "incoming/slow.tsv", written))["found_by_sweep"]


def test_grace_and_window_are_read_from_the_environment_and_checked():
    from reviewtune.core.config import Settings
    from reviewtune.core.errors import ConfigError

    env = {"BUCKET_NAME": "b", "RUNS_TABLE_NAME": "t", "TOPIC_ARN": "a", "SAGEMAKER_ROLE_ARN": "r"}
    read = Settings.from_env({**env, "MISSED_DROP_GRACE_MINUTES": "240", "MISSED_DROP_WINDOW_DAYS": "30"})
    assert (read.missed_drop_grace_minutes, read.missed_drop_window_days) == (240, 30)
    with pytest.raises(ConfigError, match=r"MISSED_DROP_GRACE_MINUTES \(1440\) must be shorter than"):
        Settings.from_env({**env, "MISSED_DROP_GRACE_MINUTES": "1440", "MISSED_DROP_WINDOW_DAYS": "1"})
    with pytest.raises(ConfigError, match="MISSED_DROP_WINDOW_DAYS must be >= 1"):
        Settings.from_env({**env, "MISSED_DROP_WINDOW_DAYS": "0"})


def test_a_version_whose_claim_dynamodb_refuses_keeps_no_other_version_unclaimed(pipeline):
    """One version's run cannot be written (here DynamoDB refuses it every time); the pass still claims the others,
    counts it, and a later pass claims it once DynamoDB takes it. An object keyed incoming/ itself (a dataset
    without a name) is claimed like any other."""
    first = put(pipeline, "incoming/", b"sentiment\treview_body\n1\tgreat\n")
    refused = put(pipeline, "incoming/team/refused.tsv", good_file(1))
    lost = put(pipeline, "incoming/team/lost.tsv", good_file(2))
    table = pipeline.clients.runs_table
    failing = Failing(table, "put_item", "ValidationException", failures=None,
                      when=lambda call: call["Item"].get("source", {}).get("key") == "incoming/team/refused.tsv")
    pipeline.use("runs_table", failing)

    result = pipeline.reconcile(later(1.5))
    swept = result["missed_drops"]

    assert (swept["looked_at"], swept["claimed"], swept["failed"]) == (3, 2, 1)
    assert result["errors"]["missed_drops"].startswith("1 version(s) without a run could not be looked up or claimed")
    assert pipeline.run(run_id_of(pipeline, "incoming/", first))["dataset"] == names.NAMELESS_DATASET
    assert pipeline.run(run_id_of(pipeline, "incoming/team/lost.tsv", lost))["status"] == "CLAIMED"
    pipeline.use("runs_table", table)
    again = pipeline.reconcile(later(1.6))
    assert again["missed_drops"]["claimed"] == 1 and "missed_drops" not in again["errors"]
    assert pipeline.run(run_id_of(pipeline, "incoming/team/refused.tsv", refused))["found_by_sweep"]


def test_a_long_listing_goes_on_over_several_passes(pipeline, monkeypatch):
    monkeypatch.setattr(missed_drops, "MAX_VERSIONS_PER_PASS", 2)
    written = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(
        ("incoming/a.tsv", "incoming/b.tsv", "incoming/c.tsv"))}

    first = pipeline.reconcile(later(1.5))["missed_drops"]
    second = pipeline.reconcile(later(1.6))["missed_drops"]
    third = pipeline.reconcile(later(1.7))["missed_drops"]

    assert (first["listed"], first["claimed"], first["resumed"], first["more"]) == (2, 2, False, True)
    assert (second["listed"], second["claimed"], second["resumed"], second["more"]) == (1, 1, True, False)
    assert (third["listed"], third["claimed"], third["resumed"], third["more"]) == (2, 0, False, True)
    assert sorted(r["run_id"] for r in runs_of(pipeline)) == sorted(
        run_id_of(pipeline, key, version) for key, version in written.items())


def test_a_kept_place_whose_version_was_deleted_and_that_s3_refuses_lists_from_the_start(pipeline, monkeypatch):
    monkeypatch.setattr(missed_drops, "MAX_VERSIONS_PER_PASS", 2)
    written = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(
        ("incoming/a.tsv", "incoming/b.tsv", "incoming/c.tsv"))}
    assert pipeline.reconcile(later(1.5))["missed_drops"]["claimed"] == 2  # a and b; the place kept is b's version
    gone = written["incoming/b.tsv"]["VersionId"]
    boto3.client("s3", region_name=REGION).delete_object(Bucket=pipeline.stack.bucket, Key="incoming/b.tsv",
                                                           VersionId=gone)
    # S3 refuses a version id it no longer has as a marker (moto lists nothing after it instead)
    refusing = Failing(pipeline.clients.s3, "list_object_versions", "InvalidArgument", failures=None,
                       when=lambda call: call.get("VersionIdMarker") == gone)
    pipeline.use("s3", refusing)

    second = pipeline.reconcile(later(1.6))
    third = pipeline.reconcile(later(1.7))["missed_drops"]

    assert "missed_drops" not in second["errors"] and refusing.failed == 1
    swept = second["missed_drops"]
    assert (swept["listed"], swept["claimed"], swept["resumed"]) == (2, 1, False)  # a (has its run) and c
    assert pipeline.run(run_id_of(pipeline, "incoming/c.tsv", written["incoming/c.tsv"]))["status"] == "CLAIMED"
    assert refusing.failed == 1 and third["resumed"] is False  # the refused place was not kept: the next pass
    # starts from the start too (the listing of the second pass ended)


def test_a_kept_place_s3_refuses_for_another_reason_is_kept_for_the_next_pass(pipeline, monkeypatch):
    monkeypatch.setattr(missed_drops, "MAX_VERSIONS_PER_PASS", 2)
    written = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(
        ("incoming/a.tsv", "incoming/b.tsv", "incoming/c.tsv"))}
    pipeline.reconcile(later(1.5))
    pipeline.use("s3", Failing(pipeline.clients.s3, "list_object_versions", "SlowDown", failures=1))

    refused = pipeline.reconcile(later(1.6))
    resumed = pipeline.reconcile(later(1.7))["missed_drops"]

    assert "SlowDown" in refused["errors"]["missed_drops"]
    assert (resumed["listed"], resumed["claimed"], resumed["resumed"]) == (1, 1, True)
    assert pipeline.run(run_id_of(pipeline, "incoming/c.tsv", written["incoming/c.tsv"]))["status"] == "CLAIMED"


class Clock:
    """The invocation's time left as a pass spends it: ``seconds`` less one for each DynamoDB write."""

    def __init__(self, pipeline: Pipeline, seconds: float):
        self.left = seconds
        table = pipeline.clients.runs_table
        real_put = table.put_item

        def put_item(**kwargs):
            self.left -= 1
            return real_put(**kwargs)

        table.put_item = put_item

    def __call__(self) -> float:
        return self.left


def test_a_sweep_whose_time_runs_short_claims_the_rest_next_pass_and_leaves_the_pass_its_time(pipeline, monkeypatch):
    # a burst of drops whose events never came: a claim each would take the pass, and its runs' steps after it
    monkeypatch.setattr(missed_drops, "MAX_VERSIONS_PER_PASS", 4)  # two passes of listing
    monkeypatch.setattr(missed_drops, "MIN_LOOKUPS_PER_PASS", 1)
    keys = [f"incoming/burst/{i}.tsv" for i in range(6)]
    written = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(keys)}
    expected = {run_id_of(pipeline, key, version) for key, version in written.items()}
    spent, left_after_sweep = [], []
    sweep = reconciler.claim_missed_drops

    def timed_sweep(*args, **kwargs):
        swept = sweep(*args, **kwargs)
        left_after_sweep.append(clock.left)
        return swept

    monkeypatch.setattr(reconciler, "claim_missed_drops", timed_sweep)
    for hour in (1.5, 1.6, 1.7, 1.8):
        clock = Clock(pipeline, reconciler.SWEEP_SECONDS_RESERVED + 2.5)  # time for three claims
        swept = reconciler.reconcile(pipeline.settings, pipeline.clients, later(hour), seconds_left=clock)
        spent.append((swept["missed_drops"]["claimed"], swept["missed_drops"]["cut_short"]))
    # the sweep stops at the reserve: at most the claim under way (and the place's write) past it
    assert min(left_after_sweep) >= reconciler.SWEEP_SECONDS_RESERVED - 2

    assert {run["run_id"] for run in runs_of(pipeline)} == expected
    # three claims a pass at most; a pass cut short goes on next time just past its last claim, so no version waits
    # for the listing to wrap around
    assert spent == [(3, True), (3, False), (0, False), (0, False)]


def test_a_sweep_without_time_left_still_claims_its_first_versions(pipeline, monkeypatch):
    monkeypatch.setattr(missed_drops, "MIN_LOOKUPS_PER_PASS", 2)
    for i in range(3):
        put(pipeline, f"incoming/late/{i}.tsv", good_file(i))

    claimed = [reconciler.reconcile(pipeline.settings, pipeline.clients, later(hour), seconds_left=lambda: 0)
               ["missed_drops"]["claimed"] for hour in (1.5, 1.6)]

    assert claimed == [2, 1] and len(runs_of(pipeline)) == 3


def test_versions_looked_up_every_pass_without_a_claim_do_not_hold_a_short_sweep_at_its_place(pipeline, monkeypatch):
    """Runs named under an earlier JobNamePrefix are looked up, never claimed: a sweep cut short after them goes on
    from just past them, so the drop listed after them is claimed."""
    monkeypatch.setattr(missed_drops, "MIN_LOOKUPS_PER_PASS", 2)
    for i in range(3):  # three files with their runs, under the stack's prefix before
        pipeline.start_tuning(pipeline.drop_event(f"incoming/a/{i}.tsv", good_file(i)))
    renamed = dataclasses.replace(pipeline.settings, job_name_prefix="renamed")
    written = put(pipeline, "incoming/z.tsv", good_file(9))  # its event never came
    lost = tuning.run_id_of(tuning.DroppedObject(pipeline.stack.bucket, "incoming/z.tsv", written["VersionId"],
                                                 written["ETag"].strip('"'), None), renamed)

    swept = [reconciler.reconcile(renamed, pipeline.clients, later(hour), seconds_left=lambda: 0)["missed_drops"]
             for hour in (1.5, 1.6)]

    assert [(s["named_otherwise"], s["claimed"], s["cut_short"]) for s in swept] == [(2, 0, True), (1, 1, False)]
    assert pipeline.run(lost)["status"] == "CLAIMED"


def test_a_short_sweep_keeps_its_place_before_a_version_whose_claim_was_refused(pipeline, monkeypatch):
    """A claim DynamoDB refused, then the pass's time ran short: the next pass lists again from before that version
    (not from past the last one looked up), so it is claimed without waiting for the listing to wrap around."""
    monkeypatch.setattr(missed_drops, "MIN_LOOKUPS_PER_PASS", 2)
    written = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(
        ("incoming/a.tsv", "incoming/b.tsv", "incoming/c.tsv", "incoming/d.tsv"))}
    table = pipeline.clients.runs_table
    pipeline.use("runs_table", Failing(table, "put_item", "ThrottlingException", failures=None,
                                       when=lambda call: call["Item"].get("source", {}).get("key") == "incoming/a.tsv"))
    first = reconciler.reconcile(pipeline.settings, pipeline.clients, later(1.5), seconds_left=lambda: 0)
    pipeline.use("runs_table", table)
    second = reconciler.reconcile(pipeline.settings, pipeline.clients, later(1.6), seconds_left=lambda: 0)

    assert [(p["missed_drops"]["claimed"], p["missed_drops"]["failed"]) for p in (first, second)] == [(1, 1), (2, 0)]
    assert pipeline.run(run_id_of(pipeline, "incoming/a.tsv", written["incoming/a.tsv"]))["status"] == "CLAIMED"


def test_a_long_listing_goes_on_from_before_a_version_whose_claim_met_a_moment_s_error(pipeline, monkeypatch):
    """incoming/ holds more versions than a pass lists: a claim throttled in one pass is tried in the next, not after
    the listing has wrapped around; a refusal that lasts does not hold the sweep in its place."""
    monkeypatch.setattr(missed_drops, "MAX_VERSIONS_PER_PASS", 2)
    keys = ("incoming/a.tsv", "incoming/b.tsv", "incoming/c.tsv", "incoming/d.tsv", "incoming/e.tsv")
    written = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(keys)}
    table = pipeline.clients.runs_table

    def refusing(key: str, code: str) -> Failing:
        return Failing(table, "put_item", code, failures=None,
                       when=lambda call: call["Item"].get("source", {}).get("key") == key)

    def claimed() -> set[str]:
        return {key for key in keys if pipeline.stack.run(run_id_of(pipeline, key, written[key])) is not None}

    pipeline.use("runs_table", refusing("incoming/b.tsv", "ThrottlingException"))
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(1.5))
    assert claimed() == {"incoming/a.tsv"}
    pipeline.use("runs_table", refusing("incoming/c.tsv", "ValidationException"))
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(1.6))
    assert claimed() == {"incoming/a.tsv", "incoming/b.tsv"}  # b at once; c refused for good is passed over
    pipeline.use("runs_table", table)
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(1.7))
    assert claimed() == {"incoming/a.tsv", "incoming/b.tsv", "incoming/d.tsv", "incoming/e.tsv"}


def test_a_version_whose_claim_keeps_meeting_a_moment_s_error_does_not_hold_a_long_listing_in_place(pipeline, monkeypatch):
    monkeypatch.setattr(missed_drops, "MAX_VERSIONS_PER_PASS", 2)
    keys = ("incoming/a.tsv", "incoming/b.tsv", "incoming/c.tsv", "incoming/d.tsv", "incoming/e.tsv")
    written = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(keys)}
    pipeline.use("runs_table", Failing(pipeline.clients.runs_table, "put_item", "ThrottlingException", failures=None,
                                       when=lambda call: call["Item"].get("source", {}).get("key") == "incoming/b.tsv"))

    for hour in (1.5, 1.6, 1.7):
        reconciler.reconcile(pipeline.settings, pipeline.clients, later(hour))

    claimed = {key for key in keys if pipeline.stack.run(run_id_of(pipeline, key, written[key])) is not None}
    assert claimed == {"incoming/a.tsv", "incoming/c.tsv", "incoming/d.tsv", "incoming/e.tsv"}  # b: a later round


def test_a_listing_s3_refuses_is_an_error_of_the_pass_and_the_next_pass_finds_the_file(pipeline):
    written = put(pipeline, "incoming/x.tsv", good_file())
    pipeline.use("s3", Failing(pipeline.clients.s3, "list_object_versions", "SlowDown", failures=1))

    refused = pipeline.reconcile(later(1.5))
    assert "SlowDown" in refused["errors"]["missed_drops"] and runs_of(pipeline) == []

    assert pipeline.reconcile(later(1.6))["missed_drops"]["claimed"] == 1
    assert pipeline.run(run_id_of(pipeline, "incoming/x.tsv", written))["status"] == "CLAIMED"


def test_keys_with_odd_characters_are_listed_as_stored(pipeline):
    key = "incoming/équipe/avis (mai) +1 & 100%.tsv"
    written = put(pipeline, key, good_file())

    assert pipeline.reconcile(later(1.5))["missed_drops"]["claimed"] == 1

    run = pipeline.run(run_id_of(pipeline, key, written))
    assert run["source"]["key"] == key and run["dataset"] == names.dataset_name(key)


def test_a_file_whose_run_was_named_under_another_job_name_prefix_is_not_claimed_again(pipeline):
    result = pipeline.start_tuning(pipeline.drop_event("incoming/team/seen.tsv"))
    renamed = dataclasses.replace(pipeline.settings, job_name_prefix="renamed")  # the stack's JobNamePrefix changed
    assert tuning.run_id_of(tuning.dropped_object(pipeline.run(result["run_id"])), renamed) != result["run_id"]

    swept = reconciler.reconcile(renamed, pipeline.clients, later(1.5))["missed_drops"]

    assert (swept["looked_at"], swept["named_otherwise"], swept["claimed"]) == (1, 1, 0)
    assert [r["run_id"] for r in runs_of(pipeline)] == [result["run_id"]]


class DatasetQueries:
    """The runs table, counting the queries of its by_dataset index and the reads of the prefixes recorded."""

    def __init__(self, table):
        self._table, self.count, self.prefix_reads = table, 0, 0

    def query(self, **query):
        self.count += query.get("IndexName") == "by_dataset"
        return self._table.query(**query)

    def get_item(self, **request):
        self.prefix_reads += request["Key"] == {"run_id": "#prefixes"}
        return self._table.get_item(**request)

    def __getattr__(self, name):
        return getattr(self._table, name)


@pytest.mark.parametrize("prefix_recorded", [True, False])
def test_the_sweep_finds_runs_named_otherwise_without_reading_each_version_s_dataset_history(
    pipeline, prefix_recorded
):
    """After a JobNamePrefix change every version in the window has its run under another name, pass after pass for
    days: found by one GetItem under each recorded prefix; a prefix used before prefixes were recorded costs one
    read of each dataset's runs a sweep, not one per version."""
    for i in range(3):
        pipeline.start_tuning(pipeline.drop_event("incoming/team/a.tsv", good_file(i)))  # three versions, one dataset
    pipeline.start_tuning(pipeline.drop_event("incoming/team/b.tsv"))
    if not prefix_recorded:
        pipeline.clients.runs_table.delete_item(Key={"run_id": "#prefixes"})
    renamed = dataclasses.replace(pipeline.settings, job_name_prefix="renamed")
    queries = DatasetQueries(pipeline.clients.runs_table)
    pipeline.use("runs_table", queries)

    for hours in (1.5, 1.6):
        swept = reconciler.reconcile(renamed, pipeline.clients, later(hours))["missed_drops"]
        assert (swept["looked_at"], swept["named_otherwise"], swept["claimed"]) == (4, 4, 0)
    assert queries.count == (0 if prefix_recorded else 2 * 2)  # two datasets, two sweeps
    assert queries.prefix_reads == 2  # once a sweep
    assert len(runs_of(pipeline)) == 4


@pytest.mark.parametrize("missed", [0, 1])
def test_the_reconcile_handler_publishes_the_missed_drops_metric(pipeline, capsys, monkeypatch, missed):
    put(pipeline, "incoming/lost.tsv", good_file())
    if missed:  # the handler's own clock: the file counts as past the grace at once
        handler = pipeline.handlers["reconcile"]
        settings = dataclasses.replace(handler.ctx.settings, missed_drop_grace_minutes=0)
        monkeypatch.setattr(handler, "ctx", dataclasses.replace(handler.ctx, settings=settings))
    capsys.readouterr()

    result = pipeline.reconcile()

    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (emf,) = [m for m in metrics if "MissedDrops" in m]
    assert emf["MissedDrops"] in ([float(missed)], float(missed))
    assert result["missed_drops"]["claimed"] == missed and len(runs_of(pipeline)) == missed


def _stale_claim(pipeline: Pipeline, key: str) -> str:
    """A file claimed two hours ago whose start died (the pass restarts it last); its run id."""
    written = put(pipeline, key, good_file(seed=5))
    obj = tuning.DroppedObject(pipeline.stack.bucket, key, written["VersionId"], written["ETag"].strip('"'), None)
    _, claimed = tuning.claim_run(obj, RunsRepository(pipeline.clients.runs_table), pipeline.settings)
    pipeline.clients.runs_table.update_item(
        Key={"run_id": claimed["run_id"]}, UpdateExpression="SET updated_at = :t",
        ExpressionAttributeValues={":t": now_iso(datetime.now(UTC) - timedelta(hours=2))})
    return claimed["run_id"]


class _Killed(BaseException):
    """Lambda ending the invocation (its Timeout, its memory): no except clause of the pass sees it."""


def test_a_pass_killed_in_a_restart_has_published_the_counts_of_what_it_did_before(pipeline, capsys, monkeypatch):
    # a drop this pass claims (counted once: a later pass finds its run), and a stale claim whose restart kills the
    # invocation (a file that runs it out of memory)
    handler = pipeline.handlers["reconcile"]
    settings = dataclasses.replace(handler.ctx.settings, missed_drop_grace_minutes=0)
    monkeypatch.setattr(handler, "ctx", dataclasses.replace(handler.ctx, settings=settings))
    put(pipeline, "incoming/lost.tsv", good_file())
    _stale_claim(pipeline, "incoming/big.tsv")  # its restart runs the invocation out of memory

    def killed(*args, **kwargs):
        raise _Killed("Task timed out")

    monkeypatch.setattr(reconciler, "start_tuning", killed)
    capsys.readouterr()
    with pytest.raises(_Killed):
        pipeline.reconcile()

    assert [run["source"]["key"] for run in runs_of(pipeline)].count("incoming/lost.tsv") == 1
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (emf,) = [m for m in metrics if "MissedDrops" in m]
    assert emf["MissedDrops"] in ([1.0], 1.0) and "StuckRuns" in emf


def test_the_errors_of_a_pass_s_restarts_are_counted_after_its_other_counts(pipeline, capsys, monkeypatch):
    claimed = _stale_claim(pipeline, "incoming/big.tsv")

    def failing(*args, **kwargs):
        raise RuntimeError("S3 is away")

    monkeypatch.setattr(reconciler, "start_tuning", failing)
    capsys.readouterr()
    result = pipeline.reconcile()

    assert claimed in result["errors"]
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    counts = [m["ReconcileErrors"] for m in metrics if "ReconcileErrors" in m]
    assert counts in ([[0.0], [1.0]], [0.0, 1.0])  # before the restarts, then the restarts' own


class _Unprocessing:
    """A DynamoDB client whose BatchGetItem hands the last key of each call back unanswered, as UnprocessedKeys (as
    DynamoDB does when throttled or past 16 MB), for its first ``calls`` calls."""

    def __init__(self, client, calls: int):
        self._client, self.calls_left, self.calls = client, calls, 0

    def batch_get_item(self, RequestItems):  # noqa: N803  (boto3's argument name)
        self.calls += 1
        if self.calls_left <= 0:
            return self._client.batch_get_item(RequestItems=RequestItems)
        self.calls_left -= 1
        [(table, request)] = RequestItems.items()
        asked, left = request["Keys"][:-1], request["Keys"][-1:]
        response = (self._client.batch_get_item(RequestItems={table: {**request, "Keys": asked}}) if asked
                    else {"Responses": {table: []}})
        response["UnprocessedKeys"] = {table: {**request, "Keys": left}}
        return response

    def __getattr__(self, name):
        return getattr(self._client, name)


def unprocessing(pipeline: Pipeline, calls: int) -> _Unprocessing:
    table = pipeline.clients.runs_table
    client = _Unprocessing(table.meta.client, calls)
    pipeline.use("runs_table", TableWithClient(table, client))
    return client


def test_run_ids_dynamodb_leaves_unprocessed_are_asked_again_within_the_pass(pipeline):
    seen = pipeline.start_tuning(pipeline.drop_event("incoming/seen.tsv"))["run_id"]  # its event came
    lost = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(("incoming/a.tsv", "incoming/b.tsv"), 1)}
    client = unprocessing(pipeline, calls=2)  # one of the three run ids left unanswered by two tries

    swept = pipeline.reconcile(later(1.5))["missed_drops"]

    assert (swept["looked_at"], swept["claimed"], swept["unread"]) == (3, 2, 0) and client.calls == 3
    assert sorted(r["run_id"] for r in runs_of(pipeline)) == sorted(
        [seen, *(run_id_of(pipeline, key, version) for key, version in lost.items())])
    assert pipeline.run(seen).get("found_by_sweep") is None  # its run was there: not claimed over


def test_run_ids_still_unprocessed_after_the_tries_wait_for_the_next_pass(pipeline):
    written = {key: put(pipeline, key, good_file(i)) for i, key in enumerate(("incoming/a.tsv", "incoming/b.tsv"))}
    unprocessing(pipeline, calls=missed_drops._BATCH_GET_TRIES)  # every try of this pass leaves one unanswered

    first = pipeline.reconcile(later(1.5))["missed_drops"]

    assert (first["looked_at"], first["claimed"], first["unread"]) == (2, 1, 1)  # unknown is not taken for missing
    second = pipeline.reconcile(later(1.6))["missed_drops"]
    assert (second["claimed"], second["unread"]) == (1, 0)
    assert sorted(r["run_id"] for r in runs_of(pipeline)) == sorted(
        run_id_of(pipeline, key, version) for key, version in written.items())


def test_a_file_written_while_versioning_was_suspended_is_claimed_as_its_event_would_name_it(pipeline):
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_bucket_versioning(Bucket=pipeline.stack.bucket, VersioningConfiguration={"Status": "Suspended"})
    written = put(pipeline, "incoming/plain.tsv", good_file())
    assert written.get("VersionId") in (None, "null")  # the listing says "null"; the event has no version-id
    obj = tuning.DroppedObject(pipeline.stack.bucket, "incoming/plain.tsv", None, written["ETag"].strip('"'), None)

    assert pipeline.reconcile(later(1.5))["missed_drops"]["claimed"] == 1

    [run] = runs_of(pipeline)
    assert run["run_id"] == tuning.run_id_of(obj, pipeline.settings) and run["source"].get("version_id") is None
    event = load_event("s3_object_created.json")  # the late event, as S3 sends it for an unversioned object
    event["detail"]["bucket"]["name"] = pipeline.stack.bucket
    event["detail"]["object"] = {"key": "incoming/plain.tsv", "size": len(good_file()),
                                 "etag": written["ETag"].strip('"')}
    assert pipeline.start_tuning(event)["run_id"] == run["run_id"] and len(runs_of(pipeline)) == 1
    assert pipeline.reconcile(later(1.6))["missed_drops"]["claimed"] == 0


def test_a_burst_of_drops_whose_events_wait_in_start_tuning_s_queue_ends_no_good_file_failed(pipeline, monkeypatch):
    """StartTuning throttled (its reserved concurrency): the events of a burst wait in Lambda's queue (up to 6 h),
    the sweep claims the files after its grace, and restarts reach a few claims a pass (large files; one here). A
    claim past its deadline that no restart has tried yet is restarted first, not ended FAILED: every file ends
    tuning or queued, once the late events arrive too."""
    monkeypatch.setattr(reconciler, "MAX_RESTARTS_PER_PASS", 1)
    events = [pipeline.drop_event(f"incoming/burst/f{i:02}.tsv", good_file(i)) for i in range(14)]
    for minutes in range(61, 200, 5):  # a pass every 5 minutes from the grace on
        reconciler.reconcile(pipeline.settings, pipeline.clients, later(0) + timedelta(minutes=minutes),
                             seconds_left=lambda: 0)
    results = [pipeline.start_tuning(event) for event in events]  # the waiting events arrive, 3 h after the drop

    statuses = [pipeline.run(result["run_id"])["status"] for result in results]
    assert set(statuses) <= {"TUNING", "QUEUED"}, statuses
    assert all(pipeline.run(result["run_id"]).get("found_by_sweep") for result in results)


def test_a_claim_restarted_past_its_deadline_gets_a_claim_s_time_for_its_start(pipeline):
    """The late first restart splits the file, SageMaker throttles the tuning job once: the claim's new deadline
    gives the start its next try (it is not ended by the deadline it had before its restart)."""
    written = put(pipeline, "incoming/lost.tsv", good_file())
    run_id = run_id_of(pipeline, "incoming/lost.tsv", written)
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(0) + timedelta(minutes=61))  # the sweep claims
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]

    reconciler.reconcile(pipeline.settings, pipeline.clients, later(0) + timedelta(minutes=131))  # past its deadline
    item = pipeline.run(run_id)
    assert item["status"] == "CLAIMED" and item["data"] and item["restarts"] == 1
    assert item["deadline_at"] > (later(0) + timedelta(minutes=131 + 59)).isoformat()
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(0) + timedelta(minutes=136))
    assert pipeline.run(run_id)["status"] == "TUNING"


def test_a_first_restart_just_before_the_claim_s_deadline_gives_its_start_a_claim_s_time(pipeline):
    """The first restart comes 2 minutes before the deadline (a burst: a few restarts a pass) and SageMaker throttles
    the tuning job once: the claim's time counts from that restart, so the next pass gives the start its next try
    rather than ending a good file FAILED. A second restart does not move the deadline again."""
    written = put(pipeline, "incoming/lost.tsv", good_file())
    run_id = run_id_of(pipeline, "incoming/lost.tsv", written)
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(0) + timedelta(minutes=61))  # claimed
    deadline = parse_iso(pipeline.run(run_id)["deadline_at"])
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]

    reconciler.reconcile(pipeline.settings, pipeline.clients, deadline - timedelta(minutes=2))  # first restart
    item = pipeline.run(run_id)
    assert item["status"] == "CLAIMED" and item["data"] and item["restarts"] == 1
    assert parse_iso(item["deadline_at"]) >= deadline + timedelta(minutes=57)
    reconciler.reconcile(pipeline.settings, pipeline.clients, deadline + timedelta(minutes=3))
    assert pipeline.run(run_id)["status"] == "TUNING"


def test_only_a_claim_s_first_restart_moves_its_deadline(pipeline, monkeypatch):
    """A claim whose restarts keep dying is not kept for ever: the second restart leaves the deadline the first one
    gave, and the claim ends FAILED at it with its one message."""
    written = put(pipeline, "incoming/lost.tsv", good_file())
    run_id = run_id_of(pipeline, "incoming/lost.tsv", written)
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(0) + timedelta(minutes=61))  # claimed
    claimed_deadline = parse_iso(pipeline.run(run_id)["deadline_at"])

    def dies(*args, **kwargs):
        raise RuntimeError("the start ran out of memory")

    monkeypatch.setattr(reconciler, "start_tuning", dies)
    first = claimed_deadline - timedelta(minutes=30)
    reconciler.reconcile(pipeline.settings, pipeline.clients, first)
    item = pipeline.run(run_id)
    assert item["restarts"] == 1 and "out of memory" in item["start_error"]
    renewed = parse_iso(item["deadline_at"])
    assert renewed > claimed_deadline
    reconciler.reconcile(pipeline.settings, pipeline.clients, renewed - timedelta(minutes=5))  # stale again
    item = pipeline.run(run_id)
    assert item["restarts"] == 2 and parse_iso(item["deadline_at"]) == renewed
    reconciler.reconcile(pipeline.settings, pipeline.clients, renewed + timedelta(minutes=1))
    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and "out of memory" in item["failure_reason"]
    assert len(pipeline.messages(run_id)) == 1


def test_a_late_event_taking_over_a_claim_past_its_deadline_gives_its_start_a_claim_s_time(pipeline):
    """The sweep claimed the file, no restart reached the claim before its deadline (a burst), then the file's own
    event comes out of StartTuning's queue and takes the claim over; SageMaker throttles its tuning job once. The
    claim's time counts from its data, so the next pass tries SageMaker again rather than ending a good file."""
    event = pipeline.drop_event("incoming/burst/late.tsv", good_file())  # its event waits in StartTuning's queue
    detail = event["detail"]["object"]
    run_id = tuning.run_id_of(tuning.DroppedObject(pipeline.stack.bucket, detail["key"], detail["version-id"],
                                                   detail["etag"], None), pipeline.settings)
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(0) + timedelta(minutes=61))  # the sweep claims
    claim = pipeline.run(run_id)
    assert claim["status"] == "CLAIMED" and claim["found_by_sweep"] and not claim.get("restarts")
    past = datetime.now(UTC) - timedelta(hours=2)  # the claim's deadline passed an hour ago
    pipeline.clients.runs_table.update_item(
        Key={"run_id": run_id}, UpdateExpression="SET created_at = :c, updated_at = :c, deadline_at = :d",
        ExpressionAttributeValues={":c": now_iso(past), ":d": now_iso(past + timedelta(hours=1))})
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]

    result = pipeline.start_tuning(event)
    item = pipeline.run(run_id)
    assert result["status"] == "CLAIMED" and item["tuning_start"] and item["data"]
    assert parse_iso(item["deadline_at"]) > datetime.now(UTC) + timedelta(minutes=55)
    reconciler.reconcile(pipeline.settings, pipeline.clients, datetime.now(UTC) + timedelta(minutes=3))
    item = pipeline.run(run_id)
    assert item["status"] == "TUNING", item.get("failure_reason")


def test_a_claim_no_restart_reaches_still_ends_once_far_past_its_deadline(pipeline, monkeypatch):
    """Passes that die before their restarts (out of time earlier in the pass): the claim is not held for ever; it
    ends FAILED once claims.UNRESTARTED_CLAIM_GRACE_SECONDS past its deadline, with its one message."""
    written = put(pipeline, "incoming/lost.tsv", good_file())
    run_id = run_id_of(pipeline, "incoming/lost.tsv", written)
    reconciler.reconcile(pipeline.settings, pipeline.clients, later(0) + timedelta(minutes=61))
    deadline = parse_iso(pipeline.run(run_id)["deadline_at"])

    class Killed(BaseException):  # a timeout: no except clause of the pass sees it
        pass

    def killed(*args, **kwargs):
        raise Killed("Task timed out")

    monkeypatch.setattr(reconciler, "start_queued_runs", killed)  # each pass dies before its restarts
    for after in (timedelta(minutes=5), timedelta(hours=5)):
        with pytest.raises(Killed):
            reconciler.reconcile(pipeline.settings, pipeline.clients, deadline + after)
        assert pipeline.run(run_id)["status"] == "CLAIMED"  # waiting for its restart
    with pytest.raises(Killed):
        reconciler.reconcile(pipeline.settings, pipeline.clients,
                             deadline + timedelta(seconds=claims.UNRESTARTED_CLAIM_GRACE_SECONDS + 60))

    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and "stayed CLAIMED longer than its deadline" in item["failure_reason"]
    assert "no restart reached it within 6 h of its deadline" in item["failure_reason"]
    assert pipeline.statuses_told(run_id) == ["FAILED"]
