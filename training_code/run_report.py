"""One run's report: a self-contained HTML page (inline CSS, images as base64 PNG, no script, no external request).

``render(evaluation, run, training_summary, examples, plotting)`` takes evaluation.json's content, ``run.json``
(the run item's source, config, data summary, trials and this dataset's earlier runs, as start_evaluation writes
it), the best model's ``training_summary.json`` and a few misclassified test reviews. Every number that a test or a
person may check carries a ``data-key`` attribute. Plots come from ``report_plots`` when ``plotting`` is true.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

import display
import page
import report_decision
import report_plots

CLASS_NAMES = report_plots.CLASS_NAMES






def _pct(value: Any) -> str:
    """An accuracy in a cell headed %: 0.675213 -> 67.52."""
    return display.percent(value, suffix=False)


# What 0 means for train.py's settings where it is not a number of things but "none" or "all" (their --help)
ZERO_MEANS = {
    "train_steps_per_epoch": "the whole training set",
    "validation_steps_per_epoch": "the whole validation set",
    "keep_layers": "all",
    "frozen_cache_mb": "off",
    "max_train_seconds": "no limit",
}


def _num(value: Any) -> str:
    return escape(display.hyperparameter(value))


def _setting(name: str, value: Any) -> str:
    """A hyperparameter's value, with what it means where 0 means "none" or "all"."""
    text = _num(value)
    return f"{text} ({escape(ZERO_MEANS[name])})" if name in ZERO_MEANS and display.number(value) == 0 else text


def _duration(start: Any, end: Any) -> str:
    begun, ended = display.moment(start), display.moment(end)
    if not begun or not ended:
        return display.MISSING
    return display.duration(max(0.0, (ended - begun).total_seconds()))


def _image(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<div class="plot"><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></div>'


def _plot(plotting: bool, alt: str, draw: Callable[[], bytes | None]) -> str:
    if not plotting:
        return ""
    try:
        return _image(draw(), alt)
    except Exception as error:  # a plot must never cost the report
        print(f"warning: plot {alt!r} failed: {error!r}", flush=True)
        return f'<p class="note">The plot “{escape(alt)}” could not be drawn ({escape(type(error).__name__)}).</p>'


def _summary(run: dict[str, Any], metrics: dict[str, Any], test_rows: int) -> str:
    source = run.get("source", {})
    config = run.get("config", {})
    tuning = run.get("tuning", {})
    data = run.get("data", {}).get("summary", {})
    rows = data.get("rows", {})
    accuracy = metrics["accuracy"]
    low, high = accuracy.get("ci95", [None, None])
    best = tuning.get("best_training_job", {})
    cards = "".join(
        [
            page.card("test accuracy %", _pct(accuracy["value"]), "test-accuracy"),
            page.card("95 % CI (Wilson) %", f'<span data-key="ci-low">{_pct(low)}</span>-'
                  f'<span data-key="ci-high">{_pct(high)}</span>' if display.interval([low, high]) else display.MISSING),
            page.card("macro F1", display.score(metrics.get("macro_f1", {}).get("value")), "macro-f1"),
            page.card("best validation accuracy %", display.percent(best.get("objective"), scale=1, suffix=False),
                  "best-objective"),
            page.card("test reviews", f"{test_rows:,}", "test-rows"),
        ]
    )
    version = source.get("version_id")
    facts = {
        "dataset": escape(page.one_line(run.get("dataset", "n/a"))),
        "source object": escape(page.versioned(f"s3://{source.get('bucket', '?')}/{source.get('key', '?')}", version)),
        "rows per split": " / ".join(
            f'{escape(name)} <span data-key="rows-{escape(name)}">{rows[name]:,}</span>'
            for name in ("train", "validation", "test")
            if name in rows
        )
        or "n/a",
        "strategy": escape(f"{config.get('strategy', 'n/a')} search, early stopping {config.get('early_stopping', 'n/a')}"),
        "budget": escape(
            f"{config.get('max_jobs', '?')} trials, {config.get('max_parallel_jobs', '?')} at a time, "
            f"{config.get('epochs', '?')} epoch{'' if display.number(config.get('epochs')) == 1 else 's'}, "
            f"model {config.get('model_name', '?')}, "
            f"length {config.get('max_seq_length', '?')}"
        ),
        "tuning wall time": _duration(tuning.get("started_at"), tuning.get("ended_at")),
        "billable seconds": f'<span data-key="billable-seconds">{display.count(tuning.get("total_billable_seconds"))}</span>',
        # made before the evaluation job ends: its cost is not known here (the message and `runs show` add it)
        "estimated cost of the trials": _trials_cost(run),
        "data cleaning": escape(display.cleaning(data) or display.MISSING),
        "run created (file received)": escape(display.utc_time(run.get("created_at"))),
        **_lineage(run),
    }
    class_counts = data.get("class_counts") or {}
    table = ""
    if class_counts:
        splits = [s for s in ("train", "validation", "test") if s in class_counts]
        labels = sorted({label for s in splits for label in class_counts[s]}, key=lambda v: int(v))
        table = "<h3>Rows per split and class</h3>" + page.table(
            ["class", *splits],
            [[escape(f"{CLASS_NAMES.get(int(label), label)} ({label})")]
             + [f"{class_counts[s].get(label, 0):,}" for s in splits] for label in labels],
        )
    listing = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts.items())
    return (f'<section><h2>Summary</h2><div class="cards">{cards}</div>{_guessing(metrics)}<p></p><dl>{listing}</dl>'
            f"{table}</section>")


def _trials_cost(run: dict[str, Any]) -> str:
    """The trials' estimated cost; the page is made while the evaluation job runs, so its cost is told elsewhere."""
    cost = display.estimated_cost((run.get("tuning") or {}).get("cost"))
    if not cost:
        return display.MISSING
    command = f"reviewtune runs show {page.shell_word(str(run.get('run_id', 'RUN')))}"
    return f"{escape(cost)} (the evaluation job's not included: <code>{escape(command)}</code>)"


def _lineage(run: dict[str, Any]) -> dict[str, str]:
    """The run whose file this run tunes again, and the runs its tuning job warm-started from, as the message says."""
    facts = {}
    if run.get("retry_of"):
        facts["retry of"] = escape(str(run["retry_of"]))
    plan = (run.get("config") or {}).get("warm_start")
    if isinstance(plan, dict) and isinstance(plan.get("parents"), list) and plan["parents"]:
        facts["warm start"] = escape(f"{plan.get('type', '?')} from {', '.join(map(str, plan['parents'][:5]))}")
    return facts


def _guessing(metrics: dict[str, Any]) -> str:
    """A note when the test accuracy is no better than always answering the test split's most common class (the
    message's warning, and reviewtune's champion rule: guessing.py)."""
    per_class = metrics.get("per_class") or {}
    supports = {label: (per_class.get(label) or {}).get("support") for label in ("-1", "0", "1")}
    if not all(isinstance(n, int | float) and not isinstance(n, bool) and n >= 0 for n in supports.values()) \
            or not sum(supports.values()):
        return ""
    most = max(supports.values())
    share = most / sum(supports.values())
    if round(metrics["accuracy"]["value"] - share, 9) > 0:
        return ""
    tied = [CLASS_NAMES.get(int(label), label) for label, n in supports.items() if n == most]
    name = "any one class" if len(tied) == len(supports) else " or ".join(tied)  # as guessing.py names it
    return (f'<p class="note" data-key="guessing">No better than always answering '
            f"{escape(name)} ({display.percent(share)} of the test reviews): this model "
            "has learnt nothing usable, and reviewtune makes no such model champion on its own (unless the stack's "
            "ChampionMustBeatGuessing is false: the Champion section below says what was decided).</p>")


def _epochs_cell(trial: dict[str, Any]) -> str:
    """Epochs run, and the share of the planned steps where a time limit (max_train_seconds) cut them."""
    if trial.get("epochs") is None:
        return "-"
    share = trial.get("planned_steps_pct")
    if share is None or float(share) >= 100:
        return str(trial["epochs"])
    return f"{trial['epochs']} (time limit: {display.share_done(share)} of the planned steps)"


def _search(run: dict[str, Any], training_summary: dict[str, Any], plotting: bool) -> str:
    tuning = run.get("tuning", {})
    trials = tuning.get("trials", [])
    if not trials:
        return '<section><h2>Search</h2><p class="note">No trial data was handed to the evaluation.</p></section>'
    best = tuning.get("best_training_job", {})
    best_name = best.get("name")
    ranges = run.get("config", {}).get("hyperparameter_ranges") or {}
    params = sorted({k for t in trials for k in t.get("tuned_hyperparameters", {})})
    ordered = sorted(trials, key=lambda t: (t.get("created_at") or "", t["name"]))
    for number, trial in enumerate(ordered):
        trial["_order"] = number
    rows = []
    for trial in ordered:
        rows.append(
            [
                escape(display.trial_suffix(trial["name"])) + (" ★" if trial["name"] == best_name else ""),
                escape(str(trial.get("status", ""))) + (" (early stop)" if trial.get("early_stopped") else "")
                + (" (deleted)" if trial.get("deleted") else ""),
                *(_num(trial.get("tuned_hyperparameters", {}).get(p, "")) for p in params),
                display.percent(trial.get("objective"), scale=1, suffix=False, missing="-"),
                _epochs_cell(trial),
                display.count(trial["training_seconds"]) if trial.get("training_seconds") else "-",
            ]
        )
    table = page.table(
        ["trial", "status", *params, "val acc %", "epochs", "seconds"],
        rows,
        lambda i: "best" if ordered[i]["name"] == best_name else "",
        stack=True,
    )
    tuned = best.get("tuned_hyperparameters", {})
    static = {k: v for k, v in best.get("hyperparameters", {}).items() if k not in tuned}
    best_rows = [[f"<b>{escape(k)}</b>", _setting(k, v)] for k, v in sorted(tuned.items())]
    best_rows += [[escape(k), _setting(k, v)] for k, v in sorted(static.items())]
    epochs = training_summary.get("epochs", [])
    saved = training_summary.get("saved_epoch")
    curve_note = (
        "<p class='sub'>The best trial's curve comes from its training_summary.json (epoch saved: "
        f"{escape(str(saved))}); the other trials show their last epoch, as SageMaker keeps only final metrics "
        "per training job; × marks a trial stopped early.</p>"
    )
    return (
        "<section><h2>Search</h2>"
        f"<p class='sub'>{len(trials)} trials; objective: validation accuracy (%). ★ = best trial.</p>{table}"
        + _plot(plotting, "objective by hyperparameter", lambda: report_plots.objective_by_parameter(ordered, ranges, best_name))
        + "<h3>Learning curves</h3>"
        + _plot(plotting, "learning curves", lambda: report_plots.learning_curves(ordered, epochs, best_name))
        + curve_note
        + f"<h3>Best trial: {escape(str(best_name))}</h3>"
        + page.table(["hyperparameter (tuned in bold)", "value"], best_rows, columns="ln")
        + "</section>"
    )


def _model(metrics: dict[str, Any], examples: list[dict[str, Any]], plotting: bool) -> str:
    per_class = metrics.get("per_class", {})
    rows = []
    for label in sorted(per_class, key=int):
        values = per_class[label]
        rows.append(
            [
                escape(f"{CLASS_NAMES.get(int(label), label)} ({label})"),
                *(f'<span data-key="{key}-{label}">{display.score(values.get(key))}</span>' for key in ("precision", "recall", "f1")),
                display.count(values.get("support")),
            ]
        )
    confusion = metrics.get("confusion_matrix", {})
    labels = confusion.get("labels", [])
    matrix_rows = [
        [escape(f"true {CLASS_NAMES.get(int(label), label)}"), *(f"{count:,}" for count in row)]
        for label, row in zip(labels, confusion.get("matrix", []), strict=False)
    ]
    matrix_table = page.table(["", *(f"predicted {CLASS_NAMES.get(int(label), label)}" for label in labels)], matrix_rows)
    example_rows = [
        [
            escape(CLASS_NAMES.get(int(e["true"]), str(e["true"]))),
            escape(CLASS_NAMES.get(int(e["predicted"]), str(e["predicted"]))),
            escape(e["text"]),
        ]
        for e in sorted(examples, key=lambda e: (e["true"], e["predicted"]))
    ]
    example_html = (
        page.table(["true", "predicted", "review"], example_rows, columns="-lw")
        if example_rows
        else "<p>No test review was misclassified.</p>"
    )
    return (
        "<section><h2>Model on the test split</h2>"
        + page.table(["class", "precision", "recall", "F1", "support"], rows)
        + "<h3>Confusion matrix</h3>"
        + matrix_table
        + _plot(plotting, "confusion matrix", lambda: report_plots.confusion_matrix_png(confusion))
        + "<h3>Misclassified test reviews (a few per class pair)</h3>"
        + example_html
        + "</section>"
    )


def _history(run: dict[str, Any], metrics: dict[str, Any], plotting: bool) -> str:
    # the runs before this one (a run created after it, such as a DUPLICATE of it, is not its history)
    created = run.get("created_at") or ""
    earlier = [r for r in run.get("history", [])
               if r.get("run_id") != run.get("run_id") and (not created or (r.get("created_at") or "") < created)]
    if not earlier:
        return "<section><h2>History</h2><p>This is the first run of this dataset.</p></section>"
    current = {
        "run_id": run.get("run_id"),
        "created_at": run.get("created_at"),
        "status": "this run",
        "test_accuracy": metrics["accuracy"]["value"],
        "ci95": metrics["accuracy"].get("ci95"),
        "current": True,
    }
    runs = sorted([*earlier, current], key=lambda r: r.get("created_at") or "")
    rows = [
        [
            escape(str(r.get("run_id"))) + (" ★" if r.get("current") else ""),
            escape(display.utc_time(r.get("created_at"))),
            escape(str(r.get("status", ""))),
            _pct(r.get("test_accuracy")),
        ]
        for r in reversed(runs)
    ]
    return (
        "<section><h2>History of this dataset</h2>"
        + _plot(plotting, "test accuracy over time", lambda: report_plots.history(runs))
        + page.table(["run", "started", "status", "test accuracy %"], rows, stack=True)
        + "</section>"
    )


def _files(run: dict[str, Any]) -> str:
    """Where the run's files are in S3 (what start_tuning, the tuning job and this job wrote), to copy one from."""
    data = run.get("data") or {}
    best = (run.get("tuning") or {}).get("best_training_job") or {}
    outputs = run.get("outputs") or {}
    found = [
        *((f"{split} data", data.get(split)) for split in ("train", "validation", "test")),
        ("best model (model.tar.gz)", best.get("model_uri")),
        ("evaluation.json", outputs.get("evaluation")),
        ("this report", outputs.get("report")),
    ]
    rows = [[escape(what), f"<code>{escape(str(uri))}</code>"] for what, uri in found if isinstance(uri, str) and uri]
    if not rows:
        return ""
    return ('<section data-key="files"><h2>Where its files are</h2>'
            + page.table(["what", "where"], rows, columns="ln", stack=True)
            + '<p class="note"><code>aws s3 cp URI .</code> copies one (a folder with <code>--recursive</code>); '
            "<code>reviewtune runs show</code> lists them too.</p></section>")


def _champion(evaluation: dict[str, Any], run_id: str) -> str:
    """Whether this model becomes the dataset's champion: the marked place record_results fills with its decision
    (report_decision.py), and the challenger and the champion on the same test reviews (evaluation.json's
    ``comparison``) when both were measured."""
    comparison = evaluation.get("comparison")
    measured = ""
    if isinstance(comparison, dict):
        champion = escape(str(comparison.get("champion_run_id")))
        left_out = int(comparison.get("rows_left_out") or 0)
        why = ("reviews the champion was trained on" if comparison.get("overlap_checked")
               else "none: its training reviews are unknown")
        rows = [
            ["this run (challenger)", f'<span data-key="challenger-accuracy">{_pct(comparison.get("challenger_accuracy"))}</span>'],
            [f"champion {champion}", f'<span data-key="champion-accuracy">{_pct(comparison.get("champion_accuracy"))}</span>'],
        ]
        measured = (
            f'<p>Both models on the same <b data-key="rows-compared">{int(comparison.get("rows_compared") or 0):,}</b> '
            f'test reviews; <span data-key="rows-left-out">{left_out:,}</span> left out ({why}).</p>'
            + page.table(["model", "accuracy %"], rows)
        )
    elif isinstance(evaluation.get("champion_not_measured"), dict):  # its model could not be used: said why
        unused = evaluation["champion_not_measured"]
        measured = (f'<p data-key="champion-not-measured">Champion {escape(str(unused.get("champion_run_id")))} was '
                    f'not measured: its model could not be used ({escape(str(unused.get("error")))}).</p>')
    return f"<section><h2>Champion</h2>{report_decision.pending(run_id)}{measured}</section>"


# What a person looks at next, from reviewtune's CLI (README: "Use it"); the page itself runs nothing.
NEXT_COMMANDS = (
    ("runs show {run}", "status, timeline, messages, cost, where everything is"),
    ("runs trials {run}", "one row per trial, as the SageMaker SDK's analytics"),
    ("runs logs {run} --functions", "each trial's and the evaluation's output, and the functions' lines on the run"),
    ("champion --dataset {dataset}", "the dataset's champion, its history and decisions"),
)


def _commands(run_id: str, dataset: str) -> str:
    rows = "".join(f"<dt><code>reviewtune {escape(command.format(run=run_id, dataset=page.shell_word(dataset)))}</code></dt>"
                   f"<dd>{escape(what)}</dd>" for command, what in NEXT_COMMANDS)
    return f'<section data-key="commands"><h2>From the command line</h2><dl>{rows}</dl></section>'


def render(
    evaluation: dict[str, Any],
    run: dict[str, Any],
    training_summary: dict[str, Any],
    examples: list[dict[str, Any]],
    *,
    plotting: bool,
) -> str:
    """The whole page as one string."""
    metrics = evaluation["metrics"]
    run_id = run.get("run_id", "unknown run")
    note = (
        ""
        if plotting
        else '<p class="note" data-key="no-images">matplotlib could not be imported or installed in the '
        "processing container, so this report has no images; every number is still here.</p>"
    )
    made = display.utc_time(datetime.now(UTC))
    body = (
        f"<main><h1>reviewtune run {escape(str(run_id))}</h1>"
        f"<p class='sub'>dataset {escape(page.one_line(run.get('dataset', 'n/a')))} · report made {made}</p>{note}"
        + _summary(run, metrics, int(evaluation.get("test_rows", 0)))
        + _champion(evaluation, str(run_id))
        + _search(run, training_summary, plotting)
        + _model(metrics, examples, plotting)
        + _history(run, metrics, plotting)
        + _files(run)
        + _commands(str(run_id), str(run.get("dataset", "")))
        + "</main>"
    )
    # a tab's title: the dataset and the accuracy first, so that several open reports can be told apart
    title = (f"{page.one_line(run.get('dataset') or 'n/a')} {display.percent(metrics['accuracy'].get('value'))} · "
             f"reviewtune {run_id}")
    return page.document(title, body)


def unwritten(evaluation: dict[str, Any], error: BaseException) -> str:
    """The page when ``render`` failed: the test figures evaluation.json holds, and why there is no more."""
    metrics = evaluation.get("metrics") or {}
    accuracy = (metrics.get("accuracy") or {}).get("value")
    macro_f1 = (metrics.get("macro_f1") or {}).get("value")
    body = (
        "<main><h1>reviewtune run report</h1>"
        f"<p class='note' data-key='unwritten'>The report could not be made ({escape(type(error).__name__)}: "
        f"{escape(str(error))}). The evaluation itself ended: its results are in evaluation.json, and "
        "<code>reviewtune runs show</code> shows them.</p>"
        + page.table(["test", "value"], [
            ["accuracy", display.percent(accuracy)],
            ["macro F1", display.score(macro_f1)],
            ["test reviews", display.count(evaluation.get("test_rows"))],
        ])
        + "</main>"
    )
    return page.document("reviewtune run report", body)
