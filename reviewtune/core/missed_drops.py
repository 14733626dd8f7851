"""Dropped files whose "Object Created" event never came: found by listing incoming/, given their run.

Every other way a drop can go wrong leaves a trace the reconciler reads: a claimed run in the runs table, an event in
StartTuning's dead-letter queue (dead_letters.py). An event that never reached StartTuning at all leaves none: S3
did not send it, EventBridge did not match it (the rule disabled or replaced during a deployment, the bucket's
EventBridge setting off for a while), or it was dropped on the way. So each reconciler pass also compares what is
with what should be: every version under ``incoming/`` that start_tuning would give an outcome (``names.
is_accepted_key``), written between the stack's grace and window ago, must have its run (the run id is
a function of the bucket, the key and the version: ``tuning.run_id_of``). A version without one is claimed here,
marked ``found_by_sweep`` (when), and from then on is the reconciler's like a dead-lettered one: the stale-claim
restart starts it, or it ends ``FAILED`` at the claim's deadline, with its one message either way.

- the grace (``MissedDropGraceMinutes``, an hour unless set): an event may still be on its way that long (the rule's
  retries, MaximumEventAgeInSeconds); a claim made meanwhile is harmless (start_tuning takes a claimed run over, and
  a claim no restart has tried yet is not ended at its deadline: the reconciler restarts it first), but counts as a
  missed drop (MissedDropsAlarm). A stack whose StartTuning is often throttled (events waiting in
  Lambda's own queue, up to its 6 hours) sets it longer.
- the window (``MissedDropWindowDays``, a week unless set): versions written before that are not looked at (a
  reconciler down longer than that leaves older drops to people: ``reviewtune audit --days``).
- At most ``MAX_VERSIONS_PER_PASS`` versions are listed a pass; a longer listing goes on from where the last pass
  stopped (the ``#sweep`` item of the runs table keeps its place), so every version is seen within a few passes.
- The sweep stops when the pass's time runs short (``out_of_time``: a burst of thousands of drops whose events never
  came, a claim each, would take the whole invocation, and the runs' steps and messages after it): the listing stops
  between pages, and lookups stop with the place kept just past the last version looked up, so the next pass lists
  the rest again and claims them. The first ``MIN_LOOKUPS_PER_PASS`` versions without a run are looked up whatever
  the time, so that every pass makes headway.
- The place kept names the version listed last; when that version is deleted before the next pass (a person, or a
  lifecycle rule expiring old versions) and S3 refuses it as a marker, the pass lists from the start instead of
  failing every pass from then on.
- Whether runs exist is read with BatchGetItem, 100 run ids a call; a version without a run of that id is looked
  up in its dataset's runs before it is claimed, since a stack whose ``JobNamePrefix`` changed names runs otherwise
  (so a change of prefix tunes no file again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, names, prefixes
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.failures import repository
from reviewtune.core.runs import RunsRepository, RunStatus, now_iso
from reviewtune.core.tuning import DroppedObject, claim_run, earlier_prefix_run, run_id_of, upload_run

logger = Logger(child=True)

MAX_VERSIONS_PER_PASS = 10_000
MIN_LOOKUPS_PER_PASS = 100  # versions without a run looked up (and claimed) every pass, however little time is left
CURSOR_KEY = "#sweep"  # no run id can take that form; the item has no status, so no index shows it
# S3's refusals of a listing's marker (a version id it no longer knows): the sweep then lists from the start
MARKER_REFUSED_CODES = frozenset({"InvalidArgument", "NoSuchVersion", "400"})
_BATCH_GET = 100  # BatchGetItem's limit
_BATCH_GET_TRIES = 4  # unprocessed keys are asked again; what is still unprocessed waits for the next pass


@dataclass
class Swept:
    """What one pass found under incoming/."""

    listed: int = 0  # versions listed (delete markers not counted)
    looked_at: int = 0  # versions in the window that start_tuning gives an outcome
    claimed: int = 0  # runs written now: their events never came
    unread: int = 0  # run ids whose existence DynamoDB did not answer in time (the next pass asks again)
    failed: int = 0  # versions whose run could not be looked up or claimed (logged; a later listing tries again)
    named_otherwise: int = 0  # versions whose run was made under another job name prefix
    resumed: bool = False  # the listing went on from where an earlier pass stopped
    more: bool = False  # the listing stopped before its end (MAX_VERSIONS_PER_PASS, or time); the next pass goes on
    cut_short: bool = False  # the pass's time ran short: what was not listed or claimed waits for the next pass

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def claim_missed_drops(settings: Settings, clients: AwsClients, now: datetime,
                       out_of_time: Callable[[], bool] = lambda: False) -> Swept:
    """One pass over the versions under incoming/: claim the run of each that should have one and has none, while
    ``out_of_time()`` says the pass has time for it."""
    result = Swept()
    saved = _cursor(clients)
    cursor = saved  # where this pass's listing starts
    result.resumed = bool(cursor)
    # each version, when its page was read (complete then), and the listing's places just before and just past it
    candidates: dict[str, tuple[DroppedObject, str, dict[str, str], dict[str, str]]] = {}
    request: dict[str, Any] = {"Bucket": settings.bucket, "Prefix": names.INCOMING_PREFIX, **cursor}
    going_on: dict[str, str] = {}  # where the next pass's listing goes on from (empty: from the start)
    place = cursor  # just past the version listed last
    first_page = True
    while True:
        try:
            page = clients.s3.list_object_versions(**request, MaxKeys=min(1000, MAX_VERSIONS_PER_PASS - result.listed))
        except ClientError as exc:
            if not (first_page and cursor and aws_errors.code(exc) in MARKER_REFUSED_CODES):
                raise
            # the place kept names a version that is no longer there (deleted since, by a person or a lifecycle
            # rule): S3 may refuse it as a marker, pass after pass; the listing starts over instead
            logger.warning("the sweep's place was refused as a listing marker: listing incoming/ from its start",
                           extra={"place": cursor, "error": aws_errors.describe(exc)})
            cursor = place = {}
            result.resumed = False
            request = {"Bucket": settings.bucket, "Prefix": names.INCOMING_PREFIX}
            continue
        first_page = False
        read_at = now_iso()  # the pass's clock may differ
        for version in page.get("Versions", []):
            result.listed += 1
            before, place = place, {"KeyMarker": version["Key"], "VersionIdMarker": version.get("VersionId") or "null"}
            obj = _in_window(settings, version, now)
            if obj is not None:
                candidates[run_id_of(obj, settings)] = obj, read_at, before, place
        if not page.get("IsTruncated"):
            going_on = {}  # the listing is done: the next pass starts over
            break
        request = {"Bucket": settings.bucket, "Prefix": names.INCOMING_PREFIX, "KeyMarker": page["NextKeyMarker"],
                   "VersionIdMarker": page["NextVersionIdMarker"]}
        going_on = {k: request[k] for k in ("KeyMarker", "VersionIdMarker")}
        if result.listed >= MAX_VERSIONS_PER_PASS:
            result.more = True
            break
        if out_of_time():
            result.more = result.cut_short = True
            break
    result.looked_at = len(candidates)
    existing, unread = _existing(clients, list(candidates))
    result.unread = len(unread)
    runs = repository(settings, clients)
    read = Lookups()
    tried, last_tried = 0, cursor
    held: dict[str, str] | None = None  # just before the first version DynamoDB did not answer for
    retry_from: dict[str, str] | None = None  # just before the first version whose lookup or claim met a moment's error
    for run_id, (obj, listed_at, before, past_it) in candidates.items():
        if run_id in existing:
            continue
        if run_id in unread:
            held = before if held is None else held
            retry_from = before if retry_from is None else retry_from
            continue
        if tried >= MIN_LOOKUPS_PER_PASS and out_of_time():
            # the next pass lists again from just past the last version looked up (or before the first one left
            # unread or refused): what was not looked up is looked up then, and versions looked up every pass without
            # a claim (another prefix's runs) cannot hold it
            result.cut_short, going_on = True, last_tried if held is None else held
            break
        tried, last_tried = tried + 1, past_it
        try:
            _claim_if_missed(runs, settings, run_id, obj, now, result, listed_at, read)
        except (ClientError, BotoCoreError) as exc:  # one version's refusal does not keep the others unclaimed
            held = before if held is None else held
            if aws_errors.transient(exc):  # throttled, no answer: the next pass goes on from it, not a whole round
                retry_from = before if retry_from is None else retry_from  # of the listing later
            result.failed += 1
            logger.warning("the run of a version without one could not be looked up or claimed",
                           extra={"run_id": run_id, "key": obj.key, "error": aws_errors.describe(exc)})
    if retry_from is not None and going_on and not result.cut_short and retry_from != saved:
        going_on = retry_from  # once: a version whose error comes back at the start of the next pass is passed over,
        # so that no refusal can hold the sweep in one place
    if going_on != saved:
        _save_cursor(clients, going_on)
    if result.claimed or result.more or result.unread or result.failed or result.cut_short:
        logger.info("incoming/ swept", extra=result.summary())
    return result


def _claim_if_missed(runs: RunsRepository, settings: Settings, run_id: str, obj: DroppedObject, now: datetime,
                     result: Swept, listed_at: str, read: Lookups) -> None:
    if has_run(runs, obj, settings.job_name_prefix, read):
        result.named_otherwise += 1  # its run has another name (JobNamePrefix changed since): it is not missed
        return
    # created and due by the pass's clock, as the rest of the pass reads them
    stamp = now_iso(now)
    # listed_at: an event sent after it is of a later upload (tuning._uploaded_again), whatever the pass's clock
    claimed, _ = claim_run(obj, runs, settings, found_by_sweep=stamp, created_at=stamp, updated_at=stamp,
                           listed_at=listed_at, deadline_at=runs.deadline_at(RunStatus.CLAIMED, now))
    if claimed:
        result.claimed += 1
        logger.warning("a dropped file had no run: its event never came; run claimed",
                       extra={"run_id": run_id, "key": obj.key, "version_id": obj.version_id})


def _in_window(settings: Settings, version: dict[str, Any], now: datetime) -> DroppedObject | None:
    """The dropped object of a listed version that start_tuning gives an outcome, written within the window and
    not within the grace."""
    age = (now - version["LastModified"]).total_seconds()
    grace, window = settings.missed_drop_grace_minutes * 60, settings.missed_drop_window_days * 86400
    return dropped_version(settings.bucket, version) if grace <= age <= window else None


def dropped_version(bucket: str, version: dict[str, Any]) -> DroppedObject | None:
    """A version ListObjectVersions gave, as the dropped object its event names; None for what start_tuning gives no
    outcome (a folder marker)."""
    key, size = version["Key"], version.get("Size")
    if not names.is_accepted_key(key, size):
        return None
    version_id = names.object_version(version.get("VersionId"))
    return DroppedObject(bucket, key, version_id, (version.get("ETag") or "").strip('"') or None, size)


@dataclass
class Lookups:
    """What a sweep reads once for all the versions it looks up (has_run): the prefixes recorded, each dataset's
    runs."""

    prefixes: set[str] | None = None
    datasets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def has_run(runs: RunsRepository, obj: DroppedObject, prefix: str, read: Lookups) -> bool:
    """Whether a run was made for this object version, whatever its id: under a prefix the stack recorded (one
    GetItem each, ``tuning.earlier_prefix_run``), else among its dataset's runs (their ``source``: prefixes used
    before they were recorded). ``read``: what the sweep read already, so each is read once a sweep, not once for
    each version."""
    if read.prefixes is None:
        read.prefixes = prefixes.recorded(runs.table)
    if earlier_prefix_run(runs, obj, prefix, read.prefixes) is not None:
        return True
    dataset = names.dataset_name(obj.key)
    if dataset not in read.datasets:
        read.datasets[dataset] = list(runs.all_of_dataset(dataset))
    return upload_run(obj, read.datasets[dataset]) is not None


def _existing(clients: AwsClients, run_ids: list[str]) -> tuple[set[str], set[str]]:
    """Of ``run_ids``: those whose run exists, and those DynamoDB left unprocessed (unknown until the next pass)."""
    table = clients.runs_table
    existing: set[str] = set()
    unread: set[str] = set()
    for start in range(0, len(run_ids), _BATCH_GET):
        keys = [{"run_id": run_id} for run_id in run_ids[start : start + _BATCH_GET]]
        for _ in range(_BATCH_GET_TRIES):
            response = table.meta.client.batch_get_item(RequestItems={
                table.name: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "run_id"}})
            existing.update(item["run_id"] for item in response.get("Responses", {}).get(table.name, []))
            keys = response.get("UnprocessedKeys", {}).get(table.name, {}).get("Keys", [])
            if not keys:
                break
        unread.update(key["run_id"] for key in keys)
    return existing, unread


def _cursor(clients: AwsClients) -> dict[str, str]:
    item = clients.runs_table.get_item(Key={"run_id": CURSOR_KEY}, ConsistentRead=True).get("Item") or {}
    return {k: item[k] for k in ("KeyMarker", "VersionIdMarker") if item.get(k)}


def _save_cursor(clients: AwsClients, cursor: dict[str, str]) -> None:
    """Keep where the next pass's listing goes on from (empty: from the start)."""
    clients.runs_table.put_item(Item={"run_id": CURSOR_KEY, **cursor, "updated_at": now_iso()})
