"""``reviewtune audit``: every file version under incoming/ beside the run it has, so that the outcome guarantee can be
checked from outside (one run per version) rather than trusted.

Versions are listed from S3 (ListObjectVersions), runs read per dataset from the ``by_dataset`` index and matched by
key and version (the identity start_tuning names runs by; without versioning key and ETag, the newest run of the
same bytes uploaded again), so runs named under any job name prefix count. A version without a run
is either on its way (written less than the grace ago: its event may still come) or missed: the reconciler's next
pass claims it (missed_drops.py) when it is within the sweep's window, else it is for people.

A run found is checked too, for the other half of the guarantee: an ended run's outcome message (its outbox entry)
sent, and a run in progress not past the deadline of its state (``deadline_at``, where the reconciler ends it). Each
debt is let be for the grace (the reconciler sends and ends within minutes: a debt an hour old means it is not
running, or SNS refuses), then named in the row's ``problem``. The grace and the days looked at are the stack's own
sweep's (``stack_defaults``: its ``MissedDropGraceMinutes`` and ``MissedDropWindowDays``, an hour and a week unless
set); ``reviewtune audit --grace-minutes`` / ``--days`` change them: a longer grace for a scheduled check that should
name only what is long overdue, a shorter one to see at once what is not settled yet (a version without a run is
claimed by the reconciler only after the stack's grace).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.table import Table
from rich.text import Text

from reviewtune.console.text import FOLD, TIME, ByWidth, add_row, id_column, new_table, stacked, utc_time
from reviewtune.core import claims, config, missed_drops, names, page
from reviewtune.core.runs import RunsRepository, outcome_message, parse_iso
from reviewtune.core.states import is_final
from reviewtune.core.tuning import dropped_object

NO_RUN_YET = "no run yet"  # written within the grace: its event may still come
MISSING = "no run"
# A row's problem: what is owed for the version an hour after it fell due.
NOT_TOLD = "outcome not told"  # an ended run whose outcome message is not sent
OVERDUE = "past its deadline"  # a run in progress that the reconciler should have ended
DEFAULT_GRACE_SECONDS = config.MISSED_DROP_GRACE_MINUTES * 60
# the template's parameters that set the reconciler's sweep (config.MISSED_DROP_GRACE_MINUTES, _WINDOW_DAYS)
GRACE_PARAMETER, WINDOW_PARAMETER = "MissedDropGraceMinutes", "MissedDropWindowDays"


def stack_defaults(parameters: Mapping[str, str]) -> tuple[float, float]:
    """The grace (seconds) and the window (days) of the stack's own sweep, from its parameters as deployed; the
    defaults for a stack that has none (deployed before they existed) or a value that is not a number."""

    def number(name: str, default: float) -> float:
        try:
            value = float(parameters.get(name, ""))
        except ValueError:
            return default
        return value if 0 <= value < float("inf") else default

    return (number(GRACE_PARAMETER, config.MISSED_DROP_GRACE_MINUTES) * 60,
            number(WINDOW_PARAMETER, config.MISSED_DROP_WINDOW_DAYS))


def audit(s3: Any, runs: RunsRepository, bucket: str, dataset: str | None, days: float,
          now: datetime | None = None, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> list[dict[str, Any]]:
    """One row per version under incoming/ (or the dataset's key or folder) written within ``days``, newest first;
    what is owed for ``grace_seconds`` or longer is the row's ``problem``."""
    if grace_seconds < 0:
        raise ValueError(f"the grace cannot be negative, got {grace_seconds:g} s")
    now = now or datetime.now(UTC)
    grace = timedelta(seconds=grace_seconds)
    since = now - timedelta(days=days)
    scope = names.normalize_dataset(dataset) if dataset else ""
    by_dataset: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    for spelling in names.key_spellings(scope):  # a key written with decomposed accents is the same dataset
        for listed in s3.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                        Prefix=names.INCOMING_PREFIX + spelling):
            for version in listed.get("Versions", []):
                obj = missed_drops.dropped_version(bucket, version)
                # the prefix `team-a` also lists team-ab/: only the dataset named, or the folder's
                if (obj is not None and version["LastModified"] >= since
                        and names.in_scope(name := names.dataset_name(obj.key), scope)):
                    by_dataset[name].append((version, obj))
    rows = []
    for name, found in by_dataset.items():
        known: dict[str, dict[str, Any]] = {}
        for run in sorted(runs.all_of_dataset(name), key=lambda run: str(run.get("created_at"))):
            # the newest of the runs of the same bytes uploaded again at a key of a bucket without versioning: the
            # upload the key holds now (tuning.claim_run)
            known[dropped_object(run).version_identity] = run
        for version, obj in found:
            run = known.get(obj.identity)
            row = {"key": obj.key, "version_id": obj.version_id, "written": version["LastModified"],
                   "size": obj.size, "dataset": name, "run_id": None, "status": None, "message_recorded_at": None,
                   "message_sent_at": None, "message_id": None, "problem": None}
            if run is None:
                late = now - version["LastModified"] >= grace
                row.update(status=MISSING if late else NO_RUN_YET, problem=MISSING if late else None)
            else:
                row.update(run_id=run["run_id"], status=run["status"], **_told(run), problem=_owed(run, now, grace))
            rows.append(row)
    return sorted(rows, key=lambda row: row["written"], reverse=True)


def _told(run: dict[str, Any]) -> dict[str, Any]:
    """When the ended run's outcome message was recorded and sent, and SNS's id of it."""
    message = outcome_message(run) or {}
    return {"message_recorded_at": message.get("created_at"), "message_sent_at": message.get("sent_at"),
            # an item written before the outbox existed keeps only the id of the message it sent
            "message_id": message.get("message_id") or (run.get("notification_message_id") if not message else None)}


def _owed(run: dict[str, Any], now: datetime, grace: timedelta) -> str | None:
    """The run's debt ``grace`` after it fell due: its outcome message, or its end."""
    if is_final(run["status"]):
        told = _told(run)
        if _was_told(told):
            return None
        recorded = told["message_recorded_at"] or run.get("updated_at")
        return NOT_TOLD if not recorded or now - parse_iso(recorded) >= grace else None
    ended_by = claims.ended_by(run)  # a claim that awaits its first restart: that long past its deadline
    return OVERDUE if ended_by and now - ended_by >= grace else None


def was_told(run: dict[str, Any]) -> bool:
    """Whether the ended run's outcome message was sent."""
    return _was_told(_told(run))


def _was_told(row: dict[str, Any]) -> bool:
    return bool(row["message_sent_at"] or row["message_id"])


def summary(rows: list[dict[str, Any]], grace_seconds: float = DEFAULT_GRACE_SECONDS) -> str:
    """The rows counted: what is settled, on its way, and owed for ``grace_seconds`` or longer."""
    def count(test: Any) -> int:
        return sum(1 for row in rows if test(row))

    ended = count(lambda r: r["run_id"] and is_final(r["status"]))
    told = count(lambda r: r["run_id"] and is_final(r["status"]) and _was_told(r))
    going = count(lambda r: r["run_id"] and not is_final(r["status"]))
    waiting = count(lambda r: r["status"] == NO_RUN_YET)
    owed = {problem: count(lambda r, p=problem: r["problem"] == p) for problem in (MISSING, NOT_TOLD, OVERDUE)}
    within, over = _grace_words(grace_seconds)
    return (f"{len(rows)} version{'' if len(rows) == 1 else 's'}: {ended} ended ({told} told), {going} in progress, "
            f"{waiting} written within {within} without a run yet; owed for over {over}: "
            f"{owed[MISSING]} without a run, {owed[NOT_TOLD]} outcome{'' if owed[NOT_TOLD] == 1 else 's'} not told, "
            f"{owed[OVERDUE]} past the deadline")


def _grace_words(seconds: float) -> tuple[str, str]:
    """How the summary names the grace: ("the hour", "an hour") for the default."""
    if seconds == 3600:
        return "the hour", "an hour"
    minutes = f"{seconds / 60:g} minute{'' if seconds == 60 else 's'}"
    return f"the last {minutes}", minutes


def table(rows: list[dict[str, Any]], title: str) -> ByWidth:
    """Every version beside its run; in a narrow terminal each version is under its file and each status under its
    run, so that run ids stay whole in 80 columns."""
    return ByWidth(_table(rows, title, narrow=False), _table(rows, title, narrow=True))


def _table(rows: list[dict[str, Any]], title: str, *, narrow: bool) -> Table:
    view = new_table(title, narrow=narrow)
    if narrow:
        for column, options in (("written (UTC)", TIME), ("file / version", FOLD),
                                ("run / status", id_column(row["run_id"] or "-" for row in rows)),
                                ("told (UTC)", TIME), ("problem", FOLD)):
            view.add_column(column, **options)
    else:
        for column in ("written (UTC)", "file", "version", "run", "status", "told (UTC)", "problem"):
            view.add_column(column, overflow="fold")
    for row in rows:
        cells = [utc_time(row["written"]), page.one_line(row["key"]), row["version_id"] or "-", row["run_id"] or "-",
                 row["status"], _told_cell(row), Text(row["problem"], style="red") if row["problem"] else "-"]
        if narrow:
            cells[1:5] = [stacked(cells[1], cells[2]), stacked(cells[3], cells[4])]
        add_row(view, *cells)
    return view


def _told_cell(row: dict[str, Any]) -> str:
    if row["message_sent_at"]:
        return utc_time(row["message_sent_at"])
    if row["message_id"]:
        return "yes"
    if row["message_recorded_at"]:
        return f"not sent yet (recorded {utc_time(row['message_recorded_at'])})"
    return "no message recorded" if row["run_id"] and is_final(row["status"]) else "-"
