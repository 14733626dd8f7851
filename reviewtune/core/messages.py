"""The text of the SNS messages people receive. Plain text, readable in an e-mail client."""

from __future__ import annotations

from typing import Any

from reviewtune.core.dataset import LABEL_NAMES


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def _source(item: dict[str, Any]) -> str:
    source = item.get("source", {})
    uri = f"s3://{source.get('bucket', '?')}/{source.get('key', '?')}"
    version = source.get("version_id")
    return f"{uri} (version {version})" if version else uri


def _rows(item: dict[str, Any]) -> str:
    rows = item.get("data", {}).get("summary", {}).get("rows", {})
    return (
        " / ".join(f"{name} {rows[name]:,}" for name in ("train", "validation", "test") if name in rows)
        or "n/a"
    )


def _lookup_hint(item: dict[str, Any], table: str) -> str:
    return (
        "Full record: aws dynamodb get-item --table-name "
        f'{table} --key \'{{"run_id": {{"S": "{item["run_id"]}"}}}}\''
    )


def _hyperparameters(best: dict[str, Any]) -> list[str]:
    tuned = best.get("tuned_hyperparameters", {})
    width = max((len(k) for k in tuned), default=0)
    return [f"  {name:<{width}}  {value}" for name, value in sorted(tuned.items())]


def rejected(item: dict[str, Any], reason: str, rejected_uri: str, table: str) -> tuple[str, str]:
    subject = f"reviewtune: file rejected: {item.get('dataset', '')}"
    body = "\n".join(
        [
            f"The review file {_source(item)} was not used.",
            "",
            f"Why: {reason}",
            "",
            f"A copy of the file and the reason are kept at {rejected_uri}.",
            "Fix the file and drop it into incoming/ again.",
            "",
            _lookup_hint(item, table),
        ]
    )
    return subject, body


def run_failed(item: dict[str, Any], stage: str, status: str, reason: str, table: str) -> tuple[str, str]:
    subject = f"reviewtune: run {item['run_id']} {status.lower()} during {stage}"
    trials = item.get("tuning", {}).get("trials", [])
    lines = [
        f"Run {item['run_id']} on {_source(item)} ended {status} during {stage}.",
        "",
        f"Reason: {reason}",
    ]
    if trials:
        lines += ["", "Trials:"]
        lines += [
            f"  {t['name']}: {t['status']}" + (f" - {t['failure_reason']}" if t.get("failure_reason") else "")
            for t in trials
        ]
    lines += ["", _lookup_hint(item, table)]
    return subject, "\n".join(lines)


def succeeded(item: dict[str, Any], evaluation: dict[str, Any], table: str) -> tuple[str, str]:
    metrics = evaluation["metrics"]
    accuracy = metrics["accuracy"]["value"]
    best = item.get("tuning", {}).get("best_training_job", {})
    tuning = item.get("tuning", {})
    counters = tuning.get("status_counters", {})
    subject = f"reviewtune: {item.get('dataset', item['run_id'])}: test accuracy {_pct(accuracy)}"
    lines = [
        f"Run {item['run_id']} succeeded.",
        "",
        f"Dataset:             {_source(item)}",
        f"Rows:                {_rows(item)}",
        f"Tuning:              {item.get('config', {}).get('strategy', '?')} search, "
        f"{counters.get('Completed', 0)} of {len(tuning.get('trials', []))} trials completed",
        f"Best training job:   {best.get('name', '?')}",
        f"Validation accuracy: {best.get('objective', 'n/a')} % (best trial)",
        f"Test accuracy:       {_pct(accuracy)}",
    ]
    if "macro_f1" in metrics:
        lines.append(f"Macro F1:            {metrics['macro_f1']['value']:.4f}")
    lines += ["", "Best hyperparameters:", *_hyperparameters(best), ""]
    per_class = metrics.get("per_class", {})
    if per_class:
        lines.append(f"  {'class':<14}{'precision':>10}{'recall':>9}{'f1':>8}{'support':>9}")
        for label in ("-1", "0", "1"):
            if label in per_class:
                c = per_class[label]
                name = f"{LABEL_NAMES[int(label)]} ({label})"
                lines.append(
                    f"  {name:<14}{c['precision']:>10.3f}{c['recall']:>9.3f}{c['f1']:>8.3f}{int(c['support']):>9}"
                )
        lines.append("")
    results = item.get("results", {})
    if results.get("confusion_matrix_uri"):
        lines.append(f"Confusion matrix:    {results['confusion_matrix_uri']}")
    if results.get("evaluation_uri"):
        lines.append(f"Evaluation report:   {results['evaluation_uri']}")
    lines += [f"HTML report:         {results['report_uri']}"] if results.get("report_uri") else []
    lines += ["", _lookup_hint(item, table)]
    return subject, "\n".join(lines)
