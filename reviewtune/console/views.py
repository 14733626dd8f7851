"""Rich tables of runs, one run and its trials (the ``--json`` forms print the data itself)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from reviewtune.core.dataset import LABEL_NAMES


def show_value(value: Any) -> str:
    """A hyperparameter value as people read it: 8.403604888695193e-05 -> 8.4e-05."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.3g}"
    try:
        number = float(str(value).strip('"'))
    except ValueError:
        return str(value)
    text = str(value).strip('"')
    return text if number.is_integer() and "e" not in text.lower() else f"{number:.3g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _time(value: Any) -> str:
    text = str(value or "-")
    return text.replace("T", " ")[:19]


def runs_table(items: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("run", "created", "status", "dataset", "rows train/val/test", "best val %", "test acc %"):
        table.add_column(column, justify="right" if "%" in column else "left", no_wrap=column in ("run", "created"))
    for item in items:
        rows = item.get("data", {}).get("summary", {}).get("rows", {})
        best = item.get("tuning", {}).get("best_training_job", {})
        accuracy = item.get("metrics", {}).get("accuracy", {}).get("value")
        table.add_row(
            item["run_id"],
            _time(item.get("created_at")),
            item.get("status", "?"),
            item.get("dataset", ""),
            "/".join(f"{rows[s]:,}" for s in ("train", "validation", "test") if s in rows) or "-",
            f"{best['objective']:.2f}" if best.get("objective") is not None else "-",
            _pct(accuracy),
        )
    return table


def run_view(item: dict[str, Any]) -> Group:
    parts: list[Any] = []
    source = item.get("source", {})
    tuning = item.get("tuning", {})
    best = tuning.get("best_training_job", {})
    metrics = item.get("metrics", {})
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    rows = item.get("data", {}).get("summary", {}).get("rows", {})
    accuracy = metrics.get("accuracy", {})
    ci = accuracy.get("ci95")
    config = item.get("config", {})
    for label, value in (
        ("run", item["run_id"]),
        ("status", item.get("status", "?")),
        ("dataset", item.get("dataset", "")),
        ("source", f"s3://{source.get('bucket', '?')}/{source.get('key', '?')}" + (f" (version {source['version_id']})" if source.get("version_id") else "")),
        ("rows", " / ".join(f"{s} {rows[s]:,}" for s in ("train", "validation", "test") if s in rows) or "-"),
        ("search", f"{config.get('strategy', '?')}, {config.get('max_jobs', '?')} trials, {config.get('max_parallel_jobs', '?')} at a time, {config.get('epochs', '?')} epochs, model {config.get('model_name', '?')}"),
        ("best trial", best.get("name", "-")),
        ("best hyperparameters", ", ".join(f"{k}={show_value(v)}" for k, v in sorted(best.get("tuned_hyperparameters", {}).items())) or "-"),
        ("validation accuracy", f"{best['objective']:.2f} %" if best.get("objective") is not None else "-"),
        ("test accuracy", f"{_pct(accuracy.get('value'))} %" + (f"  (95 % CI {_pct(ci[0])}-{_pct(ci[1])})" if ci else "") if accuracy else "-"),
        ("macro F1", f"{metrics['macro_f1']['value']:.4f}" if "macro_f1" in metrics else "-"),
        ("billable seconds", str(tuning.get("total_billable_seconds", "-"))),
        ("champion", (item.get("champion") or {}).get("reason") or (item.get("champion") or {}).get("error") or "-"),
    ):
        facts.add_row(label, str(value))
    if item.get("failure_reason"):
        facts.add_row("[red]failure reason[/]", str(item["failure_reason"]))
    parts.append(facts)
    timeline = Table(title="Timeline")
    timeline.add_column("when")
    timeline.add_column("what")
    events = [
        (item.get("created_at"), "file accepted, run created" if item.get("status") != "REJECTED" else "file rejected"),
        (tuning.get("started_at"), "tuning job created"),
        (tuning.get("ended_at"), f"tuning job {tuning.get('status', 'ended')}"),
        (item.get("updated_at"), f"last update: {item.get('status')}"),
    ]
    for when, what in sorted((e for e in events if e[0]), key=lambda e: str(e[0])):
        timeline.add_row(_time(when), what)
    parts.append(timeline)
    per_class = metrics.get("per_class", {})
    if per_class:
        table = Table(title="Per class (test split)")
        for column in ("class", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for label, values in sorted(per_class.items(), key=lambda kv: int(kv[0])):
            table.add_row(f"{LABEL_NAMES.get(int(label), label)} ({label})", f"{values['precision']:.3f}", f"{values['recall']:.3f}", f"{values['f1']:.3f}", str(values["support"]))
        parts.append(table)
    artifacts = Table(title="Artifacts")
    artifacts.add_column("what")
    artifacts.add_column("where")
    for label, value in (
        *(("data " + s, item.get("data", {}).get(s)) for s in ("train", "validation", "test")),
        ("best model", best.get("model_uri")),
        *((k.replace("_uri", ""), v) for k, v in item.get("results", {}).items() if k.endswith("_uri")),
        ("rejected copy", item.get("rejected_uri")),
        ("rejection reason", item.get("reason_uri")),
    ):
        if value:
            artifacts.add_row(label, str(value))
    parts.append(artifacts)
    return Group(*parts)


def trials_table(rows: list[dict[str, Any]], title: str) -> Table:
    fixed = {"TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue", "TrainingStartTime", "TrainingEndTime",
             "TrainingElapsedTimeSeconds", "TrainingJobDefinitionName", "Epochs", "EarlyStopped"}
    params = sorted({k for row in rows for k in row if k not in fixed})
    table = Table(title=title)
    for column in (*params, "TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue", "TrainingStartTime", "TrainingEndTime", "TrainingElapsedTimeSeconds", "Epochs", "EarlyStopped"):
        table.add_column(column, justify="right" if column in params or column in ("FinalObjectiveValue", "TrainingElapsedTimeSeconds", "Epochs") else "left")
    for row in sorted(rows, key=lambda r: r["TrainingJobName"]):
        objective = row.get("FinalObjectiveValue")
        table.add_row(
            *(show_value(row.get(p, "")) for p in params),
            row["TrainingJobName"],
            row["TrainingJobStatus"],
            "-" if objective is None else f"{objective:.2f}",
            _time(row.get("TrainingStartTime") and row["TrainingStartTime"].isoformat()),
            _time(row.get("TrainingEndTime") and row["TrainingEndTime"].isoformat()),
            "-" if row.get("TrainingElapsedTimeSeconds") is None else f"{row['TrainingElapsedTimeSeconds']:.0f}",
            "-" if row.get("Epochs") is None else str(row["Epochs"]),
            "yes" if row.get("EarlyStopped") else "no",
        )
    return table


def champions_table(champions: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("dataset", "champion run", "test acc %", "test reviews", "since", "changes", "model package"):
        table.add_column(column, justify="right" if column in ("test acc %", "test reviews", "changes") else "left")
    for champion in champions:
        table.add_row(
            champion["dataset"],
            champion["run_id"],
            _pct(champion.get("accuracy")),
            f"{champion.get('test_rows', 0):,}",
            _time(champion.get("changed_at")),
            str(champion.get("version", "-")),
            champion.get("model_package_arn") or "-",
        )
    return table


def champion_view(champion: dict[str, Any]) -> Group:
    """One dataset's champion, every change of champion and the recent runs' decisions."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, value in (
        ("dataset", champion["dataset"]),
        ("champion", champion["run_id"]),
        ("test accuracy", f"{_pct(champion.get('accuracy'))} % on {champion.get('test_rows', 0):,} test reviews"),
        ("since", _time(champion.get("changed_at"))),
        ("model package", champion.get("model_package_arn") or "-"),
    ):
        facts.add_row(label, str(value))
    history = Table(title="Champions, oldest first")
    for column in ("since", "run", "test acc %", "why", "by"):
        history.add_column(column, justify="right" if "%" in column else "left")
    for change in champion.get("history", []):
        history.add_row(
            _time(change.get("at")), change.get("run_id", "?"), _pct(change.get("accuracy")),
            change.get("why", ""), change.get("by") or "reviewtune",
        )
    decisions = Table(title="Decisions of the newest runs")
    for column in ("run", "created", "status", "test acc %", "decision", "why"):
        decisions.add_column(column, justify="right" if "%" in column else "left")
    for decision in champion.get("decisions", []):
        decisions.add_row(
            decision["run_id"], _time(decision.get("created_at")), decision.get("status", "?"),
            _pct(decision.get("test_accuracy")), decision.get("decision", "-"),
            decision.get("reason") or decision.get("error") or "",
        )
    return Group(facts, history, decisions)
