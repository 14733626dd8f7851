"""`reviewtune overview`: one self-contained HTML page of every dataset and run of the last days, for the people who
look after the pipeline: what needs attention first (files owed an outcome, runs that failed or were rejected, with
their reasons, champions whose model package a person rejected), then each dataset (its champion, its latest run),
then the runs, newest first.

``collect`` reads what the page shows through the same queries as the CLI's tables (`runs list`, `champion`,
`audit`: indexes and the listing of incoming/, never a table scan); ``render`` writes the page with the run report's
style (reviewtune/core/page.py). Every value is escaped; the page loads nothing and runs no script.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from reviewtune.console import audit, queries, views
from reviewtune.console.target import Target
from reviewtune.core import display, page, states
from reviewtune.core.champion import package_state
from reviewtune.core.reasons import bounded
from reviewtune.core.runs import RunStatus, now_iso

RUNS_READ = 500  # the window's runs read per status, newest first (the page says so when a status has more)
RUNS_SHOWN = 300  # rows of the runs table; the counts and "Needs attention" take every run read
REASON_CHARS = 300  # a failure's reason in a table cell; `runs show` has it whole
ATTENTION = (RunStatus.FAILED, RunStatus.REJECTED)


def collect(target: Target, days: float, *, now: datetime | None = None, runs_read: int = RUNS_READ) -> dict[str, Any]:
    """What the page shows, as data (also what ``--json`` prints)."""
    now = now or datetime.now(UTC)
    runs = target.runs()
    table = runs.table
    recent, complete = queries.runs_since(table, now_iso(now - timedelta(days=days)), runs_read)
    grace, _ = audit.stack_defaults(target.parameters)
    files = audit.audit(target.client("s3"), runs, target.output("DataBucketName"), None, days, now=now,
                        grace_seconds=grace)
    return {
        "target": target.description,
        "generated_at": now.isoformat(),
        "days": days,
        "complete": complete,  # every run of the window was read (no status had more than `runs_read`)
        "runs_read": runs_read,
        "runs": recent,
        "champions": queries.champions(table),
        "files": files,
        "files_summary": audit.summary(files, grace),
        "owed": [row for row in files if row["problem"]],
    }


def _accuracy(item: dict[str, Any]) -> Any:
    return ((item.get("metrics") or {}).get("accuracy") or {}).get("value")


def _code(command: str) -> str:
    return f"<code>{escape(command)}</code>"


def _what_next(statuses: set[str]) -> str:
    """What to do about the failed or rejected runs listed: a failed run's file is tuned again as it is, a rejected
    one is fixed and dropped again (retry refuses the same bytes, unless S3 could not read them)."""
    hints = []
    if RunStatus.FAILED in statuses:
        hints.append(f"{_code('reviewtune runs retry RUN --reason TEXT')} tunes a failed run's file again")
    if RunStatus.REJECTED in statuses:
        hints.append(f"a rejected file is fixed and dropped again ({_code('reviewtune drop FILE --dataset DATASET')}; "
                     f"one S3 could not read: {_code('reviewtune runs retry RUN --reason TEXT')} once S3 can read it)")
    return "; " + "; ".join(hints) + "." if hints else "."


def _reason(item: dict[str, Any]) -> str:
    # the end of a reason holds the error's last line and the exit code ("... exit code: -9 (killed ...)")
    return escape(bounded(str(item.get("failure_reason") or ""), REASON_CHARS, keep_end=True))


def _cards(data: dict[str, Any]) -> str:
    counts = Counter(str(item.get("status")) for item in data["runs"])
    running = sum(n for status, n in counts.items() if not states.is_final(status))
    cards = [
        page.card("runs", f"{len(data['runs']):,}", "runs"),
        page.card("succeeded", f"{counts.get(RunStatus.SUCCEEDED, 0):,}", "succeeded"),
        page.card("in progress", f"{running:,}", "in-progress"),
        page.card("failed", f"{counts.get(RunStatus.FAILED, 0):,}", "failed"),
        page.card("rejected files", f"{counts.get(RunStatus.REJECTED, 0):,}", "rejected"),
        page.card("stopped", f"{counts.get(RunStatus.STOPPED, 0):,}", "stopped"),
        page.card("duplicates", f"{counts.get(RunStatus.DUPLICATE, 0):,}", "duplicates"),
        page.card("files owed an outcome", f"{len(data['owed']):,}", "owed"),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _attention(data: dict[str, Any]) -> str:
    """Files owed an outcome (audit), then the runs that failed or were rejected, newest first, then the champions
    whose model package a person rejected."""
    parts = []
    if data["owed"]:
        rows = [[escape(page.one_line(row["key"])), escape(str(row.get("version_id") or "")),
                 escape(display.utc_time(row["written"], suffix=False)), escape(str(row["problem"])),
                 escape(str(row.get("run_id") or "-"))] for row in data["owed"]]
        parts.append("<h3>Files owed an outcome</h3>"
                     + page.table(["file", "version", "written (UTC)", "owed", "run"], rows, columns="nllll", stack=True)
                     + f"<p class='sub'>{_code('reviewtune audit')} says more; the reconciler's next pass settles what "
                     "it can.</p>")
    ended = [item for item in data["runs"] if item.get("status") in ATTENTION]
    failed = [item for item in ended if not isinstance(item.get("retried"), dict)]  # a retry is its own run
    if failed:
        rows = [[escape(item["run_id"]), escape(page.one_line(item.get("dataset", ""))), escape(str(item["status"])),
                 escape(display.utc_time(item.get("created_at"), suffix=False)), _reason(item)]
                for item in failed]
        parts.append("<h3>Runs that failed or were rejected</h3>"
                     + page.table(["run", "dataset", "status", "created (UTC)", "why"], rows, columns="lnllw", stack=True)
                     + f"<p class='sub'>{_code('reviewtune runs show RUN')} has the whole reason"
                     + _what_next({item["status"] for item in failed})
                     + (f" {len(ended) - len(failed):,} retried already are left out." if len(ended) > len(failed) else "")
                     + "</p>")
    rejected = [champion for champion in data["champions"] if champion.get("package_rejected")]
    if rejected:  # former_champions.py: a person rejected the champion's package; nothing of the dataset serves
        rows = [[escape(page.one_line(champion["dataset"])), escape(champion["run_id"]),
                 escape(display.utc_time(champion["package_rejected"].get("found_at"), suffix=False)),
                 escape(str(champion["package_rejected"].get("description")
                            or ("deleted" if package_state(champion["package_rejected"]) == "deleted" else "-")))]
                for champion in rejected]
        parts.append("<h3>Champions whose model package was rejected or deleted</h3>"
                     + page.table(["dataset", "champion", "found (UTC)", "description"], rows, columns="nllw",
                                  stack=True)
                     + "<p class='sub'>Rejected in the Model Registry, or deleted from it: not approved again. The "
                     "next run of the "
                     "dataset that succeeds (better than answering one class) takes its place, or "
                     f"{_code('reviewtune promote RUN_ID')} picks one "
                     "now.</p>")
    body = "".join(parts) or '<p data-key="nothing-to-do">Nothing: every file has its outcome, and no run failed.</p>'
    return f'<section data-key="attention"><h2>Needs attention</h2>{body}</section>'


def _package_note(champion: dict[str, Any]) -> str:
    state = package_state(champion.get("package_rejected"))
    return f"; its package {state}" if state else ""


def _datasets(data: dict[str, Any]) -> str:
    """One row per dataset with a run in the window or a champion: its champion, its latest run, its runs."""
    champions = {c["dataset"]: c for c in data["champions"]}
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for item in data["runs"]:  # newest first
        by_dataset.setdefault(str(item.get("dataset") or item["run_id"]), []).append(item)
    rows = []
    for name in sorted(set(by_dataset) | set(champions)):
        champion, items = champions.get(name), by_dataset.get(name, [])
        latest = items[0] if items else None
        counts = Counter(str(item.get("status")) for item in items)
        rows.append([
            escape(page.one_line(name)),
            (f"{escape(champion['run_id'])}<br><span class='sub'>{_percent(champion.get('accuracy'))} % test, since "
             f"{escape(display.utc_time(champion.get('changed_at')))}"
             + _package_note(champion) + "</span>") if champion else "-",
            (f"{escape(latest['run_id'])}<br><span class='sub'>{escape(views.status_text(latest))}"
             + (f", {_percent(_accuracy(latest))} % test" if latest.get("status") == RunStatus.SUCCEEDED else "")
             + "</span>") if latest else "-",
            ", ".join(f"{n} {escape(status.lower())}" for status, n in sorted(counts.items())) or "-",
        ])
    if not rows:
        return "<section><h2>Datasets</h2><p>No dataset has a run in this window or a champion.</p></section>"
    return ("<section><h2>Datasets</h2>"
            + page.table(["dataset", "champion", "latest run", f"runs ({data['days']:g} days)"], rows, columns="nlll",
                         stack=True)
            + f"<p class='sub'>{_code('reviewtune champion --dataset DATASET')}: a champion's history and "
            "decisions.</p></section>")


def _runs(data: dict[str, Any]) -> str:
    rows = []
    champions = {champion["dataset"]: champion["run_id"] for champion in data["champions"]}
    for item in data["runs"][:RUNS_SHOWN]:
        rows.append([
            escape(item["run_id"]),
            escape(page.one_line(item.get("dataset", ""))),
            _status(item),
            escape(display.utc_time(item.get("created_at"), suffix=False)),
            escape(views.took(item) or "-"),
            _percent(_accuracy(item)) if item.get("status") == RunStatus.SUCCEEDED else "-",
            _decision(item, champions.get(item.get("dataset"))),
        ])
    more = f" (the newest {len(rows):,} of {len(data['runs']):,})" if len(data["runs"]) > len(rows) else ""
    if not rows:
        return f"<section><h2>Runs, newest first{more}</h2><p>No run in this window.</p></section>"
    table = page.table(["run", "dataset", "status", "created (UTC)", "took", "test %", "champion"], rows,
                       columns="lnll--n", stack=True)
    return (f"<section><h2>Runs, newest first{more}</h2>{table}<p class='sub'>"
            f"{_code('reviewtune runs report RUN --open')}: a succeeded run's report; "
            f"{_code('reviewtune runs show RUN')}: any run's record, timeline and messages.</p></section>")


def _status(item: dict[str, Any]) -> str:
    """The run's status and, for a stopped run or a duplicate (not in the attention list), why: the reason it ended
    with, or the run whose file held the same reviews."""
    status = escape(views.status_text(item))
    if item.get("status") == RunStatus.DUPLICATE and item.get("duplicate_of"):
        return f"{status}<br><span class='sub'>of {escape(str(item['duplicate_of']))}</span>"
    if item.get("status") == RunStatus.STOPPED and item.get("failure_reason"):
        return f"{status}<br><span class='sub'>{_reason(item)}</span>"
    return status


def _decision(item: dict[str, Any], champion_now: str | None) -> str:
    """The run's champion decision and, under it, the sentence that says why (kept, not compared: on how many
    reviews, against which champion), as `champion --dataset` prints them."""
    decision = escape(views.item_decision(item, champion_now))
    champion = item.get("champion") if isinstance(item.get("champion"), dict) else {}
    why = champion.get("error") or champion.get("reason")
    if not why or why == champion.get("decision"):
        return decision
    return f"{decision}<br><span class='sub'>{escape(bounded(str(why), REASON_CHARS))}</span>"


def _percent(value: Any) -> str:
    return display.percent(value, suffix=False, missing="-")


def render(data: dict[str, Any]) -> str:
    """The page as one string."""
    files = escape(data["files_summary"])
    partial = "" if data["complete"] else (
        f'<p class="note" data-key="partial">More runs were made in these days than the {data["runs_read"]:,} per status '
        "read: the counts, the attention list and the tables hold the newest of each status; "
        f"{_code('reviewtune runs list --status STATUS')} lists more.</p>")
    body = (
        f"<main><h1>reviewtune overview</h1><p class='sub'>{escape(data['target'])} · the last "
        f"{data['days']:g} day{'' if data['days'] == 1 else 's'} · made {escape(display.utc_time(data['generated_at']))}"
        f"</p><section><h2>Summary</h2>{_cards(data)}<p class='sub'>Files under incoming/: {files}</p>{partial}"
        "</section>"
        + _attention(data) + _datasets(data) + _runs(data) + "</main>"
    )
    return page.document("reviewtune overview", body)

