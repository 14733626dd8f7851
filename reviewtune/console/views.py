"""Rich tables of runs, one run and its trials (the ``--json`` forms print the data itself)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.rule import Rule
from rich.table import Table

from reviewtune.console import job_logs
from reviewtune.console.text import (
    FOLD,
    STATUS,
    TIME,
    WHOLE,
    ByWidth,
    add_row,
    id_column,
    new_table,
    plain,
    stacked,
    utc_time,
)
from reviewtune.core import (
    claims,
    display,
    job_stops,
    page,
    promotion,
    runs,
    states,
    stop_requests,
    withdrawal,
)
from reviewtune.core.champion import package_fate, package_state
from reviewtune.core.dataset import LABEL_NAMES
from reviewtune.core.trial_facts import time_limited_share
from reviewtune.core.trial_records import total as trials_total


def _pct(value: float | None) -> str:
    """An accuracy in a column headed %: 0.675213 -> 67.52."""
    return display.percent(value, suffix=False, missing="-")


def runs_table(items: list[dict[str, Any]], title: str) -> ByWidth:
    """Runs, one per row; in a narrow terminal each run's dataset is under its id (the columns then fit 80)."""
    return ByWidth(_runs_table(items, title, narrow=False), _runs_table(items, title, narrow=True))


def _runs_table(items: list[dict[str, Any]], title: str, *, narrow: bool) -> Table:
    table = new_table(title, narrow=narrow)
    for column in ("run", "created (UTC)", "status", "dataset", "rows train/val/test", "val %", "test %"):
        if narrow and column == "dataset":
            continue
        if not narrow:
            options = WHOLE if column in ("run", "status", "val %", "test %") else FOLD
        elif column == "run":  # the id whole, the dataset under it folded to the id's width
            options = id_column(item["run_id"] for item in items)
        else:
            options = {"created (UTC)": TIME, "status": STATUS,
                       "rows train/val/test": {**FOLD, "max_width": 9}}.get(column, WHOLE)
        header = "rows train / val / test" if narrow and column.startswith("rows") else column
        table.add_column(header, justify="right" if "%" in column else "left", **options)
    for item in items:
        rows = item.get("data", {}).get("summary", {}).get("rows", {})
        best = item.get("tuning", {}).get("best_training_job", {})
        accuracy = item.get("metrics", {}).get("accuracy", {}).get("value")
        counts = [f"{rows[s]:,}" for s in ("train", "validation", "test") if s in rows]
        cells = [
            item["run_id"],
            utc_time(item.get("created_at")),
            status_text(item),
            page.one_line(item.get("dataset", "")),
            (" / " if narrow else "/").join(counts) or "-",
            f"{best['objective']:.2f}" if best.get("objective") is not None else "-",
            _pct(accuracy),
        ]
        if narrow:
            cells[0] = stacked(cells[0], cells.pop(3))
        add_row(table, *cells)
    return table


def status_text(item: dict[str, Any]) -> str:
    """The run's status; one not ended yet that a person asked to stop says so (stop_requests.py), one whose file was
    tuned again in another run too (retries.py), one whose outcome message is still in its outbox (outbox.py)."""
    status = str(item.get("status", "?"))
    if stop_requests.requested(item) and not states.is_final(status):
        if stop_requests.is_deadline(item):  # reviewtune ends it: at its deadline, or for the request's occasion
            occasion = item["stop_request"].get("occasion")
            return f"{status}, ending ({occasion})" if occasion else f"{status}, ending at its deadline"
        return f"{status}, stopping"
    if isinstance(item.get("retried"), dict):
        return f"{status}, retried"
    outcome = runs.outcome_message(item)
    if outcome is not None and not outcome.get("sent_at"):
        return f"{status}, not told yet"
    return status


def _search(item: dict[str, Any]) -> str:
    config = item.get("config", {})
    if not config:
        return "-"
    trials, epochs = config.get("max_jobs", "?"), config.get("epochs", "?")
    return (f"{config.get('strategy', '?')}, {trials} trial{'' if trials == 1 else 's'}, "
            f"{config.get('max_parallel_jobs', '?')} at a time, {epochs} epoch{'' if epochs == 1 else 's'}, "
            f"model {config.get('model_name', '?')}")


def _trials(tuning: dict[str, Any]) -> str | None:
    """How many trials ran, and where the whole list is when the record keeps only the best."""
    if not tuning.get("trials") and not tuning.get("trials_total"):
        return None
    kept = len(tuning.get("trials") or [])
    counted = trials_total(tuning)
    if tuning.get("trials_uri") and counted > kept:
        return f"{counted:,} (the best {kept:,} kept here; all in {tuning['trials_uri']})"
    return f"{counted:,}"


def _facts(item: dict[str, Any]) -> list[tuple[str, Any]]:
    """The run's facts that have a value: what it is, then why it is in its status."""
    source = item.get("source", {})
    tuning = item.get("tuning", {})
    best = tuning.get("best_training_job", {})
    metrics = item.get("metrics", {})
    rows = item.get("data", {}).get("summary", {}).get("rows", {})
    accuracy = metrics.get("accuracy", {})
    interval = display.interval(accuracy.get("ci95"))
    champion = item.get("champion") or {}
    status = item.get("status", "?")
    facts: list[tuple[str, Any]] = [
        ("run", item["run_id"]),
        ("status", status),
        ("dataset", page.one_line(item.get("dataset", ""))),
        ("source", page.versioned(f"s3://{source.get('bucket', '?')}/{source.get('key', '?')}", source.get("version_id"))),
        ("rows", " / ".join(f"{s} {rows[s]:,}" for s in ("train", "validation", "test") if s in rows) or "-"),
        ("search", _search(item)),
        ("trials", _trials(tuning)),
        ("best trial", best.get("name", "-")),
        ("best hyperparameters", ", ".join(f"{k}={display.hyperparameter(v)}" for k, v in sorted(best.get("tuned_hyperparameters", {}).items())) or "-"),
        ("validation accuracy", display.percent(best.get("objective"), scale=1, missing="-")),
        ("test accuracy", display.percent(accuracy.get("value"), missing="-")
         + (f"  ({interval})" if interval else "") if accuracy else "-"),
        ("macro F1", display.score(metrics["macro_f1"].get("value")) if "macro_f1" in metrics else "-"),
        ("took", took(item)),
        ("billable seconds", display.count(tuning["total_billable_seconds"]) if "total_billable_seconds" in tuning else "-"),
        ("estimated cost", display.estimated_cost(tuning.get("cost"), (item.get("results") or {}).get("evaluation_cost"))),
        ("champion", champion.get("reason") or champion.get("error") or "-"),
        ("promoted", _promoted(item)),
        ("model package", _package(item)),
        ("duplicate of", item.get("duplicate_of")),
        ("ends by (UTC)", _ends_by(item, status)),
        ("last waited in the queue for", ", ".join(item.get("queue_waited_for") or ()) or None),
        ("last start error", item.get("start_error")),
        ("tuning job start", _start_tries(item)),
        ("stop requested", _stop_request(item)),
        ("found by sweep", f"{utc_time(item['found_by_sweep'])}: its Object Created event never came; the "
         "reconciler found the file in incoming/" if item.get("found_by_sweep") else None),
        ("retry of", item.get("retry_of")),
        ("retried as", _retried(item)),
        ("stopped at" if status == "STOPPED" else "failed at", item.get("failed_stage")),
        ("no copy kept", item.get("not_copied")),
        ("job to stop", _jobs_to_stop(item)),
        ("message not sent", _unsent(item)),
    ]
    if not tuning:  # no tuning job recorded (rejected, a duplicate, not started): its rows would all say "-"
        facts = [(label, value) for label, value in facts if not (label in _TUNED_ONLY and value == "-")]
    return [(label, value) for label, value in facts if value is not None]


# the facts only a run that tuned has: left out of a run without a tuning job where they have nothing to say
_TUNED_ONLY = frozenset({"search", "trials", "best trial", "best hyperparameters", "validation accuracy", "test accuracy",
                         "macro F1", "billable seconds", "estimated cost", "champion", "model package"})

# a reason that is not a failure: a person's stop, a file refused or already tuned
_REASON_LABELS = {"STOPPED": "stop reason", "REJECTED": "rejection reason", "DUPLICATE": "duplicate reason"}


def took(item: dict[str, Any]) -> str | None:
    """How long the run took, from its creation to its end (or so far, while it has not ended). An ended run
    recorded without the moment it ended (an item older than status_history) counts to its last update; None if
    it has none either."""
    created = item.get("created_at")
    if not created:
        return None
    status = item.get("status")
    final = states.is_final(status)
    ended = ((item.get("status_history") or {}).get(status) or item.get("updated_at")) if final else None
    if final and not ended:
        return None
    try:
        start = runs.parse_iso(created)
        end = runs.parse_iso(ended) if ended else datetime.now(UTC)
    except (TypeError, ValueError):
        return None
    seconds = max(0, int((end - start).total_seconds()))
    span = display.duration(seconds)
    return span if ended else f"{span} so far"


def _ends_by(item: dict[str, Any], status: str) -> str | None:
    if not item.get("deadline_at"):
        return None
    moved = (" (moved on while another run holding a slot is tuning or evaluating; for a run holding one, only past "
             "its start's next try)" if status == states.RunStatus.QUEUED.value and not stop_requests.requested(item)
             else "")
    if claims.awaits_first_restart(item):
        moved = (f", or up to {display.duration(claims.UNRESTARTED_CLAIM_GRACE_SECONDS)} later while no restart has "
                 "reached it (the reconciler starts it over first)")
    return f"{utc_time(item['deadline_at'])} at the latest: the reconciler ends a run still {status} then{moved}"


def _start_tries(item: dict[str, Any]) -> str | None:
    """The throttled tries of the run's tuning job start (aws_errors.next_attempt), while the run waits to start."""
    start = item.get("tuning_start")
    if not isinstance(start, dict) or item.get("status") not in (states.RunStatus.CLAIMED, states.RunStatus.QUEUED):
        return None
    return (f"refused {start.get('attempts', '?')} time(s), last: {start.get('last_error', '-')}; next try "
            f"{utc_time(start['next_attempt_at']) if start.get('next_attempt_at') else '-'}")


def _unsent(item: dict[str, Any]) -> str | None:
    """The run's messages still in its outbox: the reconciler's next pass sends them (outbox.py)."""
    waiting = runs.unsent(item)
    if not waiting:
        return None
    return "; ".join(f"{entry.get('status')} (recorded {utc_time(entry.get('created_at'))})" for entry in waiting) + (
        ": sent by the reconciler's next pass; `reviewtune audit` names one over an hour old")


def _jobs_to_stop(item: dict[str, Any]) -> str | None:
    """A job made for the run after it ended that SageMaker has not yet taken the stop of (job_stops.py)."""
    owed = job_stops.owed(item)
    if not owed:
        return None
    jobs = ", ".join(f"{job_stops.KINDS[kind][1]} {name}" for kind, name in owed.items())
    return f"{jobs}: made as the run ended; its stop was refused, and the reconciler stops it"


def _stop_request(item: dict[str, Any]) -> str | None:
    if not stop_requests.requested(item) or stop_requests.is_deadline(item):  # a deadline's reason is the run's own
        return None
    return _when_by_why(item["stop_request"])


def _retried(item: dict[str, Any]) -> str | None:
    """The run its file was tuned again in (retries.py)."""
    retried = item.get("retried")
    if not isinstance(retried, dict):
        return None
    version = f" (version {retried['version_id']})" if retried.get("version_id") else ""
    return f"{retried.get('new_run_id')}{version}, {_when_by_why(retried)}"


def _promoted(item: dict[str, Any]) -> str | None:
    """Who made the run champion by hand (`reviewtune promote`), when and why."""
    promoted = item.get("promoted")
    if not isinstance(promoted, dict):
        return None
    return _when_by_why(promoted)


def _when_by_why(record: dict[str, Any]) -> str:
    """A person's act on the run (a stop request, a retry, a promotion): when, by whom, why."""
    return f"{utc_time(record.get('at'))} by {record.get('by')}: {record.get('reason')}"


def _package(item: dict[str, Any]) -> str | None:
    """The run's version in the Model Registry and its approval; for a run that ended otherwise after its package
    was marked for approval, that the approval is withdrawn (withdrawal.py)."""
    registry = item.get("registry") or {}
    arn = item.get("model_package_arn") or registry.get("model_package_arn")
    if not arn:
        return f"not registered: {registry['error']}" if registry.get("error") else None
    if item.get("status") == "SUCCEEDED":
        return f"{arn} ({registry.get('approval') or 'PendingManualApproval'})" + (
            f"; {registry['error']}" if registry.get("error") else ""
        ) + ("; not champion: the reconciler is putting it back to PendingManualApproval"
             if withdrawal.owed(item) else "")
    if item.get("approval_settled_at"):
        return f"{arn} (approved for the champion move, then withdrawn: the run did not succeed)"
    return f"{arn} (approved for the champion move; the reconciler is putting it back to PendingManualApproval)"


_UNREADABLE_TIME = datetime.min.replace(tzinfo=UTC)  # a time that does not parse sorts first

# The timeline's words for a run entering each status.
ENTERED = {
    "CLAIMED": "file received ({status})",
    "QUEUED": "waiting for a free slot ({status})",
    "TUNING": "tuning job started ({status})",
    "EVALUATING": "evaluation job started ({status})",
    "REJECTED": "file rejected ({status})",
    "DUPLICATE": "same content as an earlier run ({status})",
}


def _versioned(uri: Any, version: Any) -> Any:
    """page.versioned of a URI the item may not have."""
    return page.versioned(uri, version) if uri else uri


FAILED_TRIALS_SHOWN = 5


def _failed_trials(item: dict[str, Any]) -> str:
    """Why the run's failed trials failed, one per line (the first few), as its message lists them."""
    trials = (item.get("tuning") or {}).get("trials")
    if not isinstance(trials, list):
        return ""
    failed = [t for t in trials if isinstance(t, dict) and t.get("failure_reason")]
    lines = [f"{display.trial_suffix(t.get('name'))}: {t['failure_reason']}" for t in failed[:FAILED_TRIALS_SHOWN]]
    if len(failed) > FAILED_TRIALS_SHOWN:
        lines.append(f"and {len(failed) - FAILED_TRIALS_SHOWN} more: `reviewtune runs trials {item['run_id']}`")
    return "\n".join(lines)


def decision_since(decision: dict[str, Any], run_id: str, *, promoted: bool, champion_now: str | None) -> str:
    """The champion decision recorded when a run's results were (its item's ``champion``), with what changed since:
    a promotion by hand, and, for a run that was champion (by that decision, or ``promoted``), whether it is now."""
    notes = ["promoted by hand"] if promoted else []
    if champion_now and _was_champion(decision, run_id, promoted):
        notes.append("champion now" if champion_now == run_id else "since replaced")
    text = str(decision.get("decision") or "-")
    return f"{text} ({', '.join(notes)})" if notes else text


def _was_champion(decision: dict[str, Any], run_id: str, promoted: Any) -> bool:
    """Whether the run became champion: by its own decision, or promoted by hand."""
    return decision.get("champion_run_id") == run_id or bool(promoted)


def item_decision(item: dict[str, Any], champion_now: str | None) -> str:
    """``decision_since`` of a run's item."""
    champion = item.get("champion") if isinstance(item.get("champion"), dict) else {}
    return decision_since(champion, item["run_id"], promoted=isinstance(item.get("promoted"), dict),
                          champion_now=champion_now)


def replaced_champion(item: dict[str, Any], current: Any) -> str | None:
    """For a run that was its dataset's champion (its own decision, or a promotion by hand) and is not now: which run
    is, and since when. ``current``: the dataset's champion now (champion.Champion), or None."""
    was = _was_champion(item.get("champion") or {}, item["run_id"], item.get("promoted"))
    if not was or current is None or current.run_id == item["run_id"]:
        return None
    return f"no longer: {current.run_id} since {display.utc_time(current.changed_at)}"


def next_step(item: dict[str, Any], champion: Any = None, *, champion_read: bool = True,
              retry_refused: Callable[[], str | None] = lambda: None) -> str | None:
    """What a person can do next with the run, as a command to paste (the message names the same ones), or None:
    retry a run that ended without a result, follow one that has not ended, look at the run a duplicate or a retry
    points to, promote a SUCCEEDED run that is not its dataset's champion. ``champion``: the dataset's champion now
    (champion.Champion) or None; ``champion_read`` False: the pointer could not be read (no promote then);
    ``retry_refused``: why ``runs retry`` would refuse the run (retries.refusal), said instead of the command; asked
    only where a retry would be named."""
    run_id, status = item["run_id"], item.get("status")
    retried = item.get("retried") if isinstance(item.get("retried"), dict) else None
    if retried and retried.get("new_run_id"):
        return f"its retry: `reviewtune runs show {retried['new_run_id']}`"
    retry = f"`reviewtune runs retry {run_id} --reason TEXT`"
    if status in (runs.RunStatus.FAILED, runs.RunStatus.STOPPED):
        refused = retry_refused()
        if refused:
            return f"a retry would be refused: {refused}"
        return ("to tune its file again" + ("" if status == runs.RunStatus.STOPPED else " once the cause is fixed")
                + f": {retry}")
    if status == runs.RunStatus.REJECTED:
        if item.get("unreadable"):  # the file may be fine: S3 would not read it
            refused = retry_refused()
            return f"a retry would be refused: {refused}" if refused else f"once S3 can read the file: {retry}"
        return "fix the file and drop it into incoming/ again"
    if status == runs.RunStatus.DUPLICATE and item.get("duplicate_of"):
        return f"the run that tunes its content: `reviewtune runs show {item['duplicate_of']}`"
    if status == runs.RunStatus.SUCCEEDED:
        return _promote_step(item, champion) if champion_read else None
    if not states.is_final(str(status)):
        return f"to watch it to its end: `reviewtune runs show {run_id} --follow`"
    return None


def promotable(item: dict[str, Any]) -> bool:
    """Whether ``reviewtune promote`` takes the run (promotion.refusal)."""
    return promotion.refusal(item) is None


def _promote_step(item: dict[str, Any], champion: Any) -> str | None:
    """``promote`` for a SUCCEEDED run that is not its dataset's champion and that promote takes (a model package and
    a test accuracy recorded: promotion._promotable)."""
    run_id = item["run_id"]
    if champion is not None and champion.run_id == run_id:
        return None
    if not promotable(item):
        return None
    command = f"`reviewtune promote {run_id} --reason TEXT`"
    decision = item.get("champion") if isinstance(item.get("champion"), dict) else {}
    if _was_champion(decision, run_id, item.get("promoted")):
        return f"to make it its dataset's champion again: {command}"
    why = decision.get("decision")
    return (f"it is not champion{f' ({why})' if why else ''}; a person can make it so: {command}")


def run_view(item: dict[str, Any], *, champion_now: str | None = None) -> Group:
    parts: list[Any] = []
    tuning = item.get("tuning", {})
    best = tuning.get("best_training_job", {})
    metrics = item.get("metrics", {})
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    for label, value in _facts(item):
        add_row(facts, label, value)
        if label == "champion" and champion_now:
            add_row(facts, plain("champion now", style="yellow"), champion_now)
    if item.get("failure_reason"):
        label = _REASON_LABELS.get(str(item.get("status")), "failure reason")
        add_row(facts, plain(label, style="yellow" if label != "failure reason" else "red"), item["failure_reason"])
    failed_trials = _failed_trials(item)
    if failed_trials:  # SageMaker's reason of a failed tuning job is generic: each trial's says what went wrong
        add_row(facts, plain("failed trials", style="red"), failed_trials)
    parts.append(facts)
    timeline = Table(title="Timeline (UTC)")
    timeline.add_column("when", **WHOLE)
    timeline.add_column("what", **FOLD)
    entered = item.get("status_history") or {}
    if entered:  # when the run entered each status (runs.py), and when its tuning job ended
        events = [(when, ENTERED.get(status, "ended {status}").format(status=status)) for status, when in entered.items()]
        events.append((tuning.get("ended_at"), f"tuning job {tuning.get('status', 'ended')}"))
        events.append((item.get("approval_settled_at"), "package approval withdrawn for good"))
        if stop_requests.is_deadline(item):
            occasion = item["stop_request"].get("occasion") or "deadline passed"
            events.append((item["stop_request"].get("at"), f"{occasion}: reviewtune ends it"))
        elif stop_requests.requested(item):
            events.append((item["stop_request"].get("at"), f"stop requested by {item['stop_request'].get('by')}"))
        events += [(entry.get("sent_at"), f"told: {entry.get('subject')} (SNS message {entry.get('message_id')})")
                   for entry in runs.messages(item)]
        events += [(entry.get("superseded_at"),
                    ("dropped, out of date, after a sender took it to publish (it may have gone out): "
                     if runs.dropped_while_leased(entry) else "not told, out of date: ") + str(entry.get("subject")))
                   for entry in runs.messages(item) if runs.dropped_unsent(entry)]
        if isinstance(item.get("retried"), dict):
            events.append((item["retried"].get("at"), f"retried as {item['retried'].get('new_run_id')} by "
                           f"{item['retried'].get('by')}"))
    else:  # an item written before status_history was
        events = [
            (item.get("created_at"), "file accepted, run created" if item.get("status") != "REJECTED" else "file rejected"),
            (tuning.get("started_at"), "tuning job created"),
            (tuning.get("ended_at"), f"tuning job {tuning.get('status', 'ended')}"),
            (item.get("updated_at"), f"last update: {item.get('status')}"),
        ]
    # In time order to the fraction of a second: shown to the second, a job's end and the next step share one.
    for when, what in sorted((e for e in events if e[0]), key=lambda e: display.moment(e[0]) or _UNREADABLE_TIME):
        add_row(timeline, utc_time(when), what)
    parts.append(timeline)
    per_class = metrics.get("per_class", {})
    if per_class:
        parts.append(per_class_table(per_class))
    artifacts = Table(title="Artifacts")
    artifacts.add_column("what", **FOLD)
    artifacts.add_column("where", **FOLD)
    for label, value in (
        *(("data " + s, item.get("data", {}).get(s)) for s in ("train", "validation", "test")),
        ("best model", best.get("model_uri")),
        *((k.replace("_uri", ""), v) for k, v in item.get("results", {}).items() if k.endswith("_uri")),
        ("all trials", tuning.get("trials_uri")),
        ("rejected copy", _versioned(item.get("rejected_uri"), item.get("rejected_version_id"))),
        ("rejection reason", _versioned(item.get("reason_uri"), item.get("reason_version_id"))),
    ):
        if value:
            add_row(artifacts, label, str(value))
    if artifacts.row_count:
        parts.append(artifacts)
    return Group(*parts)


def _epochs(row: dict[str, Any]) -> str:
    """Epochs run, with the share of the planned steps where a time limit cut them."""
    if row.get("Epochs") is None:
        return "-"
    share = time_limited_share(row.get("PlannedStepsPct"))
    return f"{row['Epochs']} ({display.share_done(share)} of steps)" if share is not None else str(row["Epochs"])


def trials_table(rows: list[dict[str, Any]], title: str) -> ByWidth:
    """One row per trial, readable in 80 columns (with the two tuned settings of the template's default): the trial
    as its number and suffix (the title names the run), each number at least as wide as its widest value (headers
    wrap at their words instead), the times left to --json (``seconds`` is the duration), and under the table why
    each failed trial failed. Where even that is too wide (more settings tuned, a narrower terminal): records."""
    fixed = {"TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue", "TrainingStartTime", "TrainingEndTime",
             "TrainingElapsedTimeSeconds", "TrainingJobDefinitionName", "Epochs", "PlannedStepsPct", "EarlyStopped",
             "FailureReason", "Deleted"}
    params = sorted({k for row in rows for k in row if k not in fixed})
    ordered = sorted(rows, key=lambda r: r["TrainingJobName"])
    cells = [
        [
            *(display.hyperparameter(row.get(p, "")) for p in params),
            display.trial_suffix(row["TrainingJobName"]),
            row["TrainingJobStatus"] + (" (deleted)" if row.get("Deleted") else ""),
            "-" if row.get("FinalObjectiveValue") is None else f"{row['FinalObjectiveValue']:.2f}",
            "-" if row.get("TrainingElapsedTimeSeconds") is None else f"{row['TrainingElapsedTimeSeconds']:.0f}",
            _epochs(row) + (", stopped early" if row.get("EarlyStopped") else ""),
        ]
        for row in ordered
    ]
    # The table's own short headers (--json keeps the SDK's column names): the SDK's are wider than their values.
    headers = [*(p.replace("_", " ") for p in params), "trial", "status", "val acc %", "seconds", "epochs"]
    right = {*range(len(params)), len(params) + 2, len(params) + 3}
    failures = [f"{display.trial_suffix(row['TrainingJobName'])} failed: {row['FailureReason']}"
                for row in ordered if row.get("FailureReason")]
    table = new_table(title, caption=plain("\n".join(failures)) if failures else None, caption_justify="left")
    for index, header in enumerate(headers):
        widest = max((len(line[index]) for line in cells), default=1)
        if header == "epochs":  # "2 (81 % of steps), stopped early" may wrap at its words
            table.add_column(header, min_width=min(widest, 10), **FOLD)
            continue
        # a number, an id, a status whole; the header wraps at its words to that width (rich would rather squeeze
        # every column alike, the values too)
        word = max(len(part) for part in header.split())
        table.add_column(header, justify="right" if index in right else "left", min_width=widest,
                         max_width=max(widest, word), **FOLD)
    for line in cells:
        add_row(table, *line)
    return ByWidth(table)


def per_class_table(per_class: dict[str, Any]) -> Table:
    """Precision, recall, F1 and support of each class of the test split."""
    table = Table(title="Per class (test split)")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right", **FOLD)
    for label, values in sorted(per_class.items(), key=lambda kv: str(kv[0])):
        name = LABEL_NAMES.get(int(label), label) if str(label).lstrip("-").isdigit() else label
        add_row(table, f"{name} ({label})", *(display.score(values.get(k)) for k in ("precision", "recall", "f1")),
                display.count(values.get("support")))
    return table


def champions_table(champions: list[dict[str, Any]], title: str) -> ByWidth:
    """One row per dataset's champion; in a narrow terminal each dataset is under its champion's id and the package
    under both (the columns then fit 80), a time a date over a time."""
    return ByWidth(_champions_table(champions, title, narrow=False), _champions_table(champions, title, narrow=True))


def _champions_table(champions: list[dict[str, Any]], title: str, *, narrow: bool) -> Table:
    table = new_table(title, narrow=narrow)
    ids = [champion["run_id"] for champion in champions]
    for column in ("dataset", "champion run", "test acc %", "test reviews", "since (UTC)", "changes", "model package"):
        if narrow and column in ("dataset", "model package"):  # under the champion's id
            continue
        if not narrow:
            options = WHOLE if column == "champion run" else FOLD
        else:
            options = {"champion run": id_column(ids), "since (UTC)": TIME}.get(column, WHOLE)
        header = "champion run / dataset" if narrow and column == "champion run" else column
        table.add_column(header, justify="right" if column in ("test acc %", "test reviews", "changes") else "left",
                         **options)
    for champion in champions:
        package = (champion.get("model_package_arn") or "-") + _package_note(champion)
        cells = [
            page.one_line(champion["dataset"]),
            champion["run_id"],
            _pct(champion.get("accuracy")),
            f"{champion.get('test_rows', 0):,}",
            utc_time(champion.get("changed_at")),
            str(champion.get("version", "-")),
            package,
        ]
        if narrow:
            cells = [stacked(champion["run_id"], f"{cells[0]}\n{package}"), *cells[2:6]]
        add_row(table, *cells)
    return table


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _package_note(champion: dict[str, Any]) -> str:
    """A champion's package Rejected or deleted by a person, after its ARN (former_champions.py)."""
    state = package_state(champion.get("package_rejected"))
    return f" ({state})" if state else ""


def champion_view(champion: dict[str, Any]) -> Group:
    """One dataset's champion, every change of champion and the recent runs' decisions."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    for label, value in (
        ("dataset", page.one_line(champion["dataset"])),
        ("champion", champion["run_id"]),
        ("test accuracy", f"{_pct(champion.get('accuracy'))} % on {champion.get('test_rows', 0):,} test reviews"),
        ("since", utc_time(champion.get("changed_at"))),
        ("model package", champion.get("model_package_arn") or "-"),
    ):
        add_row(facts, label, str(value))
    refused = champion.get("approval_refused_since")
    settling = sorted(champion.get("dethroned") or {})
    rejected = champion.get("package_rejected")
    serving = "the packages before it keep their approval" if settling else "no package of the dataset is Approved"
    if rejected:  # former_champions.py: a person rejected (or deleted) it; the next success replaces the champion
        said = f" (\"{rejected['description']}\")" if rejected.get("description") else ""
        add_row(facts, plain("package deleted" if rejected.get("deleted") else "package rejected", style="red"),
                f"{_capital(package_fate(rejected))}{said}, found {utc_time(rejected.get('found_at'))}: not "
                "approved again; the next run of the dataset that succeeds (better than answering one class) takes its "
                "place (or `reviewtune promote "
                f"RUN_ID` now); {serving}")
    if refused:  # former_champions.py: every pass tries again, and records it on the run after GIVE_UP_SECONDS
        add_row(facts, plain("approval refused", style="red"),
                f"SageMaker has refused to approve the champion's package since {utc_time(refused)}; {serving}")
    if settling:  # former_champions.py: the reconciler's next pass finishes it once the champion's package is Approved
        waiting = ("" if champion.get("model_package_arn") and not refused and not rejected else
                   "; kept as it is until the champion's package is Approved")
        add_row(facts, plain("approval settling", style="yellow"),
                f"{', '.join(settling)}: replaced, the package's approval still being set (back to pending, or "
                f"approved again for the champion){waiting}")
    history = ByWidth(_champion_history(champion, narrow=False), _champion_history(champion, narrow=True))
    decisions = ByWidth(_champion_decisions(champion, narrow=False), _champion_decisions(champion, narrow=True))
    return Group(facts, history, decisions)


def _column_options(column: str, narrow: bool, ids: list[str]) -> dict[str, Any]:
    """A champion table's column: the run id whole; in the narrow form times as a date over a time and statuses
    wrapped at their comma, not inside a word."""
    if column == "run":
        return id_column(ids) if narrow else WHOLE
    if narrow and column in ("since", "created"):
        return TIME
    if narrow and column == "status":
        return STATUS
    return FOLD


def _champion_history(champion: dict[str, Any], *, narrow: bool) -> Table:
    changes = champion.get("history", [])
    history = new_table("Champions, oldest first (UTC)", narrow=narrow)
    for column in ("since", "run", "test acc %", "why", "by"):
        history.add_column(column, justify="right" if "%" in column else "left",
                           **_column_options(column, narrow, [change.get("run_id", "?") for change in changes]))
    for change in changes:
        add_row(
            history, utc_time(change.get("at")), change.get("run_id", "?"), _pct(change.get("accuracy")),
            change.get("why", ""), change.get("by") or "reviewtune",
        )
    return history


def _champion_decisions(champion: dict[str, Any], *, narrow: bool) -> Table:
    rows = champion.get("decisions", [])
    decisions = new_table("Decisions of the newest runs (UTC)", narrow=narrow)
    for column in ("run", "created", "status", "test acc %", "decision", "why"):
        decisions.add_column(column, justify="right" if "%" in column else "left",
                             **_column_options(column, narrow, [decision["run_id"] for decision in rows]))
    for decision in rows:
        add_row(
            decisions, decision["run_id"], utc_time(decision.get("created_at")), decision.get("status", "?"),
            _pct(decision.get("test_accuracy")),
            decision_since(decision, decision["run_id"], promoted=bool(decision.get("promoted")),
                           champion_now=champion.get("run_id")),
            decision.get("reason") or decision.get("error") or "",
        )
    return decisions


def logs_view(entries: list[job_logs.JobLog], run_id: str) -> Group:
    """``runs logs``: each job's (or function's) lines under a rule naming it and how many lines, then where they are
    kept (a function's lines in short: ``job_logs.short_line``)."""
    parts: list[Any] = []
    for entry in entries:
        name = {"evaluation": "evaluation", "function": f"function {entry.job}"}.get(
            entry.kind, f"trial {display.trial_suffix(entry.job)}")
        lines = f"{display.count(len(entry.events))} line{'' if len(entry.events) == 1 else 's'}"
        days = sorted({datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC).strftime("%Y-%m-%d")
                       for event in entry.events})
        when = f", times UTC of {' to '.join(dict.fromkeys([days[0], days[-1]]))}" if days else ""
        parts.append(Rule(plain(f"{name}: {'the last ' if entry.truncated else ''}{lines}{when}")))
        where = f"{entry.group}  {entry.stream}" if entry.stream else f"{entry.group}, the invocations naming {run_id}"
        parts.append(plain(where, style="dim"))
        for event in entry.events:
            message = job_logs.short_line(event["message"], run_id) if entry.kind == "function" else event["message"]
            at = datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC).strftime("%H:%M:%S")
            parts.append(plain(f"{at}  {message}"))
    return Group(*parts)
