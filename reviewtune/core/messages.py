"""The text of the SNS messages people receive. Plain text, readable in an e-mail client.

Every value comes from a run record or an evaluation that may be incomplete or odd (None, strings where numbers were
expected, NaN, huge or non-ASCII strings): nothing here raises, and long values are cut (notify.publish then fits the
whole message to SNS's limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reviewtune.core import display, page, trial_records
from reviewtune.core.dataset import LABEL_NAMES
from reviewtune.core.guessing import most_common_class
from reviewtune.core.names import S3_KEY_MAX_BYTES
from reviewtune.core.reasons import REASON_MAX_CHARS, bounded
from reviewtune.core.trial_facts import time_limited_share

VALUE_MAX_CHARS = 300
MAX_TRIALS_LISTED = 50


def _get(value: Any, *path: str) -> Any:
    """value[path[0]][path[1]]..., or None where anything is missing or not a mapping."""
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any, limit: int = VALUE_MAX_CHARS, default: str = "?", *, keep_end: bool = False) -> str:
    if value is None:
        return default
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001  (a value whose str() fails is still reported)
        text = f"<{type(value).__name__}>"
    return bounded(text, limit, keep_end=keep_end)


def _fixed(value: Any, width: int) -> str:
    return f"{display.score(value):>{width}}"


def _interval(accuracy: Any) -> str:
    """`` (95 % CI low-high %)`` from evaluation.json's ``accuracy.ci95``; nothing when it is absent or odd."""
    text = display.interval(_get(accuracy, "ci95"))
    return f" ({text})" if text else ""


def _no_better_than_guessing(metrics: Any) -> list[str]:
    """A warning when the test accuracy is no better than always answering the test split's most common class (a
    third for balanced classes): such a model has learnt nothing to use, and never becomes champion on its own
    (``guessing``). Nothing unless every class's support is known."""
    accuracy = display.number(_get(metrics, "accuracy", "value"))
    most_common = most_common_class(metrics)
    if accuracy is None or most_common is None or most_common.beaten_by(accuracy):
        return []
    return [f"Warning:             {most_common.text()}: this model has learnt nothing usable"]


_one_line = page.one_line  # a name on one line: a line break or a tab an S3 key may hold as its escape


def _source(item: Any) -> str:
    # the whole key, whatever its length (S3: 1,024 bytes at most): cut, it would not say which file
    key = _one_line(_text(_get(item, "source", "key"), S3_KEY_MAX_BYTES))
    uri = f"s3://{_text(_get(item, 'source', 'bucket'))}/{key}"
    version = _get(item, "source", "version_id")
    return f"{uri} (version {_text(version)})" if version else uri


def _rows(item: Any) -> str:
    rows = _get(item, "data", "summary", "rows")
    if not isinstance(rows, Mapping):
        return "n/a"
    return " / ".join(f"{name} {display.count(rows[name])}" for name in ("train", "validation", "test") if name in rows) or "n/a"


def _cleaning(item: Any) -> list[str]:
    summary = _get(item, "data", "summary")
    text = display.cleaning(dict(summary)) if isinstance(summary, Mapping) else ""
    return [f"Data cleaning:       {text}"] if text else []


def _run_id(item: Any) -> str:
    return _text(_get(item, "run_id"), 100)


def _provenance(item: Any) -> list[str]:
    """How the run came to be, when not by its file's own event: a retry, or the reconciler's listing of incoming/."""
    lines = []
    retried = _get(item, "retry_of")
    if retried:
        lines.append(f"This run tunes the file of run {_text(retried, 100)} again (`reviewtune runs retry`).")
    found = _get(item, "found_by_sweep")
    if found:
        lines.append(f"The file's Object Created event never came: reviewtune found it in incoming/ at "
                     f"{display.utc_time(found)} and started its run (the MissedDrops alarm; see README, Alarms).")
    return [*lines, ""] if lines else []


def _lookup_hint(item: Any, table: Any) -> str:
    """Where to read the whole run: reviewtune's CLI, or the runs table's item with the AWS CLI alone."""
    return (
        f"The run: `reviewtune runs show {_run_id(item)}`. Its record: aws dynamodb get-item --table-name "
        f'{_text(table, 255)} --key \'{{"run_id": {{"S": "{_run_id(item)}"}}}}\''
    )


def _hyperparameters(best: Any) -> list[str]:
    tuned = _get(best, "tuned_hyperparameters")
    if not isinstance(tuned, Mapping):
        return []
    names = sorted((_text(k, 60), _text(display.hyperparameter(v))) for k, v in tuned.items())
    width = max((len(k) for k, _ in names), default=0)
    return [f"  {name:<{width}}  {value}" for name, value in names]


def _time_limit(item: Any) -> list[str]:
    """A line when the best trial's time limit (train.py's max_train_seconds) ended its training before its plan."""
    best = _get(item, "tuning", "best_training_job", "name")
    trials = _get(item, "tuning", "trials")
    if best is None or not isinstance(trials, list):
        return []
    for trial in trials:
        share = time_limited_share(display.number(_get(trial, "planned_steps_pct")))
        if _get(trial, "name") == best and share is not None:
            return [f"Time limit:          the best trial trained {display.share_done(share)} of its planned steps (a slower machine "
                    "than the plan assumed)"]
    return []


def _warm_start(item: Any) -> list[str]:
    plan = _get(item, "config", "warm_start")
    if not isinstance(plan, Mapping):
        return []
    parents = plan.get("parents")
    if isinstance(parents, list) and parents:
        names = ", ".join(_text(p, 100) for p in parents[:5])
        return [f"Warm start:          {_text(plan.get('type'), 40)} from {names}"]
    refused = plan.get("refused")
    if refused:
        return [f"Warm start:          refused by SageMaker, tuned from scratch: {_text(refused)}"]
    return [f"Warm start:          none ({_text(plan.get('reason'), 100, 'no parent')})"]


def _cost(item: Any) -> list[str]:
    """The estimated cost of the trials (``tuning.cost``) and of the evaluation job (``results.evaluation_cost``),
    each trial's billable seconds, and the spot saving."""
    cost = _get(item, "tuning", "cost")
    if not isinstance(cost, Mapping):
        return []
    currency = cost.get("currency")
    trials = cost.get("trials") if isinstance(cost.get("trials"), list) else []
    unpriced = cost.get("unpriced")
    evaluation = _get(item, "results", "evaluation_cost")
    evaluation = evaluation if isinstance(evaluation, Mapping) else None
    lines = [
        f"Estimated cost:      {display.money(display.cost_total(cost, evaluation), currency)} for "
        f"{display.count(cost.get('billable_seconds'))} billable seconds on {display.count(cost.get('instance_count'))} x "
        f"{_text(cost.get('training_instance_type'), 40)}" + (" and the evaluation job" if evaluation else "")
        + (f" (no price for {_text(', '.join(map(str, unpriced)), 100)})" if isinstance(unpriced, list) and unpriced else ""),
    ]
    if evaluation:
        lines.append(f"                     evaluation job: {display.count(evaluation.get('seconds'))} s on "
                     f"{display.count(evaluation.get('instance_count'))} x {_text(evaluation.get('instance_type'), 40)}, "
                     + (display.money(evaluation.get("cost"), currency) if display.number(evaluation.get("cost")) is not None
                        else f"no price for {_text(evaluation.get('instance_type'), 40)}"))
    if display.number(cost.get("spot_savings")):
        lines.append(f"                     managed spot training saved {display.money(cost.get('spot_savings'), currency)}")
    lines.append(f"                     on-demand prices {_text(cost.get('region'), 20)} of "
                 f"{_text(cost.get('prices_as_of'), 20)}, an estimate")
    listed = trials[:MAX_TRIALS_LISTED]
    for trial in listed:
        lines.append(
            f"  {_text(_get(trial, 'name'), 100)}: {display.count(_get(trial, 'billable_seconds'))} billable seconds, "
            f"{display.money(_get(trial, 'cost'), currency)}"
        )
    return lines + _more(item, len(listed), len(trials))


def _more(item: Any, listed: int, kept: int) -> list[str]:
    """``... and N more`` after a list of ``listed`` trials of the ``kept`` the item holds, counting those only S3
    holds (``trial_records``), and where they are."""
    more = max(trial_records.total(_get(item, "tuning")), kept) - listed
    if more <= 0:
        return []
    uri = _get(item, "tuning", "trials_uri")
    return [f"  ... and {more:,} more" + (f" (every trial: {_text(uri, 2000)})" if uri else "")]


def _lifecycle(item: Any) -> list[str]:
    """The Model Registry and champion lines of a succeeded run."""
    lines = []
    registry = _get(item, "registry")
    champion = _get(item, "champion")
    if isinstance(registry, Mapping):
        arn, error = registry.get("model_package_arn"), registry.get("error")
        if arn:
            lines.append(f"Model registry:      {_text(arn, 300)} ({_text(registry.get('approval'), 40)})")
        if error:
            lines.append(f"Model registry:      {'registration failed: ' if not arn else ''}{_text(error)}")
        is_champion = isinstance(champion, Mapping) and champion.get("champion_run_id") == _get(item, "run_id")
        if arn and error and is_champion:  # champion, but its package is not Approved: nothing retries it
            lines.append(f"                     approve it: reviewtune promote {_run_id(item)} --reason \"approval failed\"")
    if isinstance(champion, Mapping):
        decision, reason = champion.get("decision"), champion.get("reason")
        if champion.get("error"):
            lines.append(f"Champion:            {_text(decision, 60)}: {_text(champion.get('error'))}")
        elif reason:
            lines.append(f"Champion:            {_text(reason, REASON_MAX_CHARS)}")
        comparison = champion.get("comparison")
        if isinstance(comparison, Mapping) and display.number(comparison.get("rows_compared")) is not None:
            left_out = display.number(comparison.get("rows_left_out")) or 0
            overlap = (
                f"{display.count(left_out)} left out: the champion was trained on them"
                if comparison.get("overlap_checked")
                else "none left out: the champion's training reviews are unknown"
            )
            lines.append(
                f"Compared with:       {_text(comparison.get('champion_run_id'), 100)} on "
                f"{display.count(comparison.get('rows_compared'))} test reviews of this run ({overlap})"
            )
    return lines


def rejected(
    item: dict[str, Any],
    reason: Any,
    rejected_uri: Any,
    table: Any,
    *,
    reason_uri: Any = None,
    not_copied: Any = None,
    rejected_version: Any = None,
    reason_version: Any = None,
) -> tuple[str, str]:
    """The rejection: why, and where the copy and the reason are kept, with their S3 versions (a later rejected
    upload of the same key takes both keys over), or why no copy was made."""
    subject = f"reviewtune: file rejected: {_one_line(_text(_get(item, 'dataset'), 200, ''))}"

    def versioned(uri: Any, version: Any) -> str:
        return _one_line(_text(uri, 2000)) + (f" (version {_text(version, 1024)})" if version else "")

    reason_kept = f"the reason at {versioned(reason_uri, reason_version)}" if reason_uri else ""
    if rejected_uri:
        kept = [
            f"A copy of the file is kept at {versioned(rejected_uri, rejected_version)}"
            + (f", {reason_kept}." if reason_kept else "."),
            "Fix the file and drop it into incoming/ again.",
        ]
    else:
        kept = [f"No copy was kept: {_text(not_copied, 2000, 'the file was not copied')}."]
        if reason_kept:
            kept.append(f"The reason is kept at {versioned(reason_uri, reason_version)}.")
    if _get(item, "unreadable"):
        kept.append("Once S3 can read it (its KMS key enabled again, the object restored from its archive class): "
                    f"`reviewtune runs retry {_run_id(item)} --reason TEXT`.")
    body = "\n".join(
        [
            f"The review file {_source(item)} was not used.",
            "",
            f"Why: {_text(reason, REASON_MAX_CHARS)}",
            "",
            *kept,
            "",
            *_provenance(item),
            _lookup_hint(item, table),
        ]
    )
    return subject, body


QUEUE_STAGE = "queue"  # the stage of a run that ended while it waited for a slot
EVALUATION_STAGE = "evaluation"


def _during(stage: Any) -> str:
    return "while queued" if stage == QUEUE_STAGE else f"during {_text(stage, 40)}"


def run_failed(item: dict[str, Any], stage: Any, status: Any, reason: Any, table: Any) -> tuple[str, str]:
    status_text = _text(status, 40).lower()
    subject = f"reviewtune: run {_run_id(item)} {status_text} {_during(stage)}"
    trials = _get(item, "tuning", "trials")
    lines = [
        f"Run {_run_id(item)} on {_source(item)} ended {_text(status, 40)} {_during(stage)}.",
        "",
        f"Reason: {_text(reason, REASON_MAX_CHARS)}",
    ]
    if isinstance(trials, list) and trials:
        lines += ["", "Trials:"]
        listed = trials[:MAX_TRIALS_LISTED]
        for trial in listed:
            failure = _get(trial, "failure_reason")
            lines.append(
                f"  {_text(_get(trial, 'name'), 100)}: {_text(_get(trial, 'status'), 40)}"
                + (f" - {_text(failure, keep_end=True)}" if failure else "")
            )
        lines += _more(item, len(listed), len(trials))
    extra = [*_warm_start(item), *_cost(item)]
    if extra:
        lines += ["", *extra]
    if (isinstance(trials, list) and trials) or stage == EVALUATION_STAGE:  # it ran jobs, whose output says more
        lines += ["", f"Its jobs' output (each trial, the evaluation): `reviewtune runs logs {_run_id(item)}`."]
    lines += [
        "",
        ("To tune its file again" if status_text == "stopped" else "To tune its file again once the cause is fixed")
        + f": `reviewtune runs retry {_run_id(item)} --reason TEXT`.",
        "",
        *_provenance(item),
        _lookup_hint(item, table),
    ]
    return subject, "\n".join(lines)


def succeeded(item: dict[str, Any], evaluation: dict[str, Any], table: Any) -> tuple[str, str]:
    metrics = _get(evaluation, "metrics")
    accuracy = _get(metrics, "accuracy", "value")
    best = _get(item, "tuning", "best_training_job")
    dataset = _get(item, "dataset")
    subject = (f"reviewtune: {_one_line(_text(dataset if dataset else _get(item, 'run_id'), 200))}: test accuracy "
               f"{display.percent(accuracy)}")
    objective = _get(best, "objective")
    lines = [
        f"Run {_run_id(item)} succeeded.",
        "",
        f"Dataset:             {_source(item)}",
        f"Rows:                {_rows(item)}",
        *_cleaning(item),
        f"Tuning:              {_text(_get(item, 'config', 'strategy'), 40)} search, "
        f"{display.count(_get(item, 'tuning', 'status_counters', 'Completed') or 0)} of "
        f"{trial_records.total(_get(item, 'tuning')):,} trials completed",
        f"Best training job:   {_text(_get(best, 'name'), 100)}",
        *_time_limit(item),
        f"Validation accuracy: {display.percent(objective, scale=1)} (best trial)",
        f"Test accuracy:       {display.percent(accuracy)}{_interval(_get(metrics, 'accuracy'))}",
        *_no_better_than_guessing(metrics),
        *_warm_start(item),
        *_lifecycle(item),
    ]
    macro_f1 = _get(metrics, "macro_f1", "value")
    if macro_f1 is not None:
        lines.append(f"Macro F1:            {display.score(macro_f1)}")
    lines += ["", "Best hyperparameters:", *_hyperparameters(best), ""]
    per_class = _get(metrics, "per_class")
    if isinstance(per_class, Mapping) and per_class:
        lines.append(f"  {'class':<14}{'precision':>10}{'recall':>9}{'f1':>8}{'support':>9}")
        for label in ("-1", "0", "1"):
            c = per_class.get(label)
            if c is None:
                continue
            name = f"{LABEL_NAMES[int(label)]} ({label})"
            lines.append(
                f"  {name:<14}{_fixed(_get(c, 'precision'), 10)}{_fixed(_get(c, 'recall'), 9)}"
                f"{_fixed(_get(c, 'f1'), 8)}{display.count(_get(c, 'support')):>9}"
            )
        lines.append("")
    matrix = _get(item, "results", "confusion_matrix_uri")
    if matrix:
        lines.append(f"Confusion matrix:    {_text(matrix, 2000)}")
    lines += _report_lines(item, "Evaluation report:", "HTML report:")
    cost = _cost(item)
    if cost:
        lines += ["", *cost]
    lines += ["", *_provenance(item), _lookup_hint(item, table)]
    return subject, "\n".join(lines)


def queued(item: dict[str, Any], running: int, limit: int, table: str, ahead: int = 0) -> tuple[str, str]:
    """``running``: the runs holding a slot; ``ahead``: the runs queued before this one."""
    subject = f"reviewtune: run {item['run_id']} queued: {_one_line(item.get('dataset', ''))}"
    body = "\n".join(
        [
            f"The review file {_source(item)} is valid; its run {item['run_id']} is queued.",
            "",
            f"Rows: {_rows(item)}",
            f"{running} of at most {limit} runs hold a slot now (starting, tuning or evaluating: MaxConcurrentRuns)"
            + (f", and {ahead} {'run is' if ahead == 1 else 'runs are'} queued before this one" if ahead else "")
            + ";",
            f"this run starts when a slot is free{' after them' if ahead else ''}. You will get one more message with"
            " its result.",
            "",
            _lookup_hint(item, table),
        ]
    )
    return subject, body


def _report_lines(item: dict[str, Any], evaluation_label: str, html_label: str) -> list[str]:
    """Where a run's evaluation.json and its HTML report are, each on its line when recorded."""
    found = [(evaluation_label, _get(item, "results", "evaluation_uri")), (html_label, _get(item, "results", "report_uri"))]
    return [f"{label:<21}{_text(uri, 2000)}" for label, uri in found if uri]


def duplicate(item: dict[str, Any], original: Any, table: Any) -> tuple[str, str]:
    """The file's content is that of ``original``, a run of the same dataset in progress or succeeded."""
    dataset = _get(item, "dataset")
    status = _text(_get(original, "status"), 40)
    subject = (
        f"reviewtune: {_one_line(_text(dataset if dataset else _get(item, 'run_id'), 200))}: "
        f"same content as run {_run_id(original)}"
    )
    lines = [
        f"The review file {_source(item)} starts no run: its content is the same as that of run "
        f"{_run_id(original)} of this dataset, which is {status}.",
        "",
        f"Content sha256:      {_text(_get(item, 'data', 'summary', 'content_sha256'), 64)}",
        f"Earlier run:         {_run_id(original)} ({status})",
        f"Its file:            {_source(original)}",
    ]
    if status == "SUCCEEDED":
        accuracy = _get(original, "results", "test_accuracy")
        if accuracy is None:
            accuracy = _get(original, "metrics", "accuracy", "value")
        lines.append(f"Its test accuracy:   {display.percent(accuracy)}")
        lines += _report_lines(original, "Its evaluation:", "Its HTML report:")
    else:
        lines += [
            "Its result comes in its own message when it ends; should it fail or be stopped, tune this file again "
            f"with `reviewtune runs retry {_run_id(item)} --reason TEXT` (or drop it again).",
        ]
    lines += [
        "",
        "The stack's SkipDuplicateContent parameter set to false tunes every version, repeated content included.",
        "",
        *_provenance(item),
        _lookup_hint(original, table),
    ]
    return subject, "\n".join(lines)
