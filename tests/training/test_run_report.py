"""run_report.render and report_plots on a made-up run: every section, escaping, plots, the no-matplotlib form."""

from __future__ import annotations

import base64
import re
from html import unescape

import display
import pytest
import report_decision
import report_plots
import run_report
from evaluate_model_metrics import compute_metrics

Y_TRUE = [-1, -1, -1, 0, 0, 0, 1, 1, 1, 1]
Y_PRED = [-1, -1, 0, 0, 0, 1, 1, 1, 1, -1]
BEST = "reviewtune-0123-002-bbbbbbbb"


def evaluation() -> dict:
    return {"metrics": compute_metrics(Y_TRUE, Y_PRED), "test_rows": len(Y_TRUE)}


def run(history: bool = True) -> dict:
    def trial(n: int, lr: str, batch: str, objective: float | None, status: str = "Completed", early: bool = False):
        return {"name": f"reviewtune-0123-00{n}-{'abc'[n - 1] * 8}", "status": status, "objective": objective,
                "tuned_hyperparameters": {"learning_rate": lr, "train_batch_size": batch},
                "created_at": f"2026-11-01T12:0{n}:00", "epochs": 1 if early else 2, "val_loss": 0.9,
                "early_stopped": early, "training_seconds": 60}

    return {
        "run_id": "reviewtune-0123",
        "dataset": "team-a/<b>reviews</b>.tsv",
        "created_at": "2026-11-01T12:00:00.000Z",
        "source": {"bucket": "data", "key": "incoming/team-a/<b>reviews</b>.tsv", "version_id": "v1"},
        "config": {"strategy": "Bayesian", "max_jobs": 3, "max_parallel_jobs": 1, "epochs": 2, "early_stopping": "Auto",
                   "model_name": "m", "max_seq_length": 64,
                   "hyperparameter_ranges": {"learning_rate": {"min": 1e-5, "max": 1e-4, "scaling": "Logarithmic"},
                                             "train_batch_size": [16, 32]}},
        "data": {"summary": {"rows": {"train": 1800, "validation": 100, "test": 10},
                             "class_counts": {"train": {"-1": 600, "0": 600, "1": 600}, "test": {"-1": 3, "0": 3, "1": 4}}}},
        "tuning": {
            "status": "Completed", "started_at": "2026-11-01T12:00:10", "ended_at": "2026-11-01T12:07:40",
            "total_billable_seconds": 420,
            "trials": [trial(1, "2e-05", '"16"', 61.0), trial(2, "8e-05", '"32"', 70.5), trial(3, "1e-05", '"32"', 50.0, "Stopped", True)],
            "best_training_job": {"name": BEST, "objective": 70.5,
                                  "tuned_hyperparameters": {"learning_rate": "8e-05", "train_batch_size": '"32"'},
                                  "hyperparameters": {"learning_rate": "8e-05", "train_batch_size": '"32"', "epochs": "2"}},
        },
        "history": [{"run_id": "reviewtune-0099", "created_at": "2026-10-20T09:00:00Z", "status": "SUCCEEDED",
                     "test_accuracy": 0.62, "ci95": [0.55, 0.69]}] if history else [],
    }


SUMMARY = {"epochs": [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.95, "val_acc": 60.0},
                      {"epoch": 2, "train_loss": 0.8, "val_loss": 0.85, "val_acc": 70.5}], "saved_epoch": 2}
EXAMPLES = [{"true": -1, "predicted": 0, "text": "<script>alert('x')</script> & \"too small\""}]


def keys(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-key="([^"]+)">([^<]*)<', page))


@pytest.mark.skipif(not report_plots.available(), reason="matplotlib is part of the dev environment")
def test_full_report_has_every_section_its_numbers_and_inline_pngs() -> None:
    page = run_report.render(evaluation(), run(), SUMMARY, EXAMPLES, plotting=True)
    metrics = evaluation()["metrics"]
    found = keys(page)
    assert found["test-accuracy"] == "70.00"
    assert found["ci-low"] == f"{100 * metrics['accuracy']['ci95'][0]:.2f}"
    assert found["macro-f1"] == f"{metrics['macro_f1']['value']:.3f}"
    assert found["recall-1"] == f"{metrics['per_class']['1']['recall']:.3f}" and found["rows-train"] == "1,800"
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [alt for alt, _ in images] == ["objective by hyperparameter", "learning curves", "confusion matrix",
                                           "test accuracy over time"]
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for _, data in images)
    # on a phone the charts keep a readable width and scroll sideways instead of shrinking to the screen
    assert len(re.findall(r'<div class="plot"><img alt=', page)) == len(images)
    narrow = page[page.index("@media (max-width:600px)"):]
    assert ".plot{overflow-x:auto}.plot img{width:auto;max-width:680px}" in narrow
    for text in ("Summary", "Search", "Model on the test split", "History of this dataset", "420", "(early stop)",
                 "7 min 30 s", "002-bbbbbbbb ★", "Best trial: " + BEST):
        assert text in page
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;too small&quot;" in page
    assert "<b>reviews</b>" not in page and "&lt;b&gt;reviews&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page


def test_without_plots_the_report_says_so_and_keeps_every_number() -> None:
    page = run_report.render(evaluation(), run(history=False), {}, [], plotting=False)
    assert "<img" not in page and 'data-key="no-images"' in page
    assert keys(page)["test-accuracy"] == "70.00" and "This is the first run of this dataset." in page


def test_a_run_without_trial_data_still_renders() -> None:
    page = run_report.render(evaluation(), {}, {}, [], plotting=False)
    assert "No trial data was handed to the evaluation." in page and keys(page)["test-rows"] == "10"


def test_a_trial_cut_by_its_time_limit_says_how_much_of_its_plan_it_trained() -> None:
    cut = run(history=False)
    trials = cut["tuning"]["trials"]
    trials[0]["planned_steps_pct"] = 93.4  # max_train_seconds ended its last epoch early
    trials[1]["planned_steps_pct"] = 100.0
    page = run_report.render(evaluation(), cut, {}, [], plotting=False)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", page)
    assert "2 (time limit: 93 % of the planned steps)" in cells
    assert page.count("time limit:") == 1  # the whole plan trained, or no figure recorded: the epochs alone
    trials[0]["planned_steps_pct"] = 99.6  # cut short, however little: never "100 %"
    page = run_report.render(evaluation(), cut, {}, [], plotting=False)
    assert "2 (time limit: 99 % of the planned steps)" in re.findall(r"<td[^>]*>([^<]*)</td>", page)


def test_a_deleted_trial_is_marked_deleted_in_the_search_table() -> None:
    gone = run(history=False)
    gone["tuning"]["trials"][1]["deleted"] = True  # DeleteTrainingJob: recorded from the tuning job's listing
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", run_report.render(evaluation(), gone, {}, [], plotting=False))
    assert sum("(deleted)" in cell for cell in cells) == 1


def test_the_history_holds_only_the_runs_before_this_one_with_their_times_in_utc() -> None:
    later = run()
    later["created_at"] = "2026-11-01T12:00:00Z"
    later["history"] = [
        {"run_id": "reviewtune-0099", "created_at": "2026-10-20T09:00:00Z", "status": "SUCCEEDED", "test_accuracy": 0.62},
        {"run_id": "reviewtune-0200", "created_at": "2026-11-01T12:00:47Z", "status": "DUPLICATE"},  # of this run
    ]
    page = run_report.render(evaluation(), later, {}, [], plotting=False)
    history = page.split("History of this dataset", 1)[1]
    assert "reviewtune-0099" in history and "2026-10-20 09:00:00 UTC" in history
    assert "reviewtune-0200" not in history
    alone = {**later, "history": later["history"][1:]}
    assert "This is the first run of this dataset." in run_report.render(evaluation(), alone, {}, [], plotting=False)


def test_a_setting_whose_zero_means_none_or_all_says_so_as_train_py_does() -> None:
    import train

    helps = {action.dest: action.help or "" for action in train.build_parser()._actions}
    for name, meaning in run_report.ZERO_MEANS.items():
        assert f"0 = {meaning}" in helps[name], name
    with_settings = run()
    with_settings["tuning"]["best_training_job"]["hyperparameters"].update(train_steps_per_epoch="0", keep_layers="9")
    page = run_report.render(evaluation(), with_settings, SUMMARY, EXAMPLES, plotting=False)
    assert '<td class="name">0 (the whole training set)</td>' in page and '<td class="name">9</td>' in page


def test_a_trial_ending_where_the_best_one_does_is_drawn_over_its_curve_as_a_ring(monkeypatch) -> None:
    """Its marker was drawn under the best trial's curve, so a trial scoring what the best did was hidden."""
    figures = []
    monkeypatch.setattr(report_plots, "_png", lambda figure: figures.append(figure) or b"png")
    other = {"name": "other", "epochs": 2, "objective": 74.0, "val_loss": 0.6}
    early = {"name": "early", "epochs": 1, "objective": 70.0, "val_loss": 0.8, "early_stopped": True}
    best_epochs = [{"epoch": 1, "val_acc": 71.0, "val_loss": 0.7, "train_loss": 0.8},
                   {"epoch": 2, "val_acc": 74.0, "val_loss": 0.6, "train_loss": 0.5}]

    assert report_plots.learning_curves([other, early, {"name": "best", "epochs": 2, "objective": 74.0}],
                                        best_epochs, "best") == b"png"

    [figure] = figures
    for axes in figure.axes:
        top_line = max(line.get_zorder() for line in axes.get_lines())
        ring, cross = axes.collections
        assert ring.get_offsets().tolist() == [[2, 74.0 if axes.get_title() == "Validation accuracy" else 0.6]]
        assert ring.get_zorder() > top_line and cross.get_zorder() > top_line
        assert not ring.get_facecolors()[:, 3].any()  # hollow: the best trial's point shows through
        assert ring.get_sizes()[0] > 6 ** 2  # wider than the curve's markers (matplotlib's default 6 points)


def test_the_report_ends_with_the_commands_that_show_more_of_the_run() -> None:
    page = run_report.render(evaluation(), run(), SUMMARY, EXAMPLES, plotting=False)
    section = page.split('<section data-key="commands">', 1)[1].split("</section>", 1)[0]
    commands = re.findall(r"<code>(.*?)</code>", section)
    assert commands == ["reviewtune runs show reviewtune-0123", "reviewtune runs trials reviewtune-0123",
                        "reviewtune runs logs reviewtune-0123 --functions",
                        "reviewtune champion --dataset &#x27;team-a/&lt;b&gt;reviews&lt;/b&gt;.tsv&#x27;"]
    assert page.index('data-key="commands"') > page.index("History of this dataset")


def test_a_narrow_screen_shows_the_whole_report_without_scrolling_sideways(tmp_path) -> None:
    """A run id as long as a real one in the commands' section made the page scroll sideways on a phone."""
    from tests.support import chromium

    page = tmp_path / "report.html"
    wide = run()
    wide["dataset"] = "support/customer_reviews_export_2025_11_01_full_with_metadata_v2.tsv"  # one line's worth
    wide["tuning"]["best_training_job"]["hyperparameters"] |= {  # as every real trial has them
        "sagemaker_submit_directory": '"s3://reviewtune-local-databucket-cnb09p9q0oh5/code/sourcedir-0123456789.tar.gz"',
        "model_name_or_path": '"sentence-transformers/all-mpnet-base-v2"'}
    page.write_text(run_report.render(evaluation(), {**wide, "run_id": "reviewtune-4f3a9c1d7e5b8a90"}, SUMMARY,
                                      EXAMPLES, plotting=False))
    check = chromium.inspect(page, tmp_path, width=400)
    assert check["errors"] == [] and check["scrollWidth"] <= check["innerWidth"]
    assert check["wideTables"] == []  # the trials and the history as lines, the best trial's values wrapped


@pytest.mark.skipif(not report_plots.available(), reason="matplotlib is part of the dev environment")
def test_on_a_narrow_screen_each_chart_keeps_a_readable_width_and_scrolls_sideways_in_its_own_box(tmp_path) -> None:
    from tests.support import chromium

    page = tmp_path / "report.html"
    page.write_text(run_report.render(evaluation(), run(), SUMMARY, EXAMPLES, plotting=True))
    check = chromium.inspect(page, tmp_path, width=400)
    assert check["errors"] == [] and check["scrollWidth"] <= check["innerWidth"]  # the page itself does not scroll
    assert len(check["images"]) == 4
    for image in check["images"]:
        # its own width, at most 680 px: a small chart is not blown up past the screen
        assert abs(image["shownWidth"] - min(image["naturalWidth"], 680)) < 1, image
        assert image["boxWidth"] <= check["innerWidth"], image
        assert image["boxOverflowX"] == "auto", image
    wide = chromium.inspect(page, tmp_path, width=1366)
    assert all(image["shownWidth"] <= wide["innerWidth"] and image["shownWidth"] < 1100 for image in wide["images"])


def test_the_champion_section_says_why_a_champion_given_to_the_job_was_not_measured() -> None:
    unusable = {**evaluation(), "champion_not_measured": {"champion_run_id": "reviewtune-0099",
                                                          "error": "OSError: <no weights>"}}
    page = run_report.render(unusable, run(), SUMMARY, [], plotting=False)
    assert keys(page)["champion-not-measured"] == (
        "Champion reviewtune-0099 was not measured: its model could not be used (OSError: &lt;no weights&gt;).")
    assert "champion-not-measured" not in keys(run_report.render(evaluation(), run(), SUMMARY, [], plotting=False))


def test_the_champion_section_says_where_the_decision_is_until_record_results_tells_it_there() -> None:
    first = run_report.render(evaluation(), run(), SUMMARY, [], plotting=False)
    assert "<h2>Champion</h2>" in first and "champion-decision" not in keys(first)
    assert "reviewtune runs show reviewtune-0123</code> says it." in first and "rows-compared" not in keys(first)

    measured = {**evaluation(), "comparison": {"champion_run_id": "reviewtune-0099", "rows_compared": 9,
                                               "rows_left_out": 1, "overlap_checked": True,
                                               "challenger_accuracy": 0.7, "champion_accuracy": 0.6}}
    page = run_report.render(measured, run(), SUMMARY, [], plotting=False)
    found = keys(page)
    assert (found["challenger-accuracy"], found["champion-accuracy"], found["rows-compared"]) == ("70.00", "60.00", "9")
    # what record_results does to the page (report_annotation.py): the same module, as the code bundle carries it
    champion = {"decision": "promoted", "reason": "new champion: challenger 70.00 % vs champion 60.00 % <on> 9 reviews"}
    told = report_decision.fill(page, report_decision.decided(champion, {"model_package_arn": "arn:p/1",
                                                                         "approval": "Approved"}))
    assert keys(told)["champion-decision"] == "new champion: challenger 70.00 % vs champion 60.00 % &lt;on&gt; 9 reviews"
    assert keys(told)["package-approval"] == "Approved" and "champion-decision-pending" not in told
    assert told.index("champion-decision") < told.index("rows-compared")  # the decision, then how it was measured
    assert report_decision.fill(told, report_decision.decided(champion)) == told.replace(
        "<p>Model package <code>arn:p/1</code>: <span data-key=\"package-approval\">Approved</span></p>", "")


def test_a_decision_that_failed_is_told_with_its_error_and_a_page_without_the_place_is_not_filled() -> None:
    undecided = report_decision.decided({"decision": "not decided", "error": "AccessDeniedException: " + "x" * 3000})
    sentence = keys(undecided)["champion-decision"]
    assert sentence.startswith("not decided: AccessDeniedException: x") and sentence.endswith("...")
    assert len(sentence) == report_decision.TEXT_MAX_CHARS
    assert report_decision.fill("<html><h2>Against the champion</h2></html>", undecided) is None
    # the registry's error, as the message says it: approving the package failed, or registering the model
    approval = report_decision.decided({"reason": "new champion: ..."}, {"model_package_arn": "arn:p/2",
                                        "approval": "PendingManualApproval", "error": "approval failed: Throttling"})
    assert keys(approval)["package-approval"] == "PendingManualApproval"
    assert keys(approval)["registry-error"] == "Model registry: approval failed: Throttling"
    unregistered = report_decision.decided({"reason": "first champion: ..."}, {"error": "ValidationException: <x>"})
    assert keys(unregistered)["registry-error"] == "Model registry: registration failed: ValidationException: &lt;x&gt;"
    assert "package-approval" not in keys(unregistered)
    # a page that holds the start of the place and no end (not one the job makes) is not filled
    assert report_decision.fill(report_decision.START * 20_000, approval) is None
    named = report_decision.decided({"reason": "champion kept: ..."}, None, "team-a/<b>reviews</b>.tsv")
    assert "<code>reviewtune champion --dataset &#x27;team-a/&lt;b&gt;reviews&lt;/b&gt;.tsv&#x27;</code>" in named


def test_a_model_no_better_than_answering_one_class_is_said_so_under_its_accuracy() -> None:
    metrics = {"accuracy": {"value": 0.3333}, "per_class": {
        label: {"precision": 0.3, "recall": 0.3, "f1": 0.3, "support": support}
        for label, support in (("-1", 3), ("0", 3), ("1", 3))}}
    told = run_report.render({"metrics": metrics, "test_rows": 9}, run(), SUMMARY, EXAMPLES, plotting=False)
    assert ('data-key="guessing">No better than always answering any one class (33.33 % of the test reviews)'
            in told)
    good = run_report.render({**evaluation()}, run(), SUMMARY, EXAMPLES, plotting=False)
    assert 'data-key="guessing"' not in good


def test_the_summary_says_what_the_message_says_of_cleaning_a_retry_a_warm_start_and_the_cost() -> None:
    base = run()
    base["data"]["summary"].update(dropped_empty_text=0, duplicates_removed=3, dropped_by_balancing=5)
    base["tuning"] = {**base.get("tuning", {}), "cost": {"total": 0.0123, "currency": "USD", "region": "us-east-1",
                                                         "prices_as_of": "2026-11-30"}}
    item = {**base, "retry_of": "reviewtune-0042",
            "config": {**run()["config"], "epochs": 1,
                       "warm_start": {"type": "TransferLearning", "parents": ["reviewtune-0040", "reviewtune-0041"]}}}
    text = re.sub(r"<[^>]+>", " ", run_report.render(evaluation(), item, SUMMARY, EXAMPLES, plotting=False))
    text = " ".join(unescape(text).split())
    assert "retry of reviewtune-0042" in text
    assert "warm start TransferLearning from reviewtune-0040, reviewtune-0041" in text
    assert "1 epoch, model m" in text
    assert "data cleaning empty texts dropped 0, duplicates removed 3, dropped by balancing 5" in text
    assert ("estimated cost of the trials US$ 0.01 (on-demand prices us-east-1 of 2026-11-30; an estimate) (the "
            "evaluation job's not included: reviewtune runs show reviewtune-0123 )") in text  # ) after </code>
    assert "retry of" not in " ".join(re.sub(r"<[^>]+>", " ", run_report.render(
        evaluation(), run(), SUMMARY, EXAMPLES, plotting=False)).split())


@pytest.mark.skipif(not report_plots.available(), reason="matplotlib is part of the dev environment")
def test_one_epoch_is_one_tick_and_the_history_draws_points_without_a_trend_line(monkeypatch) -> None:
    figures = []
    monkeypatch.setattr(report_plots, "_png", lambda figure: figures.append(figure) or b"png")
    one = [{"epoch": 1, "val_acc": 71.0, "val_loss": 0.7, "train_loss": 0.8}]
    report_plots.learning_curves([{"name": "best", "epochs": 1, "objective": 71.0},
                                  {"name": "other", "epochs": 1, "objective": 69.0, "val_loss": 0.8}], one, "best")
    assert [list(axes.get_xticks()) for axes in figures[0].axes] == [[1], [1]]
    assert "other trial: validation (last epoch)" in [text.get_text() for text in figures[0].axes[1].get_legend().texts]

    report_plots.history([{"created_at": f"2026-11-0{n}T12:00:00Z", "test_accuracy": 0.7 + n / 100,
                           "ci95": [0.65, 0.8], "current": n == 3} for n in (1, 2, 3)])
    [points] = [line for line in figures[1].axes[0].get_lines() if line.get_marker() == "o"]
    assert points.get_linestyle() == "None"


def test_a_report_s_tab_title_names_its_dataset_and_accuracy_first() -> None:
    told = run_report.render(evaluation(), run(), SUMMARY, EXAMPLES, plotting=False)
    title = re.search(r"<title>(.*?)</title>", told).group(1)
    accuracy = evaluation()["metrics"]["accuracy"]["value"]
    assert title == f"team-a/&lt;b&gt;reviews&lt;/b&gt;.tsv {100 * accuracy:.2f} % · reviewtune reviewtune-0123"


@pytest.mark.parametrize(("accuracy", "supports"), [
    (0.3333, (3, 3, 3)), (1 / 3, (1, 1, 1)), (0.34, (3, 3, 3)), (0.85, (15, 16, 278)), (0.9, (15, 16, 278)),
    (0.5, (0, 0, 4)), (1.0, (0, 0, 4)), (0.2, (0, 0, 0)), (0.2, (True, 1, 1)), (0.2, (None, 1, 1)),
])
def test_the_report_s_note_agrees_with_the_rule_that_keeps_such_a_model_from_being_champion(accuracy, supports):
    """The page is made in the evaluation job, without reviewtune: its own copy of guessing.py's test."""
    from reviewtune.core.guessing import most_common_class

    metrics = {"accuracy": {"value": accuracy}, "per_class": {
        label: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": support}
        for label, support in zip(("-1", "0", "1"), supports, strict=True)}}
    most_common = most_common_class(metrics)
    note = run_report._guessing(metrics)
    assert bool(note) is (most_common is not None and not most_common.beaten_by(accuracy))
    if note:
        assert f"always answering {most_common.name} ({display.percent(most_common.share)} of" in note


def test_the_report_says_where_the_run_s_files_are_in_s3() -> None:
    item = run()
    item["data"].update({split: f"s3://data/runs/reviewtune-0123/data/{split}/" for split in ("train", "validation", "test")})
    item["tuning"]["best_training_job"]["model_uri"] = f"s3://data/runs/reviewtune-0123/models/{BEST}/output/model.tar.gz"
    item["outputs"] = {"evaluation": "s3://data/runs/reviewtune-0123/evaluation/evaluation.json",
                       "report": "s3://data/runs/reviewtune-0123/evaluation/report/index.html"}
    page = run_report.render(evaluation(), item, SUMMARY, EXAMPLES, plotting=False)
    section = page.split('<section data-key="files">', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<td[^>]*>([^<]*)</td><td[^>]*><code>([^<]*)</code></td>", section)
    assert rows == [
        ("train data", "s3://data/runs/reviewtune-0123/data/train/"),
        ("validation data", "s3://data/runs/reviewtune-0123/data/validation/"),
        ("test data", "s3://data/runs/reviewtune-0123/data/test/"),
        ("best model (model.tar.gz)", f"s3://data/runs/reviewtune-0123/models/{BEST}/output/model.tar.gz"),
        ("evaluation.json", "s3://data/runs/reviewtune-0123/evaluation/evaluation.json"),
        ("this report", "s3://data/runs/reviewtune-0123/evaluation/report/index.html"),
    ]
    assert page.index('data-key="files"') < page.index('data-key="commands"')
    # a run.json written before it carried these (or none at all): no empty section
    assert 'data-key="files"' not in run_report.render(evaluation(), run(), SUMMARY, EXAMPLES, plotting=False)


def test_a_dataset_with_a_line_break_is_named_on_one_line() -> None:
    item = {**run(), "dataset": "team-x/two\nlines.tsv",
            "source": {"bucket": "data", "key": "incoming/team-x/two\nlines.tsv", "version_id": "v1"}}
    page = run_report.render(evaluation(), item, SUMMARY, EXAMPLES, plotting=False)
    assert "team-x/two\\x0alines.tsv" in page.split("</title>", 1)[0]
    assert "dataset team-x/two\\x0alines.tsv ·" in page and "s3://data/incoming/team-x/two\\x0alines.tsv" in page
    assert "two\nlines" not in page
