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
from tests.support.faults import Failing, client_error


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
    pipeline.finish_tuning_past_deadline(run_id)
    sagemaker, create = pipeline.sagemaker, pipeline.sagemaker.create_processing_job
    past = pipeline.settings.run_deadlines[RunStatus.TUNING] / 3600 + 0.1

    def after_the_deadline(**request):
        pipeline.reconcile(later(past))  # ends the run (no evaluation job yet to stop) before the job is made
        sagemaker.fail["stop_processing_job"] = ["ThrottlingException"]
        return create(**request)

    sagemaker.create_processing_job = after_the_deadline
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
            # (a start recording that it is making the job, as starts do, would keep the run in the index already)
            monkeypatch.setattr(job_stops, "record_making", lambda *args: {"at": "2026-12-05T00:00:00.000Z", "attempt": "elsewhere"})
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


# --------------------------------------------------------------- a start that gave up, after a lost answer


def _answer_lost_once(pipeline: Pipeline, monkeypatch, method: str, job_name: str) -> None:
    """The first create of ``job_name`` takes effect, then its answer is lost (botocore's last try throttled)."""
    create = getattr(pipeline.sagemaker, method)
    made: list[str] = []

    def answer_lost(**request):
        name = request.get("HyperParameterTuningJobName") or request.get("ProcessingJobName")
        if name == job_name and not made:
            made.append(name)
            create(**request)
            raise client_error("ThrottlingException", "Rate exceeded", method)
        return create(**request)

    monkeypatch.setattr(pipeline.sagemaker, method, answer_lost)


def _passes_until_ended(pipeline: Pipeline, run_id: str, status: str) -> None:
    hours = 1.0
    while pipeline.run(run_id)["status"] == status and hours < 20:
        pipeline.reconcile(later(hours))
        hours += 1


def test_a_queued_run_given_up_after_a_lost_answer_stops_the_tuning_job_that_answer_made(stack, monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENT_RUNS", "1")
    pipeline = Pipeline(stack)
    first = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))["run_id"]
    queued = pipeline.start_tuning(pipeline.drop_event("incoming/b.tsv", good_file(1)))
    run_id = queued["run_id"]
    assert queued["status"] == "QUEUED"
    _answer_lost_once(pipeline, monkeypatch, "create_hyper_parameter_tuning_job", run_id)
    pipeline.sagemaker.finish_tuning(first, "Failed", failure="x")
    pipeline.tuning_ended(first, "Failed")  # a slot frees: the start makes the job, its answer is lost
    assert pipeline.run(run_id)["status"] == "QUEUED" and pipeline.sagemaker.tuning[run_id]["status"] == "InProgress"
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"] * 7

    _passes_until_ended(pipeline, run_id, "QUEUED")

    item = assert_ended(pipeline, run_id, "FAILED", "did not start the tuning job after 8 attempts")
    assert pipeline.sagemaker.tuning[run_id]["status"] == "Stopping" and not job_stops.owed(item)


def test_an_evaluation_start_given_up_after_a_lost_answer_stops_the_job_that_answer_made(pipeline, monkeypatch):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    job = f"{run_id}-eval"
    _answer_lost_once(pipeline, monkeypatch, "create_processing_job", job)
    assert pipeline.tuning_ended(run_id)["status"] == "TUNING"  # the job is made, the answer lost
    pipeline.sagemaker.fail["create_processing_job"] = ["ThrottlingException"] * 7
    # SageMaker still throttling: the stop after giving up, and the same pass's settling of the stop owed
    pipeline.sagemaker.fail["stop_processing_job"] = ["ThrottlingException"] * 2

    _passes_until_ended(pipeline, run_id, "TUNING")

    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and "did not start the evaluation job after 8 attempts" in item["failure_reason"]
    assert item["evaluation_job_to_stop"] == job and item["notice_pending"]  # owed
    assert pipeline.sagemaker.processing[job]["status"] == "InProgress"
    assert pipeline.reconcile(later(30))["jobs_stopped"] == 1
    assert pipeline.sagemaker.processing[job]["status"] == "Stopping"
    assert not job_stops.owed(assert_ended(pipeline, run_id, "FAILED"))


def test_a_tuning_run_ended_at_its_deadline_stops_an_evaluation_job_a_lost_answer_made(pipeline, monkeypatch):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_past_deadline(run_id)
    job = f"{run_id}-eval"
    _answer_lost_once(pipeline, monkeypatch, "create_processing_job", job)
    assert pipeline.tuning_ended(run_id)["status"] == "TUNING"
    pipeline.sagemaker.fail["create_processing_job"] = ["ThrottlingException"] * 3

    pipeline.reconcile(later(pipeline.settings.run_deadlines[RunStatus.TUNING] / 3600 + 0.1))

    assert_ended(pipeline, run_id, "FAILED", "stayed TUNING longer than its deadline")
    assert pipeline.sagemaker.processing[job]["status"] == "Stopping"


# --------------------------------------------------------------- a step that died between its create and its move


class _Died(BaseException):
    """The invocation ends here (its timeout): no handler code runs after it."""


def test_a_tuning_job_made_by_a_start_that_died_as_its_run_passed_its_deadline_is_stopped(pipeline, monkeypatch):
    """A queued run's start records that it is making the job; a pass ends the run at its deadline (no job yet: its
    stop finds nothing); the start creates the job, then dies before its move. The passes stop that job, and keep
    the run in the pending index until no start can still be making one."""
    first = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))
    queued = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(i + 1))) for i in range(2)]
    late = next(r for r in queued if r["status"] == "QUEUED")["run_id"]
    others = [r["run_id"] for r in [first, *queued] if r["run_id"] != late]
    runs = repository(pipeline.settings, pipeline.clients)
    create = pipeline.sagemaker.create_hyper_parameter_tuning_job

    def a_pass_then_create_then_die(**request):
        if request["HyperParameterTuningJobName"] == late:
            # a pass ends the run at its deadline meanwhile (its stop of the job finds none yet)
            end_run(runs, pipeline.settings, pipeline.clients, late, stage="queued", status=RunStatus.FAILED,
                    reason="the run stayed QUEUED longer than its deadline")
            create(**request)
            raise _Died("timed out right after CreateHyperParameterTuningJob")
        return create(**request)

    monkeypatch.setattr(pipeline.sagemaker, "create_hyper_parameter_tuning_job", a_pass_then_create_then_die)
    for other in others:  # a slot frees; the start read the run while it was still QUEUED
        slots.release(pipeline.clients.runs_table, other)
    assert slots.acquire(pipeline.clients.runs_table, late, pipeline.settings.max_concurrent_runs)
    with pytest.raises(_Died):
        tuning.launch(runs.get(late), pipeline.settings, pipeline.clients)
    monkeypatch.setattr(pipeline.sagemaker, "create_hyper_parameter_tuning_job", create)
    assert pipeline.sagemaker.tuning[late]["status"] == "InProgress"
    assert pipeline.run(late)["notice_pending"]  # the run's message went out; the job it may have is looked at

    assert pipeline.reconcile(later(0.1))["jobs_stopped"] == 0  # stopped, but a start may still be making one
    assert pipeline.sagemaker.tuning[late]["status"] == "Stopping"
    assert pipeline.run(late)["notice_pending"]
    assert pipeline.reconcile(later(job_stops.MAKING_SETTLE_SECONDS / 3600 + 0.01))["jobs_stopped"] == 1
    item = assert_ended(pipeline, late, "FAILED", "longer than its deadline")
    assert not job_stops.pending(item) and "tuning_job_making" not in item


def test_an_evaluation_job_made_by_a_start_that_died_as_its_run_passed_its_deadline_is_stopped(pipeline, monkeypatch):
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    job = f"{run_id}-eval"
    create = pipeline.sagemaker.create_processing_job

    def a_pass_then_create_then_die(**request):
        # a pass ends the run at its deadline meanwhile (its stop of the evaluation job finds none yet)
        end_run(repository(pipeline.settings, pipeline.clients), pipeline.settings, pipeline.clients, run_id,
                stage="tuning", status=RunStatus.FAILED, reason="the run stayed TUNING longer than its deadline")
        create(**request)
        raise _Died("timed out right after CreateProcessingJob")

    monkeypatch.setattr(pipeline.sagemaker, "create_processing_job", a_pass_then_create_then_die)
    with pytest.raises(_Died):
        pipeline.tuning_ended(run_id)
    monkeypatch.setattr(pipeline.sagemaker, "create_processing_job", create)
    assert pipeline.sagemaker.processing[job]["status"] == "InProgress"

    assert pipeline.reconcile(later(0.1))["jobs_stopped"] == 0
    assert pipeline.sagemaker.processing[job]["status"] == "Stopping"
    assert pipeline.reconcile(later(job_stops.MAKING_SETTLE_SECONDS / 3600 + 0.01))["jobs_stopped"] == 1
    item = assert_ended(pipeline, run_id, "FAILED", "longer than its deadline")
    assert not job_stops.pending(item)


def test_a_start_that_makes_its_job_leaves_no_record_that_keeps_the_run_pending(pipeline):
    """The records of making the jobs are settled by the moves that follow them: a run that succeeded, or failed
    after its jobs were its own, is out of the pending index at once."""
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    item = pipeline.run(run_id)
    assert item["tuning_job_making"] and item["tuning_job_arn"] and not job_stops.maybe_made(item)
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", "Failed", failure="out of memory")
    pipeline.evaluation_ended(run_id)
    item = assert_ended(pipeline, run_id, "FAILED")
    assert item["evaluation_job_making"] and not job_stops.pending(item)


def test_a_start_that_gives_up_leaves_the_record_of_another_attempt_making_the_job(stack, monkeypatch):
    """Two attempts start one run's evaluation (the event and a reconciler pass). The second records that it is
    making the job; the first's create is throttled for the last time: it gives up and ends the run, its stop finding
    no job yet. It must leave the second's record: that one's create then goes through and it dies before its move,
    and the passes stop its job."""
    monkeypatch.setenv("START_MAX_ATTEMPTS", "1")  # the first's throttled create is its last try
    pipeline = Pipeline(stack)
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    pipeline.finish_tuning_well(run_id)
    job = f"{run_id}-eval"
    runs = repository(pipeline.settings, pipeline.clients)
    create = pipeline.sagemaker.create_processing_job
    other = {}

    def throttled_while_another_records(**request):
        other["record"] = job_stops.record_making(runs, run_id, "evaluation", RunStatus.TUNING)
        other["request"] = request
        raise client_error("ThrottlingException", "Rate exceeded", "CreateProcessingJob")

    monkeypatch.setattr(pipeline.sagemaker, "create_processing_job", throttled_while_another_records)
    pipeline.tuning_ended(run_id)  # the first gives up
    monkeypatch.setattr(pipeline.sagemaker, "create_processing_job", create)
    item = pipeline.run(run_id)
    assert item["status"] == "FAILED" and item["evaluation_job_making"] == other["record"]
    assert item["notice_pending"]

    create(**other["request"])  # the other's create goes through; it dies before its move
    pipeline.reconcile(later(0.1))
    assert pipeline.sagemaker.processing[job]["status"] == "Stopping"
    pipeline.reconcile(later(job_stops.MAKING_SETTLE_SECONDS / 3600 + 0.01))
    assert not job_stops.pending(assert_ended(pipeline, run_id, "FAILED"))
