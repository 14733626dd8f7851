"""Retrying a run: its file's version copied onto its key starts a new run through start_tuning, like any drop.

GIVEN the handlers on moto with an in-memory SageMaker, WHEN a person retries a run that ended without a result,
THEN a new object version (same bytes, type and metadata, marked as a retry) starts a new run that tunes it, the first
run keeps its outcome and gets the record of the retry, and each run is told once; what cannot be retried is refused
with the reason and nothing is copied.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from reviewtune.core import retries, states
from reviewtune.core.retries import RetryError, retry_run
from reviewtune.core.runs import RunsRepository
from tests.functional.pipeline import Pipeline, good_file
from tests.support.aws import REGION, load_event
from tests.support.faults import Failing, client_error, refused_for_one_run

KEY = "incoming/team/reviews (May).tsv"


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def s3():
    return boto3.client("s3", region_name=REGION)


def runs(pipeline: Pipeline) -> RunsRepository:
    return RunsRepository(boto3.resource("dynamodb", region_name=REGION).Table(pipeline.stack.runs_table))


def versions(pipeline: Pipeline, key: str = KEY) -> list[str]:
    listed = s3().list_object_versions(Bucket=pipeline.stack.bucket, Prefix=key)
    return [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key]


def put(pipeline: Pipeline, body: bytes, key: str = KEY, **extra) -> dict:
    """Drop ``body`` at ``key`` (as a person would, with a content type) and return the event S3 sends for it."""
    response = s3().put_object(Bucket=pipeline.stack.bucket, Key=key, Body=body, **extra)
    return event_for(pipeline, key, response["VersionId"], response["ETag"], len(body))


def event_for(pipeline: Pipeline, key: str, version_id: str, etag: str, size: int) -> dict:
    """The "Object Created" event of one version (the key URL-encoded as S3 sends it)."""
    event = load_event("s3_object_created.json")
    event["detail"]["bucket"]["name"] = pipeline.stack.bucket
    event["detail"]["object"].update({
        "key": key.replace(" ", "+").replace("(", "%28").replace(")", "%29"), "etag": etag.strip('"'),
        "version-id": version_id, "size": size,
    })
    return event


def retried_event(pipeline: Pipeline, retry: retries.Retry) -> dict:
    head = s3().head_object(Bucket=retry.bucket, Key=retry.key, VersionId=retry.version_id)
    return event_for(pipeline, retry.key, retry.version_id, head["ETag"], head["ContentLength"])


def failed_run(pipeline: Pipeline, body: bytes | None = None) -> str:
    """A run whose tuning job SageMaker refused (ended FAILED, told once)."""
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["AccessDeniedException"]
    result = pipeline.start_tuning(put(pipeline, body or good_file(), ContentType="text/tab-separated-values",
                                       Metadata={"team": "ops"}))
    assert result["status"] == "FAILED", result
    return result["run_id"]


def test_a_failed_run_s_file_is_tuned_again_in_a_new_run_that_succeeds(pipeline):
    run_id = failed_run(pipeline)
    first_version = pipeline.run(run_id)["source"]["version_id"]
    [told] = pipeline.messages(run_id)
    assert f"To tune its file again once the cause is fixed: `reviewtune runs retry {run_id} --reason TEXT`." in told["Message"]

    retry = retry_run(runs(pipeline), s3(), run_id, why="the role is fixed", by="ops@example.com")

    assert versions(pipeline) == [retry.version_id, first_version]  # newest first: the copy is the key's latest
    copy = s3().get_object(Bucket=pipeline.stack.bucket, Key=KEY, VersionId=retry.version_id)
    assert copy["Body"].read() == good_file()
    assert copy["ContentType"] == "text/tab-separated-values"
    assert copy["Metadata"] == {"team": "ops", retries.RETRY_METADATA: run_id}
    recorded = pipeline.run(run_id)
    assert recorded["status"] == "FAILED" and "AccessDeniedException" in recorded["failure_reason"]
    assert recorded["retried"] == {"new_run_id": retry.new_run_id, "version_id": retry.version_id,
                                   "by": "ops@example.com", "reason": "the role is fixed", "at": retry.at}

    started = pipeline.start_tuning(retried_event(pipeline, retry))
    assert started["run_id"] == retry.new_run_id and started["status"] == "TUNING"
    assert pipeline.run(retry.new_run_id)["source"]["version_id"] == retry.version_id
    assert pipeline.run(retry.new_run_id)["retry_of"] == run_id
    pipeline.succeed(retry.new_run_id)
    assert pipeline.run(retry.new_run_id)["status"] == "SUCCEEDED"
    assert [s for s in pipeline.statuses_told(run_id) if s in states.FINAL_STATUSES] == ["FAILED"]
    assert [s for s in pipeline.statuses_told(retry.new_run_id) if s in states.FINAL_STATUSES] == ["SUCCEEDED"]
    [told] = pipeline.messages(retry.new_run_id)
    assert f"This run tunes the file of run {run_id} again (`reviewtune runs retry`)." in told["Message"]
    assert "Object Created event never came" not in told["Message"]


def test_a_run_is_retried_once_and_then_its_retry_is_the_run_to_retry(pipeline):
    run_id = failed_run(pipeline)
    retry = retry_run(runs(pipeline), s3(), run_id, why="first", by="ops")
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["AccessDeniedException"]
    assert pipeline.start_tuning(retried_event(pipeline, retry))["status"] == "FAILED"
    before = versions(pipeline)

    with pytest.raises(RetryError, match=f"retried already, as {retry.new_run_id} \\(FAILED\\) by ops at "
                                         f"{retry.at}; retry that run"):
        retry_run(runs(pipeline), s3(), run_id, why="again", by="ops")

    assert versions(pipeline) == before
    second = retry_run(runs(pipeline), s3(), retry.new_run_id, why="second", by="ops")
    assert pipeline.start_tuning(retried_event(pipeline, second))["status"] == "TUNING"


def test_a_duplicate_of_a_run_that_failed_is_retried_and_tuned(pipeline):
    event = put(pipeline, good_file())
    original = pipeline.start_tuning(event)["run_id"]
    duplicate = pipeline.start_tuning(put(pipeline, good_file()))
    assert duplicate["status"] == "DUPLICATE" and duplicate["duplicate_of"] == original

    with pytest.raises(RetryError, match=f"run {original} \\(TUNING\\) has the same content: a retry of "
                                         f"{duplicate['run_id']} would end DUPLICATE of it"):
        retry_run(runs(pipeline), s3(), duplicate["run_id"], why="x", by="ops")

    pipeline.sagemaker.finish_tuning(original, "Failed", failure="AlgorithmError: out of memory")
    pipeline.tuning_ended(original, "Failed")
    assert pipeline.run(original)["status"] == "FAILED"
    retry = retry_run(runs(pipeline), s3(), duplicate["run_id"], why="the original failed", by="ops")
    assert pipeline.start_tuning(retried_event(pipeline, retry))["status"] == "TUNING"


def test_a_stopped_run_is_retried(pipeline):
    run_id = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    pipeline.sagemaker.finish_tuning(run_id, "Stopped")
    pipeline.tuning_ended(run_id, "Stopped")
    assert pipeline.run(run_id)["status"] == "STOPPED"

    [told] = pipeline.messages(run_id)
    assert f"To tune its file again: `reviewtune runs retry {run_id} --reason TEXT`." in told["Message"]
    retry = retry_run(runs(pipeline), s3(), run_id, why="stopped by mistake", by="ops")

    assert pipeline.start_tuning(retried_event(pipeline, retry))["status"] == "TUNING"


def test_a_retry_whose_copy_is_rejected_records_the_run_it_retries(pipeline):
    from reviewtune.core.stop_requests import request_stop
    from tests.functional.test_crash_points import MALFORMED

    event = put(pipeline, MALFORMED)  # stopped while claimed, before its start read it
    pipeline.use("s3", Failing(pipeline.clients.s3, "get_object", "InternalError", failures=1))
    with pytest.raises(Exception, match="InternalError"):
        pipeline.start_tuning(event)
    run_id = next(i["run_id"] for i in runs(pipeline).table.scan()["Items"] if i.get("status") == "CLAIMED")
    request_stop(runs(pipeline), run_id, why="wrong file", by="ops")
    assert pipeline.start_tuning(event)["status"] == "STOPPED"
    retry = retry_run(runs(pipeline), s3(), run_id, why="tune it after all", by="ops")

    rejected = pipeline.start_tuning(retried_event(pipeline, retry))

    assert rejected["status"] == "REJECTED" and rejected["run_id"] == retry.new_run_id
    assert pipeline.run(retry.new_run_id)["retry_of"] == run_id
    assert pipeline.statuses_told(retry.new_run_id) == ["REJECTED"]
    [told] = pipeline.messages(retry.new_run_id)
    assert f"This run tunes the file of run {run_id} again (`reviewtune runs retry`)." in told["Message"]


@pytest.mark.parametrize("case", ["in progress", "succeeded", "rejected", "no reason", "nobody", "no run",
                                  "content marker"])
def test_what_cannot_be_retried_is_refused_with_the_reason_and_nothing_is_copied(pipeline, case):
    run_id = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]  # TUNING
    why, expected, by = "x", f"run {run_id} is TUNING: it has not ended; wait for its outcome, or stop it first", "ops"
    if case == "succeeded":
        pipeline.succeed(run_id)
        expected = f"run {run_id} SUCCEEDED: its file would only end DUPLICATE of it"
    elif case == "rejected":
        run_id = pipeline.start_tuning(put(pipeline, b"text,score\nhello,5\n", key="incoming/bad.csv"))["run_id"]
        expected = (f"run {run_id} was REJECTED \\(.*no label column.*\\): the same bytes would be rejected again; "
                    "fix the file and drop it as the same dataset \\(`reviewtune drop FILE --dataset bad.csv`\\)")
    elif case == "no reason":
        why, expected = " ", "a retry needs a reason"
    elif case == "nobody":
        by, expected = "", "a retry needs who asks for it"
    elif case == "no run":
        run_id, expected = "reviewtune-0000", "no run 'reviewtune-0000'"
    elif case == "content marker":
        marker = next(i["run_id"] for i in runs(pipeline).table.scan()["Items"] if i["run_id"].startswith("#content#"))
        run_id, expected = marker, "no run"
    before = {key: versions(pipeline, key) for key in (KEY, "incoming/bad.csv")}

    with pytest.raises(RetryError, match=expected):
        retry_run(runs(pipeline), s3(), run_id, why=why, by=by)

    assert {key: versions(pipeline, key) for key in before} == before
    assert "retried" not in (pipeline.run(run_id) if not run_id.startswith(("#", "reviewtune-0000")) else {})


def test_a_version_deleted_since_is_refused_as_gone(pipeline):
    run_id = failed_run(pipeline)
    version = pipeline.run(run_id)["source"]["version_id"]
    s3().delete_object(Bucket=pipeline.stack.bucket, Key=KEY, VersionId=version)

    with pytest.raises(RetryError, match=f"the file of run {run_id} is gone .*version {version}.*drop it again"):
        retry_run(runs(pipeline), s3(), run_id, why="x", by="ops")

    assert versions(pipeline) == [] and "retried" not in pipeline.run(run_id)


@pytest.mark.parametrize(("note", "refused"), [(1900, False), (2040, True)], ids=["fits", "too large"])
def test_a_file_whose_metadata_leaves_no_room_for_the_retry_s_mark_is_refused_and_nothing_is_copied(
        pipeline, note, refused):
    # S3 takes 2 KB of user metadata (2,044 bytes here): the retry's mark ("reviewtune-retry-of": the run id, 46
    # bytes) must fit beside the file's own
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["AccessDeniedException"]
    run_id = pipeline.start_tuning(put(pipeline, good_file(), Metadata={"note": "x" * note}))["run_id"]
    before = versions(pipeline)

    if refused:
        with pytest.raises(RetryError, match="carries 2044 bytes of user metadata: with the retry's mark it would "
                                             "pass S3's 2048; nothing was changed"):
            retry_run(runs(pipeline), s3(), run_id, why="x", by="ops")
        assert versions(pipeline) == before and "retried" not in pipeline.run(run_id)
    else:
        retry_run(runs(pipeline), s3(), run_id, why="x", by="ops")
        assert len(versions(pipeline)) == len(before) + 1


def test_a_failed_run_and_its_duplicate_retried_together_make_one_run(pipeline):
    """`runs retry ORIGINAL DUPLICATE`: the duplicate's copy would only end DUPLICATE of the original's retry,
    which the original's record of it says: refused, nothing copied."""
    original = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    duplicate = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    pipeline.sagemaker.finish_tuning(original, "Failed", failure="ResourceLimitExceeded: quota")
    pipeline.tuning_ended(original, "Failed")
    retried_now: dict = {}

    first = retry_run(runs(pipeline), s3(), original, why="quota raised", by="ops", retried_now=retried_now)
    before = versions(pipeline)
    with pytest.raises(RetryError, match=f"run {original} has the same content and was retried as "
                                         f"{first.new_run_id} \\(not started yet\\) by ops"):
        retry_run(runs(pipeline), s3(), duplicate, why="quota raised", by="ops", retried_now=retried_now)

    assert versions(pipeline) == before and "retried" not in pipeline.run(duplicate)
    assert pipeline.start_tuning(retried_event(pipeline, first))["status"] == "TUNING"


def test_when_recording_a_retry_fails_the_same_command_still_refuses_its_duplicate(pipeline, monkeypatch):
    """The original's file was copied but its record of the retry failed: no run says so, but the command's own
    retries do (``retried_now``)."""
    original = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    duplicate = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    pipeline.sagemaker.finish_tuning(original, "Failed", failure="ResourceLimitExceeded: quota")
    pipeline.tuning_ended(original, "Failed")
    monkeypatch.setattr(RunsRepository, "record_once", refused_for_one_run(
        RunsRepository.record_once, original, client_error("ProvisionedThroughputExceededException", "slow down",
                                                           "UpdateItem")))
    retried_now: dict = {}

    with pytest.raises(RetryError, match=f"the file of run {original} was copied .* but recording the retry on "
                                         f"{original} failed"):
        retry_run(runs(pipeline), s3(), original, why="quota raised", by="ops", retried_now=retried_now)
    before = versions(pipeline)
    with pytest.raises(RetryError, match=f"run {duplicate} has the same content as {original}, retried just now as "
                                         f"[^:]+: a retry of {duplicate} would end DUPLICATE of it"):
        retry_run(runs(pipeline), s3(), duplicate, why="quota raised", by="ops", retried_now=retried_now)

    assert versions(pipeline) == before and "retried" not in pipeline.run(duplicate)


def test_a_duplicate_retried_by_another_command_while_its_original_s_retry_is_pending_is_refused(pipeline):
    """`runs retry ORIGINAL`, then `runs retry DUPLICATE` seconds later in another command: the original's new run has
    not read the file yet (no content marker, nothing in the index), so only the original's record of its retry
    tells that the duplicate's copy would end DUPLICATE of it. Refused, nothing copied; once that run ends without a
    result, the duplicate is retried."""
    original = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    duplicate = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    pipeline.sagemaker.finish_tuning(original, "Failed", failure="ResourceLimitExceeded: quota")
    pipeline.tuning_ended(original, "Failed")
    first = retry_run(runs(pipeline), s3(), original, why="quota raised", by="alice")
    before = versions(pipeline)

    refusal = (f"run {original} has the same content and was retried as {first.new_run_id} \\({{}}\\) by alice at "
               f"{first.at}: a retry of {duplicate} would end DUPLICATE of it")
    with pytest.raises(RetryError, match=refusal.format("not started yet")):
        retry_run(runs(pipeline), s3(), duplicate, why="quota raised", by="bob")
    assert versions(pipeline) == before and "retried" not in pipeline.run(duplicate)

    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["AccessDeniedException"]
    assert pipeline.start_tuning(retried_event(pipeline, first))["status"] == "FAILED"
    retry = retry_run(runs(pipeline), s3(), duplicate, why="the original's retry failed", by="bob")
    assert pipeline.start_tuning(retried_event(pipeline, retry))["status"] == "TUNING"


def test_a_retry_whose_run_never_started_within_the_sweep_s_window_no_longer_holds_its_content(pipeline):
    """The original's copy started no run in the week the reconciler's sweep looks back (deleted before it was
    claimed): its record of the retry no longer refuses the duplicate, which would otherwise never be retried."""
    original = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    duplicate = pipeline.start_tuning(put(pipeline, good_file()))["run_id"]
    pipeline.sagemaker.finish_tuning(original, "Failed", failure="ResourceLimitExceeded: quota")
    pipeline.tuning_ended(original, "Failed")
    first = retry_run(runs(pipeline), s3(), original, why="quota raised", by="alice")
    made = datetime.fromisoformat(first.at.replace("Z", "+00:00"))

    with pytest.raises(RetryError, match="not started yet"):
        retry_run(runs(pipeline), s3(), duplicate, why="x", by="bob", now=made + timedelta(days=6))
    with pytest.raises(RetryError, match="not started yet"):  # a stack whose sweep looks back 10 days
        retry_run(runs(pipeline), s3(), duplicate, why="x", by="bob", now=made + timedelta(days=8), sweep_days=10)
    retry = retry_run(runs(pipeline), s3(), duplicate, why="x", by="bob", now=made + timedelta(days=8))
    assert pipeline.start_tuning(retried_event(pipeline, retry))["status"] == "TUNING"


def test_a_duplicate_retried_while_its_original_s_retry_is_claimed_is_refused(pipeline):
    """The original's new run is CLAIMED (its event came, the file is being read): still pending."""
    original = failed_run(pipeline)
    duplicate = pipeline.start_tuning(put(pipeline, good_file()))
    assert duplicate["status"] == "TUNING"  # the original FAILED: this one tunes, nothing to retry ...
    pipeline.sagemaker.finish_tuning(duplicate["run_id"], "Failed", failure="AlgorithmError")
    pipeline.tuning_ended(duplicate["run_id"], "Failed")
    first = retry_run(runs(pipeline), s3(), original, why="x", by="alice")
    runs(pipeline).table.put_item(Item={"run_id": first.new_run_id, "status": "CLAIMED", "dataset": "team/x"})

    with pytest.raises(RetryError, match=f"retried as {first.new_run_id} \\(CLAIMED\\)"):
        retry_run(runs(pipeline), s3(), duplicate["run_id"], why="y", by="bob")


def test_a_retry_names_its_run_with_the_stack_s_job_name_prefix(pipeline, monkeypatch):
    """A stack whose JobNamePrefix changed since the run: the new run is named with the stack's prefix (the CLI
    passes it from the stack's parameters), so the id printed and recorded is the run start_tuning makes."""
    run_id = failed_run(pipeline)
    renamed = dataclasses.replace(pipeline.settings, job_name_prefix="rt")
    handler = pipeline.handlers["start_tuning"]
    monkeypatch.setattr(handler, "ctx", dataclasses.replace(handler.ctx, settings=renamed))

    retry = retry_run(runs(pipeline), s3(), run_id, why="role fixed", by="ops", prefix="rt")

    assert retry.new_run_id.startswith("rt-") and pipeline.run(run_id)["retried"]["new_run_id"] == retry.new_run_id
    assert pipeline.start_tuning(retried_event(pipeline, retry))["run_id"] == retry.new_run_id


def test_a_retry_that_read_the_run_before_another_recorded_its_retry_copies_nothing(pipeline, monkeypatch):
    run_id = failed_run(pipeline)
    first = retry_run(runs(pipeline), s3(), run_id, why="first", by="alice")
    made = versions(pipeline)
    monkeypatch.setattr(retries, "_check_retryable", lambda *_: None)  # the second read the run before the record

    with pytest.raises(RetryError, match=f"retried meanwhile as {first.new_run_id} by alice at .*; nothing was copied"):
        retry_run(runs(pipeline), s3(), run_id, why="second", by="bob")

    assert versions(pipeline) == made and pipeline.run(run_id)["retried"]["by"] == "alice"
    assert "retrying" not in pipeline.run(run_id)
    assert pipeline.start_tuning(retried_event(pipeline, first))["status"] == "TUNING"


def test_of_two_retries_at_once_the_one_that_copies_first_is_the_one_recorded_and_the_other_copies_nothing(
        pipeline, monkeypatch):
    """Bob's retry is copying when Alice's asks: Alice's is refused before any copy (it would start a second run of
    the same content), and Bob's copy, recorded on the run, starts the run that tunes."""
    run_id = failed_run(pipeline)
    copy = retries._copy
    refused: list[str] = []

    def copy_while_another_retries(*args, **kwargs):
        with pytest.raises(RetryError) as alice:
            retry_run(runs(pipeline), s3(), run_id, why="at once", by="alice")
        refused.append(str(alice.value))
        return copy(*args, **kwargs)

    monkeypatch.setattr(retries, "_copy", copy_while_another_retries)
    bob = retry_run(runs(pipeline), s3(), run_id, why="first", by="bob")

    [said] = refused
    assert said.startswith(f"run {run_id} is being retried by bob since ") and "nothing was copied" in said
    assert len(versions(pipeline)) == 2  # the run's own version and Bob's copy
    item = pipeline.run(run_id)
    assert item["retried"]["new_run_id"] == bob.new_run_id and item["retried"]["by"] == "bob"
    assert "retrying" not in item
    assert pipeline.start_tuning(retried_event(pipeline, bob))["status"] == "TUNING"


def test_a_copy_that_got_no_answer_keeps_the_hold_so_that_a_retry_at_once_makes_no_second_copy(pipeline, monkeypatch):
    """S3 made the copy but its answer was lost (or the command was stopped right after): nothing is recorded, and
    the hold lapses instead of being given back, by when the copy's run keeps the content."""
    run_id = failed_run(pipeline)
    copy = retries._copy

    def copied_then_timed_out(*args, **kwargs):
        copy(*args, **kwargs)
        raise ReadTimeoutError(endpoint_url="https://s3")

    monkeypatch.setattr(retries, "_copy", copied_then_timed_out)
    with pytest.raises(ReadTimeoutError):
        retry_run(runs(pipeline), s3(), run_id, why="first", by="alice")
    monkeypatch.setattr(retries, "_copy", copy)

    assert pipeline.run(run_id)["retrying"]["by"] == "alice" and "retried" not in pipeline.run(run_id)
    with pytest.raises(RetryError, match="is being retried by alice since .*nothing was copied here"):
        retry_run(runs(pipeline), s3(), run_id, why="again", by="alice")
    assert len(versions(pipeline)) == 2  # the run's version and the one copy
    latest = s3().head_object(Bucket=pipeline.stack.bucket, Key=KEY)
    made = pipeline.start_tuning(event_for(pipeline, KEY, latest["VersionId"], latest["ETag"], latest["ContentLength"]))
    assert made["status"] == "TUNING" and pipeline.run(made["run_id"])["retry_of"] == run_id
    later = datetime.now(UTC) + timedelta(seconds=retries.RETRY_HOLD_SECONDS + 1)
    with pytest.raises(RetryError, match=f"run {made['run_id']} \\(TUNING\\) has the same content"):
        retry_run(runs(pipeline), s3(), run_id, why="after the hold lapsed", by="bob", now=later)


def test_a_retry_whose_copy_failed_holds_nothing_and_one_whose_command_died_is_taken_over_later(pipeline):
    run_id = failed_run(pipeline)
    pipeline.use("s3", Failing(pipeline.clients.s3, "copy_object", "AccessDenied", "no", failures=1))
    with pytest.raises(RetryError, match="S3 refused to copy"):
        retry_run(runs(pipeline), pipeline.clients.s3, run_id, why="first", by="alice")
    assert "retrying" not in pipeline.run(run_id)  # given back: the next retry goes on at once

    now = datetime.now(UTC)
    token = retries._hold(runs(pipeline), pipeline.run(run_id), "bob", now)  # then bob's command dies
    assert pipeline.run(run_id)["retrying"]["token"] == token
    with pytest.raises(RetryError, match="is being retried by bob since"):
        retry_run(runs(pipeline), s3(), run_id, why="soon after", by="carol",
                  now=now + timedelta(seconds=retries.RETRY_HOLD_SECONDS - 60))
    later = now + timedelta(seconds=retries.RETRY_HOLD_SECONDS + 1)
    retry = retry_run(runs(pipeline), s3(), run_id, why="later", by="carol", now=later)

    item = pipeline.run(run_id)
    assert item["retried"]["by"] == "carol" and "retrying" not in item
    assert pipeline.start_tuning(retried_event(pipeline, retry))["status"] == "TUNING"


@pytest.mark.parametrize("value", ["", "not a run id!", "x" * 40, "reviewtune_1234"])
def test_a_drop_whose_retry_metadata_names_no_run_records_none(pipeline, value):
    result = pipeline.start_tuning(put(pipeline, good_file(), Metadata={retries.RETRY_METADATA: value}))

    assert result["status"] == "TUNING" and "retry_of" not in pipeline.run(result["run_id"])


def test_a_file_s3_refused_to_read_is_retried_once_s3_can_read_it(pipeline):
    event = put(pipeline, good_file())
    disabled = Failing(pipeline.clients.s3, "get_object", "KMS.DisabledException", "the key is disabled.",
                       failures=None, when=lambda call: call["Key"] == KEY)
    pipeline.use("s3", disabled)
    rejected = pipeline.start_tuning(event)
    run_id = rejected["run_id"]
    assert rejected["status"] == "REJECTED" and pipeline.run(run_id)["unreadable"] is True
    [told] = pipeline.messages(run_id)
    assert f"`reviewtune runs retry {run_id} --reason TEXT`" in told["Message"]

    still = Failing(s3(), "copy_object", "KMS.DisabledException", "the key is disabled.", failures=None)
    with pytest.raises(RetryError, match="S3 refused to copy s3://.*: KMS.DisabledException: the key is disabled"):
        retry_run(runs(pipeline), still, run_id, why="key enabled?", by="ops")
    assert len(versions(pipeline)) == 1 and "retried" not in pipeline.run(run_id)

    pipeline.use("s3", disabled._wrapped)  # the key is enabled again
    retry = retry_run(runs(pipeline), s3(), run_id, why="key enabled again", by="ops")

    started = pipeline.start_tuning(retried_event(pipeline, retry))
    assert started["status"] == "TUNING" and started["run_id"] == retry.new_run_id
    assert pipeline.run(retry.new_run_id)["retry_of"] == run_id
    assert pipeline.run(run_id)["status"] == "REJECTED" and pipeline.run(run_id)["retried"]["new_run_id"] == retry.new_run_id


def test_a_bucket_whose_versioning_was_suspended_since_the_run_is_refused_and_nothing_is_copied(pipeline):
    run_id = failed_run(pipeline)
    s3().put_bucket_versioning(Bucket=pipeline.stack.bucket, VersioningConfiguration={"Status": "Suspended"})
    before = versions(pipeline)

    with pytest.raises(RetryError, match=f"versioning of s3://{pipeline.stack.bucket} is suspended: a copy of run "
                                         f"{run_id}'s file would have no version of its own"):
        retry_run(runs(pipeline), s3(), run_id, why="x", by="ops")

    assert versions(pipeline) == before and "retried" not in pipeline.run(run_id)


class CopiedWithoutVersion:
    """An S3 client whose CopyObject answers version "null", as S3 does once versioning is suspended (here: between
    the retry's check and its copy)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def copy_object(self, **kwargs):
        return {**self._client.copy_object(**kwargs), "VersionId": "null"}


def test_a_copy_s3_gives_no_version_records_no_retry_and_says_so(pipeline):
    run_id = failed_run(pipeline)

    with pytest.raises(RetryError, match=f"was copied onto s3://{pipeline.stack.bucket}/.*but S3 gave the copy no "
                                         f"version.*nothing is recorded on {run_id}"):
        retry_run(runs(pipeline), CopiedWithoutVersion(s3()), run_id, why="x", by="ops")

    assert "retried" not in pipeline.run(run_id)  # no run named "...#null" that no event would ever start


def test_a_caller_not_allowed_to_read_the_bucket_s_versioning_still_retries(pipeline):
    run_id = failed_run(pipeline)
    client = Failing(s3(), "get_bucket_versioning", "AccessDenied", failures=None)

    retry = retry_run(runs(pipeline), client, run_id, why="flaky", by="ops")

    assert client.failed == 1 and pipeline.run(run_id)["retried"]["new_run_id"] == retry.new_run_id
    assert pipeline.start_tuning(retried_event(pipeline, retry))["run_id"] == retry.new_run_id
