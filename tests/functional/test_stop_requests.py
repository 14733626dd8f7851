"""A person stops a run (``reviewtune runs stop``): in every state it can be in, the run ends STOPPED once, told
once with who, when and why; it starts, evaluates, registers and promotes nothing after the request, and its slot
goes to the next run. The handlers and the reconciler on moto with the in-memory SageMaker.
"""

from __future__ import annotations

import pytest

from reviewtune.core import display, job_stops, results, slots
from reviewtune.core import evaluation as evaluation_module
from reviewtune.core import tuning as tuning_module
from reviewtune.core.champion import get_champion
from reviewtune.core.failures import repository
from reviewtune.core.runs import RunsRepository
from reviewtune.core.stop_requests import (
    FAILED,
    NO_JOB,
    NOT_RUNNING,
    STOPPING,
    StopError,
    request_stop,
    stop_job_now,
)
from tests.functional.pipeline import Pipeline, good_file, later, measured
from tests.functional.test_guarantees import assert_ended
from tests.functional.test_record_results import EVALUATION
from tests.support.faults import client_error

BY = "arn:aws:iam::123456789012:user/ops"
WHY = "wrong export: March twice"


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def tuning(pipeline: Pipeline, seed: int = 0, key: str = "incoming/team/a.tsv") -> str:
    result = pipeline.start_tuning(pipeline.drop_event(key, good_file(seed)))
    assert result["status"] == "TUNING", result
    return result["run_id"]


def runs(pipeline: Pipeline) -> RunsRepository:
    return repository(pipeline.settings, pipeline.clients)


def stop(pipeline: Pipeline, run_id: str) -> dict:
    """What the command does: record the request, then stop the run's running job."""
    item = request_stop(runs(pipeline), run_id, why=WHY, by=BY)
    assert stop_job_now(pipeline.sagemaker, item)[0] in (STOPPING, NO_JOB)
    return item


def assert_stopped_on_request(pipeline: Pipeline, run_id: str) -> dict:
    item = assert_ended(pipeline, run_id, "STOPPED", f"stopped by {BY} at ", " UTC: ", WHY)
    assert f"at {display.utc_time(item['stop_request']['at'])}: " in item["failure_reason"]
    assert run_id not in slots.holders(pipeline.clients.runs_table)
    [message] = [m for m in pipeline.messages(run_id) if m["MessageAttributes"]["status"]["Value"] == "STOPPED"]
    assert WHY in message["Message"] and BY in message["Message"]
    return item


def test_a_tuning_run_a_person_stops_has_its_job_stopped_and_ends_stopped_told_once(pipeline):
    run_id = tuning(pipeline)
    stop(pipeline, run_id)
    assert pipeline.sagemaker.tuning[run_id]["status"] == "Stopping"
    pipeline.sagemaker.finish_tuning(run_id, "Stopped")
    pipeline.tuning_ended(run_id, "Stopped")
    pipeline.tuning_ended(run_id, "Stopped")  # a repeated event changes nothing
    pipeline.reconcile(later(1))
    item = assert_stopped_on_request(pipeline, run_id)
    assert item["failed_stage"] == "tuning" and item["stop_request"]["by"] == BY
    assert f"{run_id}-eval" not in pipeline.sagemaker.processing


def test_a_stopped_run_whose_evaluation_job_sagemaker_no_longer_knows_ends_stopped(pipeline):
    run_id = tuning(pipeline)
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    request_stop(runs(pipeline), run_id, why=WHY, by=BY)
    del pipeline.sagemaker.processing[f"{run_id}-eval"]  # gone before the stop could reach it
    pipeline.reconcile(later(0.5))
    item = assert_stopped_on_request(pipeline, run_id)
    assert item["failed_stage"] == "evaluation" and pipeline.statuses_told(run_id) == ["STOPPED"]


def test_a_run_whose_tuning_completed_before_the_stop_reached_it_evaluates_nothing(pipeline):
    run_id = tuning(pipeline)
    request_stop(runs(pipeline), run_id, why=WHY, by=BY)  # the job completed before anyone could stop it
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    assert_stopped_on_request(pipeline, run_id)
    assert f"{run_id}-eval" not in pipeline.sagemaker.processing and pipeline.sagemaker.packages() == []


def test_a_run_stopped_while_its_evaluation_runs_is_neither_registered_nor_champion(pipeline):
    first = tuning(pipeline)
    pipeline.succeed(first)
    second = tuning(pipeline, seed=3)
    pipeline.finish_tuning_well(second)
    pipeline.tuning_ended(second)
    assert pipeline.run(second)["status"] == "EVALUATING"
    stop(pipeline, second)
    assert pipeline.sagemaker.processing[f"{second}-eval"]["status"] == "Stopping"
    # the job had written its results as it was stopped: far better than the champion, still not recorded
    pipeline.sagemaker.finish_processing(f"{second}-eval", evaluation={**_evaluation(pipeline, second)})
    pipeline.evaluation_ended(second)
    item = assert_stopped_on_request(pipeline, second)
    assert item["failed_stage"] == "evaluation" and "results" not in item
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == first
    assert len(pipeline.sagemaker.packages()) == 1  # the first run's only


def test_a_stop_recorded_while_record_results_decides_keeps_the_run_from_champion(pipeline, monkeypatch):
    """record_results read the run before the request, registered the model and, the challenger being better,
    approved its package: its SUCCEEDED write (with the champion pointer) must fail on the request, the run end
    STOPPED, and the approval be withdrawn."""
    first, second = _challenger_evaluated(pipeline)
    approve = results.set_approval

    def stop_arrives(*args, **kwargs):
        entry = approve(*args, **kwargs)
        request_stop(runs(pipeline), second, why=WHY, by=BY)
        return entry

    monkeypatch.setattr(results, "set_approval", stop_arrives)
    pipeline.evaluation_ended(second)
    assert pipeline.run(second)["status"] == "STOPPED"
    pipeline.reconcile(later(1))  # withdraws the approval again past the window any approval could still come in
    assert_stopped_on_request(pipeline, second)
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == first
    packages = {p["ModelPackageArn"]: p["ModelApprovalStatus"] for p in pipeline.sagemaker.packages()}
    assert packages[pipeline.run(second)["model_package_arn"]] == "PendingManualApproval"
    assert packages[pipeline.run(first)["model_package_arn"]] == "Approved"


def test_a_queued_run_a_person_stops_takes_no_slot_and_ends_at_the_next_pass(pipeline):
    running = [tuning(pipeline, seed=i, key=f"incoming/r{i}.tsv") for i in range(2)]  # both slots
    queued = [pipeline.start_tuning(pipeline.drop_event(f"incoming/q{i}.tsv", good_file(10 + i)))["run_id"]
              for i in range(2)]
    assert [pipeline.run(q)["status"] for q in queued] == ["QUEUED", "QUEUED"]
    stop(pipeline, queued[0])  # the older one: first in line
    pipeline.succeed(running[0])  # its freed slot goes past the stopped run to the next
    assert pipeline.run(queued[1])["status"] == "TUNING"
    assert pipeline.run(queued[0])["status"] == "QUEUED"
    assert pipeline.reconcile(later(0))["steps"][queued[0]] == "stopped on request: STOPPED"
    item = assert_stopped_on_request(pipeline, queued[0])
    assert pipeline.statuses_told(queued[0]) == ["QUEUED", "STOPPED"]
    assert item["failed_stage"] == "queue"  # it never tuned
    [message] = [m for m in pipeline.messages(queued[0]) if m["MessageAttributes"]["status"]["Value"] == "STOPPED"]
    assert message["Subject"].endswith("stopped while queued") and "during" not in message["Message"]
    assert queued[0] not in pipeline.sagemaker.tuning


def test_a_stop_landing_as_the_run_is_queued_ends_it_stopped_and_never_told_queued(pipeline, monkeypatch):
    for i in range(2):
        tuning(pipeline, seed=i, key=f"incoming/r{i}.tsv")  # both slots
    queued = tuning_module.messages.queued
    stopped = []

    def then_stopped(item, *args):  # the stop lands after launch_or_queue read it unstopped, before its QUEUED write
        stopped.append(stop(pipeline, item["run_id"]))
        return queued(item, *args)

    monkeypatch.setattr(tuning_module.messages, "queued", then_stopped)
    result = pipeline.start_tuning(pipeline.drop_event("incoming/q.tsv", good_file(10)))
    assert stopped and result["status"] == "STOPPED"
    assert_stopped_on_request(pipeline, result["run_id"])
    assert pipeline.statuses_told(result["run_id"]) == ["STOPPED"]  # no "queued" notice after the stop was asked


def test_a_claim_whose_start_waits_on_throttling_is_stopped_before_any_tuning_job(pipeline):
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]
    result = pipeline.start_tuning(pipeline.drop_event())
    run_id = result["run_id"]
    assert result["status"] == "CLAIMED" and pipeline.run(run_id)["tuning_start"]["attempts"] == 1
    stop(pipeline, run_id)
    pipeline.reconcile(later(1))  # its next try is due: the stop comes first
    assert_stopped_on_request(pipeline, run_id)
    assert run_id not in pipeline.sagemaker.tuning
    pipeline.start_tuning(pipeline.drop_event())  # a late delivery of its event starts nothing either
    assert run_id not in pipeline.sagemaker.tuning and pipeline.statuses_told(run_id) == ["STOPPED"]


def test_a_job_the_command_could_not_stop_is_stopped_by_the_reconciler(pipeline):
    run_id = tuning(pipeline)
    pipeline.sagemaker.fail["stop_hyper_parameter_tuning_job"] = ["AccessDeniedException"]
    item = request_stop(runs(pipeline), run_id, why=WHY, by=BY)
    assert stop_job_now(pipeline.sagemaker, item) == (FAILED, "AccessDeniedException: AccessDeniedException for stop_hyper_parameter_tuning_job (injected)")
    assert pipeline.sagemaker.tuning[run_id]["status"] == "InProgress"
    assert pipeline.reconcile(later(0))["steps"][run_id] == "tuning job stopped on request"
    assert pipeline.sagemaker.tuning[run_id]["status"] == "Stopping"
    pipeline.sagemaker.finish_tuning(run_id, "Stopped")  # its event lost: the next pass ends the run
    pipeline.reconcile(later(0))
    assert_stopped_on_request(pipeline, run_id)


def test_a_job_that_failed_on_its_own_before_the_stop_ends_the_run_failed_with_its_reason(pipeline):
    run_id = tuning(pipeline)
    request_stop(runs(pipeline), run_id, why=WHY, by=BY)
    pipeline.sagemaker.finish_tuning(run_id, "Failed", failure="AlgorithmError: out of memory")
    pipeline.tuning_ended(run_id, "Failed")
    assert_ended(pipeline, run_id, "FAILED", "AlgorithmError: out of memory")


def test_what_cannot_be_stopped_is_refused_and_a_second_request_keeps_the_first(pipeline):
    table = runs(pipeline)
    with pytest.raises(StopError, match="no run 'nope'"):
        request_stop(table, "nope", why=WHY, by=BY)
    run_id = tuning(pipeline)
    with pytest.raises(StopError, match="needs a reason"):
        request_stop(table, run_id, why="  ", by=BY)
    with pytest.raises(StopError, match="needs who asks for it"):
        request_stop(table, run_id, why=WHY, by=" ")
    assert "stop_request" not in pipeline.run(run_id)
    first = request_stop(table, run_id, why=WHY, by=BY)["stop_request"]
    assert request_stop(table, run_id, why="another reason", by="someone else")["stop_request"] == first
    pipeline.sagemaker.finish_tuning(run_id, "Stopped")
    pipeline.tuning_ended(run_id, "Stopped")
    with pytest.raises(StopError, match=f"run {run_id} is STOPPED already: there is nothing to stop"):
        request_stop(table, run_id, why=WHY, by=BY)


def test_stopping_a_job_that_ended_or_is_stopping_already_is_no_error(pipeline):
    run_id = tuning(pipeline)
    item = pipeline.run(run_id)
    pipeline.sagemaker.fail["stop_hyper_parameter_tuning_job"] = ["ValidationException"]
    assert stop_job_now(pipeline.sagemaker, item) == (NOT_RUNNING, "ValidationException: ValidationException for stop_hyper_parameter_tuning_job (injected)")

    class Refusing:
        def stop_hyper_parameter_tuning_job(self, **_):
            raise client_error("ThrottlingException", "Rate exceeded", "StopHyperParameterTuningJob")

    assert stop_job_now(Refusing(), item) == (FAILED, "ThrottlingException: Rate exceeded")


def _evaluation(pipeline: Pipeline, run_id: str) -> dict:
    """evaluation.json of a challenger far better than the champion it was asked to measure."""
    champion = pipeline.processing_argument(run_id, "--champion-run-id")
    return {**EVALUATION, "comparison": {"champion_run_id": champion, **measured(0.80, 0.70)}}


# ------------------------------------------------------------------- a request landing in the middle of a step


def test_a_stop_landing_while_the_tuning_job_is_created_stops_that_job_and_ends_the_run(pipeline, monkeypatch):
    """launch read the run without a request and took a slot; the request lands before its TUNING write."""
    create, said = tuning_module._create, []

    def stop_arrives(clients, request):
        item = request_stop(runs(pipeline), request["HyperParameterTuningJobName"], why=WHY, by=BY)
        said.append(stop_job_now(pipeline.sagemaker, item)[0])  # the run is CLAIMED: the command sees no job
        return create(clients, request)

    monkeypatch.setattr(tuning_module, "_create", stop_arrives)
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    assert said == [NO_JOB]
    assert pipeline.sagemaker.tuning[run_id]["status"] == "Stopping"  # the job just made: stopped at once
    assert_stopped_on_request(pipeline, run_id)


def test_a_stop_landing_while_the_evaluation_job_is_created_stops_that_job_and_ends_the_run(pipeline, monkeypatch):
    """start_evaluation read the run without a request; the request lands before its EVALUATING write (the
    command finds the tuning job ended: nothing to stop)."""
    run_id = tuning(pipeline)
    pipeline.finish_tuning_well(run_id)
    write, said = evaluation_module.write_report_input, []

    def stop_arrives(*args, **kwargs):
        item = request_stop(runs(pipeline), run_id, why=WHY, by=BY)
        said.append(stop_job_now(pipeline.sagemaker, item)[0])
        return write(*args, **kwargs)

    monkeypatch.setattr(evaluation_module, "write_report_input", stop_arrives)
    pipeline.tuning_ended(run_id)
    assert said == [NOT_RUNNING]
    assert pipeline.sagemaker.processing[f"{run_id}-eval"]["status"] == "Stopping"
    item = assert_stopped_on_request(pipeline, run_id)
    assert item["failed_stage"] == "tuning" and item["tuning"]["status"] == "Completed"


def test_a_stop_landing_before_the_champion_s_package_is_approved_never_approves_it(pipeline, monkeypatch):
    """record_results read the run without a request and registered the model; the request lands before the
    package is marked for approval: it is never Approved, not even for a moment."""
    first, second = _challenger_evaluated(pipeline)
    register, approvals = results.register, []

    def stop_arrives(*args, **kwargs):
        entry = register(*args, **kwargs)
        request_stop(runs(pipeline), second, why=WHY, by=BY)
        return entry

    update = pipeline.sagemaker.update_model_package

    def watched(ModelPackageArn, ModelApprovalStatus, **rest):  # noqa: N803
        approvals.append((ModelPackageArn, ModelApprovalStatus))
        return update(ModelPackageArn=ModelPackageArn, ModelApprovalStatus=ModelApprovalStatus, **rest)

    monkeypatch.setattr(results, "register", stop_arrives)
    monkeypatch.setattr(pipeline.sagemaker, "update_model_package", watched)
    pipeline.evaluation_ended(second)
    pipeline.reconcile(later(1))
    assert_stopped_on_request(pipeline, second)
    assert "Approved" not in [status for _, status in approvals], approvals
    assert get_champion(pipeline.clients.runs_table, "team/a.tsv").run_id == first


def test_a_run_whose_job_is_still_stopping_at_its_deadline_ends_stopped_as_asked(pipeline):
    run_id = tuning(pipeline)
    stop(pipeline, run_id)  # SageMaker never says the job stopped
    assert pipeline.reconcile(later(24 * 3 + 1))["steps"][run_id] == "past deadline, stopped on request"
    assert_stopped_on_request(pipeline, run_id)


def test_a_stopped_run_waiting_for_a_throttled_evaluation_start_ends_at_the_next_pass(pipeline):
    run_id = tuning(pipeline)
    pipeline.finish_tuning_well(run_id)
    pipeline.sagemaker.fail["create_processing_job"] = ["ThrottlingException"]
    pipeline.tuning_ended(run_id)
    assert pipeline.run(run_id)["evaluation_start"]["attempts"] == 1
    request_stop(runs(pipeline), run_id, why=WHY, by=BY)
    pipeline.reconcile(later(0))  # before the evaluation job's next try is due
    assert pipeline.statuses_told(run_id)[-1] == "STOPPED"
    assert job_stops.maybe_made(pipeline.run(run_id))  # a throttled create may still have made it: looked at
    pipeline.reconcile(later(job_stops.MAKING_SETTLE_SECONDS / 3600 + 0.01))
    assert_stopped_on_request(pipeline, run_id)
    assert f"{run_id}-eval" not in pipeline.sagemaker.processing


def test_of_two_requests_at_once_the_first_stays(pipeline):
    """Both read the run without a request; the second's write must not replace the first's."""
    table = runs(pipeline)
    run_id = tuning(pipeline)
    unrequested = table.get(run_id)

    class ReadBefore(RunsRepository):
        def get(self, _run_id):
            return unrequested

    first = request_stop(table, run_id, why=WHY, by=BY)["stop_request"]
    late = ReadBefore(table.table)
    with pytest.raises(StopError, match="kept changing"):
        request_stop(late, run_id, why="another reason", by="arn:aws:iam::123456789012:user/other")
    assert pipeline.run(run_id)["stop_request"] == first


def test_items_of_the_runs_table_that_are_not_runs_cannot_be_stopped(pipeline):
    tuning(pipeline)  # takes a slot: the slots item exists
    for key in ("#slots", "champion#team/a.tsv"):
        with pytest.raises(StopError, match="no run"):
            request_stop(runs(pipeline), key, why=WHY, by=BY)


def _challenger_evaluated(pipeline: Pipeline) -> tuple[str, str]:
    """The dataset's champion, and a second run whose evaluation job ended, far better than it."""
    first = tuning(pipeline)
    pipeline.succeed(first)
    second = tuning(pipeline, seed=3)
    pipeline.finish_tuning_well(second)
    pipeline.tuning_ended(second)
    pipeline.sagemaker.finish_processing(f"{second}-eval", evaluation=_evaluation(pipeline, second))
    return first, second


# ----------------------------------------------------- a job stopped just before its run ends must have stopped


def test_an_evaluation_job_made_as_the_stop_landed_is_stopped_though_its_maker_died_first(pipeline, monkeypatch):
    """start_evaluation made the evaluation job, found its EVALUATING write refused by the request, and died before
    it stopped the job; the retry ends the run: it must stop that job first, since nothing looks at it afterwards."""
    run_id = tuning(pipeline)
    pipeline.finish_tuning_well(run_id)
    write, stop_job = evaluation_module.write_report_input, evaluation_module.stop_evaluation_job
    dying = []

    def stop_arrives(*args, **kwargs):
        request_stop(runs(pipeline), run_id, why=WHY, by=BY)
        return write(*args, **kwargs)

    def dies_first(*args, **kwargs):
        if not dying:
            dying.append(None)
            raise RuntimeError("Task timed out")
        return stop_job(*args, **kwargs)

    monkeypatch.setattr(evaluation_module, "write_report_input", stop_arrives)
    monkeypatch.setattr(evaluation_module, "stop_evaluation_job", dies_first)
    with pytest.raises(RuntimeError, match="Task timed out"):
        pipeline.tuning_ended(run_id)
    assert pipeline.sagemaker.processing[f"{run_id}-eval"]["status"] == "InProgress"
    pipeline.tuning_ended(run_id)  # Lambda's retry
    assert pipeline.sagemaker.processing[f"{run_id}-eval"]["status"] == "Stopping"
    pipeline.reconcile(later(job_stops.MAKING_SETTLE_SECONDS / 3600 + 0.01))  # no attempt can still be making one
    assert_stopped_on_request(pipeline, run_id)


def test_a_tuning_job_made_as_the_stop_landed_whose_stop_is_throttled_is_stopped_before_the_run_ends(
        pipeline, monkeypatch):
    create = tuning_module._create

    def stop_arrives(clients, request):
        request_stop(runs(pipeline), request["HyperParameterTuningJobName"], why=WHY, by=BY)
        pipeline.sagemaker.fail["stop_hyper_parameter_tuning_job"] = ["ThrottlingException"]
        return create(clients, request)

    monkeypatch.setattr(tuning_module, "_create", stop_arrives)
    with pytest.raises(Exception, match="ThrottlingException"):
        pipeline.start_tuning(pipeline.drop_event())
    [run_id] = pipeline.sagemaker.tuning
    assert pipeline.run(run_id)["status"] == "CLAIMED"  # not ended while its job runs
    assert pipeline.sagemaker.tuning[run_id]["status"] == "InProgress"
    assert pipeline.reconcile(later(0))["steps"][run_id] == "stopped on request: STOPPED"
    assert pipeline.sagemaker.tuning[run_id]["status"] == "Stopping"
    pipeline.reconcile(later(job_stops.MAKING_SETTLE_SECONDS / 3600 + 0.01))  # no attempt can still be making one
    assert_stopped_on_request(pipeline, run_id)


def test_the_same_file_dropped_again_while_a_stopped_run_ends_is_tuned_not_a_duplicate(pipeline):
    run_id = tuning(pipeline, key="incoming/a.tsv")
    stop(pipeline, run_id)  # its job is stopping: the run is still TUNING
    again = pipeline.start_tuning(pipeline.drop_event("incoming/a.tsv", good_file(0)))
    assert again["status"] == "TUNING" and again["run_id"] != run_id
    pipeline.sagemaker.finish_tuning(run_id, "Stopped")
    pipeline.tuning_ended(run_id, "Stopped")
    assert_stopped_on_request(pipeline, run_id)


def test_a_claim_whose_job_stop_is_refused_still_ends_stopped_at_its_deadline(pipeline):
    """A throttled stop holds the run until the stop goes through, but not past its deadline's passes: there a
    refusal that is no throttling (access denied) is logged and the run ends."""
    pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"] = ["ThrottlingException"]
    run_id = pipeline.start_tuning(pipeline.drop_event())["run_id"]
    request_stop(runs(pipeline), run_id, why=WHY, by=BY)
    pipeline.sagemaker.fail["stop_hyper_parameter_tuning_job"] = ["ThrottlingException", "AccessDeniedException"]
    assert "ThrottlingException" in pipeline.reconcile(later(0))["errors"][run_id]
    assert pipeline.run(run_id)["status"] == "CLAIMED"
    assert pipeline.reconcile(later(2))["steps"][run_id] == "past deadline, stopped on request"
    assert_stopped_on_request(pipeline, run_id)
