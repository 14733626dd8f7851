"""A person has a run's file tuned again: ``reviewtune runs retry RUN_ID --reason TEXT``.

A run that ended without a result (FAILED, STOPPED, or DUPLICATE of a run that then ended so) can be tried again
without finding the file: the version of the object the run was made for is copied onto its own key. S3 makes that
copy a new version, whose "Object Created" event starts a new run through start_tuning like any drop, with every
guarantee of one (its own outcome and message). Nothing of the first run changes but the record of the retry
(``retried``: who, why, when, the new version and the run it starts), which ``runs show`` prints.

What is refused, with the reason and what to do instead:

- a run not ended yet (stop it first, or wait for its outcome);
- a run that SUCCEEDED, or whose content another run keeps (in progress or succeeded): the copy would only end
  DUPLICATE of that run;
- a REJECTED run: the same bytes would be rejected again, so the file is fixed and dropped anew; unless S3 refused
  to read it (``unreadable``: a KMS key disabled, an archived storage class): once S3 can read it the copy succeeds
  and its run reads it, while S3 still refusing refuses the copy, with S3's words;
- a run retried already (its retry is the run to retry, should it end without a result too): one retry per run;
- a run whose content another run's retry is tuning (its new run has not ended, or not started yet): that retry
  would keep it, so its copy would only end DUPLICATE;
- a version that no longer exists, or an object without versions whose bytes changed since the run (its ETag);
- a run of a bucket without versioning, or a bucket whose versioning was suspended since: the copy would have no
  version of its own to name its run by (the same bytes dropped again are a run of their own).

The copy keeps the object's content type, encoding and metadata, and adds ``RETRY_METADATA`` (the run retried).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, config, duplicates, names, page, states
from reviewtune.core.champion import is_champion_key
from reviewtune.core.errors import ReviewtuneError
from reviewtune.core.reasons import PERSON_REASON_MAX_CHARS, bounded
from reviewtune.core.runs import RunsRepository, RunStatus, no_such_run, now_iso, parse_iso

RETRY_METADATA = names.RETRY_METADATA  # the copy's user metadata: the run it retries (x-amz-meta-reviewtune-retry-of)
# Headers of the object a copy with new metadata would otherwise lose.
_KEPT_HEADERS = ("ContentType", "ContentEncoding", "ContentLanguage", "ContentDisposition", "CacheControl")
RETRYABLE = (RunStatus.FAILED, RunStatus.STOPPED, RunStatus.DUPLICATE)
# The run's attribute a retry holds while it copies and records (who, since when, its token); one held longer than
# this is taken over (the command holding it died: a copy takes seconds; the margin is for clocks that differ)
RETRYING = "retrying"
RETRY_HOLD_SECONDS = 900


class RetryError(ReviewtuneError):
    """The run cannot be retried; the message says why and what to do instead."""


@dataclass(frozen=True)
class Retry:
    """A retry made: the run retried and the new object version whose event starts ``new_run_id``."""

    run_id: str
    new_run_id: str
    bucket: str
    key: str
    version_id: str  # a retry is made only on a versioned bucket: the copy always has one
    etag: str | None
    by: str
    reason: str
    at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def retry_run(
    runs: RunsRepository, s3: Any, run_id: str, *, why: str, by: str, now: datetime | None = None,
    prefix: str | None = None, retried_now: dict[tuple[str, str], Retry] | None = None,
    sweep_days: float = config.MISSED_DROP_WINDOW_DAYS,
) -> Retry:
    """Copy the object version of ``run_id`` onto its key (a new version, so a new run) and record it on the run.

    ``prefix``: the stack's JobNamePrefix, which names the new run (default: the retried run's, for a stack whose
    prefix did not change). ``retried_now``: the retries this command made so far, by dataset and content; a run of
    the same content as one of them is refused (its copy would only end DUPLICATE of that retry's run).
    ``sweep_days``: the stack's MissedDropWindowDays, the days within which a copy whose event never came still
    starts its run."""
    if not why.strip():
        raise RetryError("a retry needs a reason (--reason TEXT)")
    if not by.strip():  # the retry's record says who asked
        raise RetryError("a retry needs who asks for it")
    if not run_id.strip():
        raise RetryError("an empty run id")
    run = None if is_champion_key(run_id) else runs.get(run_id)
    if run is None or "status" not in run:  # the slots item, a content marker: no run
        raise RetryError(no_such_run(run_id))
    _check_item(runs, run, now, sweep_days)
    content = (run["dataset"], (run.get("data") or {}).get("summary", {}).get("content_sha256"))
    if content[1] and content in (retried_now or {}):
        earlier = (retried_now or {})[content]
        raise RetryError(f"run {run_id} has the same content as {earlier.run_id}, retried just now as "
                         f"{earlier.new_run_id}: a retry of {run_id} would end DUPLICATE of it")
    source = run["source"]
    bucket, key = source["bucket"], source["key"]
    _check_versioning(s3, run_id, bucket)
    token = _hold(runs, run, by, now)
    try:
        copied = _copy(s3, run_id, bucket, key, source["version_id"])
    except RetryError:
        _let_go(runs, run_id, token)  # S3 refused: nothing copied, another retry may go on at once
        raise
    # from here (and for an error of the copy with no answer, or the command stopped, which may follow a copy made)
    # the hold is given back only once the retry is recorded: else it lapses (RETRY_HOLD_SECONDS), by when the
    # copy's run keeps the content and refuses another copy
    retry = _record(runs, run, copied, by=by, why=why, now=now, prefix=prefix, retried_now=retried_now,
                    content=content)
    _let_go(runs, run_id, token)
    return retry


def _let_go(runs: RunsRepository, run_id: str, token: str) -> None:
    """The hold given back; should DynamoDB refuse, it lapses after RETRY_HOLD_SECONDS (and a recorded retry refuses
    another anyway)."""
    with contextlib.suppress(ClientError, BotoCoreError):
        runs.let_go(run_id, RETRYING, token)


def _hold(runs: RunsRepository, run: dict[str, Any], by: str, now: datetime | None) -> str:
    """Take the run's retry for this command before anything is copied (``RETRYING``): of two retries of one run at
    the same moment, one copies and records, the other is refused with nothing made. Taken over when its holder
    died with it (RETRY_HOLD_SECONDS)."""
    run_id, token, at = run["run_id"], uuid.uuid4().hex, now or datetime.now(UTC)
    held = runs.hold(run_id, RETRYING, {"by": by, "at": now_iso(at), "token": token}, status=run["status"],
                     taken_before=now_iso(at - timedelta(seconds=RETRY_HOLD_SECONDS)), unless="retried")
    if held is not None:
        return token
    item = runs.get(run_id) or {}
    retried, holder = item.get("retried"), item.get(RETRYING)
    if isinstance(retried, dict):
        raise RetryError(f"run {run_id} was retried meanwhile as {retried.get('new_run_id')} by {retried.get('by')} "
                         "at " + str(retried.get("at")) + "; nothing was copied here")
    if isinstance(holder, dict):
        raise RetryError(f"run {run_id} is being retried by {holder.get('by')} since {holder.get('at')}: nothing was "
                         f"copied here; `reviewtune runs show {run_id}` names its retry once made")
    raise RetryError(f"run {run_id} is {item.get('status', 'gone')} now: nothing was copied; "
                     f"`reviewtune runs show {run_id}`")


def _record(runs: RunsRepository, run: dict[str, Any], copied: dict[str, Any], *, by: str, why: str,
            now: datetime | None, prefix: str | None, retried_now: dict[tuple[str, str], Retry] | None,
            content: tuple[str, str | None]) -> Retry:
    """The retry recorded on the run, from the copy S3 made."""
    run_id, source = run["run_id"], run["source"]
    bucket, key = source["bucket"], source["key"]
    version_id = names.object_version(copied.get("VersionId"))
    if version_id is None:  # versioning suspended between the check and the copy
        raise RetryError(f"the file of run {run_id} was copied onto s3://{bucket}/{key}, but S3 gave the copy no "
                         "version (versioning was suspended meanwhile): it starts a run of its own, named by its "
                         "event, and nothing is recorded on " + run_id + "; `reviewtune runs list` shows it")
    etag = (copied.get("CopyObjectResult") or {}).get("ETag", "").strip('"') or None
    new_run_id = names.tuning_job_name(prefix or _prefix(run_id), names.object_identity(bucket, key, version_id, etag))
    retry = Retry(run_id, new_run_id, bucket, key, version_id, etag, by, bounded(why.strip(), PERSON_REASON_MAX_CHARS),
                  now_iso(now))
    if content[1] and retried_now is not None:
        retried_now[content] = retry
    record = {k: v for k, v in retry.as_dict().items() if k in ("new_run_id", "version_id", "by", "reason", "at")}
    try:
        recorded = runs.record_once(run_id, "retried", record, status=run["status"])
    except (ClientError, BotoCoreError) as exc:
        raise RetryError(
            f"the file of run {run_id} was copied (s3://{bucket}/{key} version {version_id}: it starts run "
            f"{new_run_id}), but recording the retry on {run_id} failed ({aws_errors.describe(exc)}); "
            "`reviewtune runs show` of the new run says where it came from"
        ) from None
    if recorded is None:
        other = (runs.get(run_id) or {}).get("retried") or {}
        raise RetryError(
            f"run {run_id} was retried meanwhile as {other.get('new_run_id')} by {other.get('by')}; the copy made "
            f"here (s3://{bucket}/{key} version {version_id}) starts run {new_run_id}, which ends DUPLICATE of it"
        )
    return retry


def refusal(runs: RunsRepository, run: dict[str, Any], now: datetime | None = None,
            sweep_days: float = config.MISSED_DROP_WINDOW_DAYS) -> str | None:
    """Why ``retry_run`` would refuse the run as its item stands (None: it would go on to copy the file), for a person
    told what to do next (``runs show``); the bucket's versioning now and the object version itself are checked by
    the retry alone."""
    try:
        _check_item(runs, run, now, sweep_days)
    except RetryError as error:
        return str(error)
    return None


def _check_item(runs: RunsRepository, run: dict[str, Any], now: datetime | None, sweep_days: float) -> None:
    """The refusals the run's item (and the runs of its content) tell, before S3 is asked anything."""
    run_id = run["run_id"]
    if "source" not in run:  # a record written without its file's place (an older item)
        raise RetryError(f"run {run_id} does not record which file it read, so it cannot be retried: drop the file "
                         "again (reviewtune drop FILE)")
    _check_retryable(runs, run, now, sweep_days)
    if not names.object_version(run["source"].get("version_id")):
        raise RetryError(f"run {run_id} read its file from a bucket without versioning, where a copy of it could not be "
                         "told from the run it retries: drop the file again (reviewtune drop FILE), the same bytes "
                         "dropped again are a run of their own")


def _check_retryable(runs: RunsRepository, run: dict[str, Any], now: datetime | None = None,
                     sweep_days: float = config.MISSED_DROP_WINDOW_DAYS) -> None:
    run_id, status = run["run_id"], run["status"]
    if not states.is_final(status):
        raise RetryError(f"run {run_id} is {status}: it has not ended; wait for its outcome, or stop it first "
                         f"(`reviewtune runs stop {run_id} --reason ...`)")
    if status == RunStatus.SUCCEEDED:
        raise RetryError(f"run {run_id} SUCCEEDED: its file would only end DUPLICATE of it")
    if status == RunStatus.REJECTED and not run.get("unreadable"):  # an unreadable one was never read: it may be now
        raise RetryError(f"run {run_id} was REJECTED ({run.get('failure_reason', 'see `runs show`')}): the same "
                         "bytes would be rejected again; fix the file and drop it as the same dataset "
                         f"(`reviewtune drop FILE --dataset {page.shell_word(run.get('dataset', ''))}`)")
    retried = run.get("retried")
    if isinstance(retried, dict):
        again = runs.get(retried.get("new_run_id", "")) or {}
        raise RetryError(f"run {run_id} was retried already, as {retried.get('new_run_id')} "
                         f"({again.get('status', 'not started yet')}) by {retried.get('by')} at {retried.get('at')}; "
                         "retry that run if it ends without a result")
    content = (run.get("data") or {}).get("summary", {}).get("content_sha256")
    keeper = duplicates.content_kept_by(runs, run["dataset"], content, run_id) if content else None
    if keeper is not None:
        raise RetryError(f"run {keeper['run_id']} ({keeper['status']}) has the same content: a retry of {run_id} "
                         f"would end DUPLICATE of it (`reviewtune runs show {keeper['run_id']}`)")
    pending = _pending_retry(runs, run["dataset"], content, run_id, now, sweep_days) if content else None
    if pending is not None:
        earlier, new_run = pending
        state = new_run["status"] if new_run else "not started yet"
        raise RetryError(f"run {earlier['run_id']} has the same content and was retried as "
                         f"{earlier['retried'].get('new_run_id')} ({state}) by {earlier['retried'].get('by')} at "
                         f"{earlier['retried'].get('at')}: a retry of {run_id} would end DUPLICATE of it; wait for "
                         "that run's outcome, and retry it if it ends without a result")


def _pending_retry(
    runs: RunsRepository, dataset: str, content: str, run_id: str, now: datetime | None = None,
    sweep_days: float = config.MISSED_DROP_WINDOW_DAYS,
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """Another run of this content retried already whose new run has not ended (not even started: its event may be
    on its way, or the reconciler's missed-drops pass makes it), with that new run (None: not started). Such a new
    run keeps the content before it has read the file, which ``duplicates.content_kept_by`` cannot see yet: a
    retry of the same content from another command, seconds later, would otherwise start a second run."""
    for candidate in runs.with_content(dataset, content, RETRYABLE, duplicates.MAX_RUNS_CHECKED):
        earlier = runs.get(candidate["run_id"]) if candidate["run_id"] != run_id else None
        retried = (earlier or {}).get("retried")
        if not isinstance(retried, dict) or not retried.get("new_run_id"):
            continue
        new_run = runs.get(retried["new_run_id"])
        if new_run is None and _sweep_passed(retried.get("at"), now, sweep_days):
            continue  # its copy is no longer there to start it (the sweep would have claimed it by now)
        if new_run is None or not states.is_final(new_run["status"]):
            return earlier, new_run
    return None


def _sweep_passed(at: Any, now: datetime | None, days: float) -> bool:
    """Whether a retry made ``at`` is older than the reconciler's missed-drops window, within which a copy whose
    event never came is claimed: its run not started by then never will be."""
    try:
        made = parse_iso(str(at))
    except ValueError:
        return True
    return (now or datetime.now(UTC)) - made > timedelta(days=days)


def _check_versioning(s3: Any, run_id: str, bucket: str) -> None:
    """Refuses a retry into a bucket whose versioning is off or suspended now: the copy would replace the object's
    "null" version and have no version of its own, so the run it starts could not be named here, nor the retry
    recorded. A caller not allowed to read the bucket's versioning goes on (the copy's answer is checked too)."""
    try:
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except BotoCoreError:
        return
    except ClientError as exc:
        if aws_errors.transient(exc) or aws_errors.code(exc) in ("AccessDenied", "AccessDeniedException"):
            return
        raise RetryError(f"S3 refused to say whether s3://{bucket} keeps versions: {aws_errors.text(exc)}") from None
    if status != "Enabled":
        raise RetryError(f"versioning of s3://{bucket} is {(status or 'off').lower()}: a copy of run {run_id}'s file "
                         "would have no version of its own to name its run by; enable versioning and retry, or drop "
                         "the file again (reviewtune drop FILE)")


def _copy(s3: Any, run_id: str, bucket: str, key: str, version_id: str) -> dict[str, Any]:
    """CopyObject of the run's version onto its key, the object's headers and metadata kept, the retry marked."""
    where = f"s3://{bucket}/{key} version {version_id}"
    try:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        kept = {name: head[name] for name in _KEPT_HEADERS if head.get(name)}
        metadata = {**head.get("Metadata", {}), RETRY_METADATA: run_id}
        if _metadata_bytes(metadata) > names.S3_USER_METADATA_MAX_BYTES:  # S3 would refuse the copy (MetadataTooLarge)
            raise RetryError(
                f"{where} carries {_metadata_bytes(head.get('Metadata', {}))} bytes of user metadata: with the retry's "
                f"mark it would pass S3's {names.S3_USER_METADATA_MAX_BYTES}; nothing was changed: drop the file again "
                "(`reviewtune drop FILE`)")
        return s3.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key, "VersionId": version_id},
            MetadataDirective="REPLACE", Metadata=metadata, **kept,
        )
    except ClientError as exc:
        gone = aws_errors.object_gone(exc)
        if gone is not None:
            raise RetryError(f"the file of run {run_id} is gone ({where}: {aws_errors.code(exc)}); drop it again "
                             "(`reviewtune drop FILE`)") from None
        raise RetryError(f"S3 refused to copy {where}: {aws_errors.text(exc)}") from None


def _metadata_bytes(metadata: dict[str, str]) -> int:
    """The size S3 counts of user-defined metadata: the UTF-8 bytes of every key and value."""
    return sum(len(name.encode()) + len(value.encode()) for name, value in metadata.items())


def _prefix(run_id: str) -> str:
    """The job name prefix of a run id (``names.tuning_job_name``: prefix, a dash, a hex digest)."""
    return run_id.rsplit("-", 1)[0]
