"""Files dropped at once on the local runtime (real handlers, moto, local SageMaker, real tiny training): every run
succeeds, at most MaxConcurrentRuns runs tune or evaluate at any moment, and each run tells exactly its messages."""

from __future__ import annotations

import pytest

from bench.load_drop import LoadReport, active_interval, max_overlap, run_load

pytestmark = pytest.mark.slow

FILES = 5
LIMIT = 2


def test_five_files_at_once_with_two_slots_all_succeed_and_tell_each_outcome_once(tmp_path):
    report = run_load(FILES, LIMIT, workdir=tmp_path, total_cpus=2, timeout_s=900)

    assert report.problems() == []
    assert len(report.final) == FILES and report.succeeded == FILES
    # five valid files and two slots: at least three waited, and each was told so before its outcome
    assert len(report.queued) >= FILES - LIMIT
    for run_id, status in report.final.items():
        told = report.told[run_id]
        assert told == (["QUEUED"] if run_id in report.queued else []) + [status], (run_id, told)
    assert report.unknown_messages == 0
    assert report.messages == FILES + len(report.queued)
    # the spend guard: never more than two at once, sampled every second and from each run's own history
    assert 1 <= report.max_active_sampled <= LIMIT and report.samples > 1
    assert report.max_active_history == LIMIT


def test_the_overlap_of_active_runs_counts_an_end_before_a_start_at_the_same_instant():
    assert max_overlap([(0, 10), (10, 20), (5, 15)]) == 2
    assert max_overlap([(0, 10), (1, 2), (1.5, 3)]) == 3
    assert max_overlap([]) == 0
    item = {"status_history": {"CLAIMED": "2026-01-01T00:00:00.000Z", "TUNING": "2026-01-01T00:00:01.000Z",
                               "SUCCEEDED": "2026-01-01T00:01:00.000Z"}}
    start, end = active_interval(item)
    assert end - start == 59
    assert active_interval({"status_history": {"CLAIMED": "2026-01-01T00:00:00.000Z", "DUPLICATE": "x"}}) is None


def test_a_report_with_a_missing_or_repeated_message_names_the_run():
    report = LoadReport(files=2, max_concurrent_runs=1)
    report.final = {"a": "SUCCEEDED", "b": "SUCCEEDED"}
    report.queued = {"b"}
    report.told["a"] += ["SUCCEEDED", "SUCCEEDED"]
    report.told["b"] += ["SUCCEEDED"]
    problems = report.problems()
    assert "a: expected ['SUCCEEDED'], received ['SUCCEEDED', 'SUCCEEDED']" in problems
    assert "b: expected ['QUEUED', 'SUCCEEDED'], received ['SUCCEEDED']" in problems
