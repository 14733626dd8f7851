"""A SageMaker job made for a run that had already ended is stopped, even when SageMaker does not take the first stop.

GIVEN a step that makes a run's job (a queued run's start, start_evaluation) while a reconciler pass ends the run
at its deadline, WHEN the stop of the job just made is throttled, THEN the run still ends once and is told once,
the job is owed a stop on the run (shown by ``runs show``), and the reconciler's next passes stop it and forget it.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from reviewtune.core import job_stops, slots, tuning
from reviewtune.core.failures import end_run, repository
from reviewtune.core.runs import RunsRepository, RunStatus
from tests.functional.pipeline import Pipeline, good_file, later
from tests.functional.test_guarantees import assert_ended
from tests.support.faults import Failing


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def _queued_start_meets_its_deadline(pipeline: Pipeline, monkeypatch, stop_errors: list[str]) -> str:
    """A queued run's start creates its tuning job just after the run was ended at its deadline, and the stops of
    that job fail with ``stop_errors`` first. Returns the run's id."""
    first = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))
    queued = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i + 1))) for i in range(2)]
    late = next(r for r in queued if r["status"] == "QUEUED")["run_id"]
    runs = repository(pipeline.settings, pipeline.clients)
    create = pipeline.sagemaker.create_hyper_parameter_tuning_job

    def ended_meanwhile(**request):
        if request["HyperParameterTuningJobName"] == late:
            end_run(runs, pipeline.settings, pipeline.clients, late, stage="queued",
                    status=RunStatus.FAILED, reason="the run stayed QUEUED longer than its deadline")
            pipeline.sagemaker.fail["stop_hyper_parameter_tuning_job"] = list(stop_errors)
        return create(**request)

    monkeypatch.setattr(pipeline.sagemaker, "create_hyper_parameter_tuning_job", ended_meanwhile)
    pipeline.sagemaker.finish_tuning(first["run_id"], "Failed", failure="x")
    pipeline.tuning_ended(first["run_id"], "Failed")  # a slot frees: the queued run starts
    return late


def test_a_tuning_job_whose_stop_was_throttled_is_owed_a_stop_until_a_pass_stops_it(pipeline, monkeypatch):
    run_id = _queued_start_meets_its_deadline(pipeline, monkeypatch, ["ThrottlingException"])
    jobs = pipeline.sagemaker.tuning

    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and pipeline.statuses_told(run_id) == ["QUEUED", "FAILED"]
    assert jobs[run_id]["status"] == "InProgress"  # nothing else would ever look at it
    assert item["tuning_job_to_stop"] == run_id and item["notice_pending"]
    assert run_id not in slots.holders(pipeline.clients.runs_table)

    result = pipeline.reconcile(later(0.1))
    assert result["jobs_stopped"] == 1 and not result["errors"]
    assert jobs[run_id]["status"] == "Stopping"
    item = assert_ended(pipeline, run_id, "FAILED", "stayed QUEUED longer than its deadline")  # left the index
    assert "tuning_job_to_stop" not in item
    assert pipeline.reconcile(later(0.2))["jobs_stopped"] == 0


def test_a_stop_refused_again_by_a_pass_is_tried_by_the_next(pipeline, monkeypatch):
    run_id = _queued_start_meets_its_deadline(pipeline, monkeypatch, ["ThrottlingException", "ThrottlingException"])

    first = pipeline.reconcile(later(0.1))
    assert "ThrottlingException" in first["errors"][run_id] and first["jobs_stopped"] == 0
    assert pipeline.run(run_id)["tuning_job_to_stop"] == run_id
    assert pipeline.sagemaker.tuning[run_id]["status"] == "InProgress"

    assert pipeline.reconcile(later(0.2))["jobs_stopped"] == 1
    assert pipeline.sagemaker.tuning[run_id]["status"] == "Stopping"
    assert "tuning_job_to_stop" not in assert_ended(pipeline, run_id, "FAILED")


def test_a_job_that_ended_before_the_pass_is_forgotten_without_a_stop(pipeline, monkeypatch):
    run_id = _queued_start_meets_its_deadline(pipeline, monkeypatch, ["ThrottlingException"])
    pipeline.sagemaker.finish_tuning(run_id, "Completed")

    assert pipeline.reconcile(later(0.1))["jobs_stopped"] == 1  # SageMaker: not running, nothing to stop
    assert pipeline.sagemaker.tuning[run_id]["status"] == "Completed"
    assert "tuning_job_to_stop" not in assert_ended(pipeline, run_id, "FAILED")


def test_an_evaluation_job_whose_stop_was_throttled_is_stopped_by_the_next_pass(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    sagemaker, create = pipeline.sagemaker, pipeline.sagemaker.create_processing_job
    past = pipeline.settings.run_deadlines[RunStatus.TUNING] / 3600 + 0.1

    def then_the_deadline(**request):
        made = create(**request)
        pipeline.reconcile(later(past))  # ends the run before start_evaluation's transition
        sagemaker.fail["stop_processing_job"] = ["ThrottlingException"]
        return made

    sagemaker.create_processing_job = then_the_deadline
    pipeline.tuning_ended(run_id)
    job = f"{run_id}-eval"
    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and item["evaluation_job_to_stop"] == job
    assert sagemaker.processing[job]["status"] == "InProgress"

    assert pipeline.reconcile(later(past + 0.1))["jobs_stopped"] == 1
    assert sagemaker.processing[job]["status"] == "Stopping"
    item = assert_ended(pipeline, run_id, "FAILED", "stayed TUNING longer than its deadline")
    assert "evaluation_job_to_stop" not in item


def test_a_stop_neither_taken_nor_recorded_fails_loudly_with_the_jobs_name(pipeline, caplog):
    """Both SageMaker and DynamoDB refuse: the invocation fails (its error alarm) and its log names the job, the one
    thing left that could find it."""
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    runs = RunsRepository(pipeline.clients.runs_table)
    end_run(runs, pipeline.settings, pipeline.clients, run_id, stage="tuning", status=RunStatus.FAILED,
            reason="the run stayed TUNING longer than its deadline")
    pipeline.sagemaker.fail["stop_hyper_parameter_tuning_job"] = ["ThrottlingException"]
    refusing = Failing(pipeline.clients.runs_table, "update_item", "ProvisionedThroughputExceededException")

    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        job_stops.stop_made_for_ended_run(RunsRepository(refusing), pipeline.clients, pipeline.run(run_id),
                                          "tuning", run_id)

    [logged] = [r for r in caplog.records if "stop it by hand" in r.getMessage()]
    assert logged.levelname == "ERROR" and logged.job_name == run_id and "ThrottlingException" in logged.stop_error
    assert "tuning_job_to_stop" not in pipeline.run(run_id)


def test_a_stop_taken_at_once_owes_nothing(pipeline):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    runs = RunsRepository(pipeline.clients.runs_table)
    end_run(runs, pipeline.settings, pipeline.clients, run_id, stage="tuning", status=RunStatus.FAILED, reason="x")

    assert job_stops.stop_made_for_ended_run(runs, pipeline.clients, pipeline.run(run_id), "tuning", run_id)

    assert pipeline.sagemaker.tuning[run_id]["status"] == "Stopping"
    assert not job_stops.owed(pipeline.run(run_id))


def test_a_stop_owed_as_the_runs_message_goes_out_keeps_the_run_in_the_pending_index(pipeline, monkeypatch):
    """The sender of the run's message read the run with nothing owed; the stop is owed just before its clear of
    ``notice_pending``: the clear must not take the run out of the index, or no pass would ever stop the job."""
    pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))
    queued = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i + 1))) for i in range(2)]
    late = next(r for r in queued if r["status"] == "QUEUED")["run_id"]
    runs = repository(pipeline.settings, pipeline.clients)
    read_before_the_end = runs.get(late)  # what a concurrent start of the queued run read
    clear = RunsRepository.clear_pending_notice

    def start_then_clear(self, run_id, status, **kwargs):
        if run_id == late and not pipeline.sagemaker.tuning.get(late):
            # the concurrent start makes the job, finds the run ended and cannot stop the job: the stop is owed
            pipeline.sagemaker.fail["stop_hyper_parameter_tuning_job"] = ["ThrottlingException"]
            tuning.launch(read_before_the_end, pipeline.settings, pipeline.clients)
            assert runs.get(late)["tuning_job_to_stop"] == late
        return clear(self, run_id, status, **kwargs)

    monkeypatch.setattr(RunsRepository, "clear_pending_notice", start_then_clear)
    end_run(runs, pipeline.settings, pipeline.clients, late, stage="tuning", status=RunStatus.FAILED,
            reason="the run stayed QUEUED longer than its deadline")  # sends its message, then clears
    monkeypatch.setattr(RunsRepository, "clear_pending_notice", clear)
    assert pipeline.run(late)["notice_pending"]

    assert pipeline.reconcile(later(0.1))["jobs_stopped"] == 1
    assert pipeline.sagemaker.tuning[late]["status"] == "Stopping"
    assert "tuning_job_to_stop" not in assert_ended(pipeline, late, "FAILED")
