"""The outcome guarantee, call by call: a function that dies right after any one of its AWS calls took effect, or
is refused (throttled) at it.

A file goes through the whole pipeline once with every AWS call made by the functions' code counted (the in-memory
SageMaker's included; tests/template/api_calls.py tells the functions' calls from the test's). Then, for each of those
calls in turn, the same file goes through again with a fault at that call (one run that forks at each such call: the
child takes the fault and goes on to the end, tests/functional/forking.py):

- a death: the call takes effect, then the function making it dies; its answer is lost and no except or finally
  clause of the function's own runs after it (``Died`` is not an ``Exception``, as a timeout or an out-of-memory kill
  is not);
- a refusal: the call does not happen and raises ThrottlingException, which the function's own code handles.

Lambda delivers the event again, up to three times in all (the idempotency record a dead invocation left in progress
may refuse those), then StartTuning's event goes to its dead-letter queue and the others are lost; the jobs end in
SageMaker meanwhile; the reconciler's passes, each later than the last, go on until nothing is left to do. Whatever
call it was, the object ends in exactly one run, SUCCEEDED (a moment's trouble is never a reason to fail a good
file), REJECTED for a malformed file, or FAILED when its tuning or evaluation job fails; no tuning slot stays taken,
the model lifecycle is what it is without the fault (registered once, the same champion decisions, the champion
pointer and package approvals), and one message tells each status; the one exception is the window the outbox
documents (outbox.py): a death right after SNS accepted the message and before it was marked sent, which sends the
same message twice. The same holds for two versions of one object meeting: one tuning slot between them (the second
queued, then promoted over the first), or the same bytes twice (one DUPLICATE); and for a file whose Object Created
event never came at all, which the reconciler's listing of incoming/ finds and takes to its end.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.core.base_backend import BackendDict

from reviewtune.core import dead_letters, slots, states
from reviewtune.core.champion import champion_key, list_champions
from reviewtune.core.runs import RunsRepository, dropped_unsent
from tests.functional import forking
from tests.functional.pipeline import Pipeline, measured
from tests.functional.test_record_results import EVALUATION
from tests.support.aws import create_stack
from tests.support.bad_inputs import good_file
from tests.support.faults import client_error
from tests.template import api_calls

DELIVERIES = 3  # an asynchronous invocation and Lambda's two retries
PASSES = 12  # reconciler passes after the events, each RECONCILER_STEP later than the last
RECONCILER_STEP = timedelta(minutes=20)
READS = ("Get", "Query", "Describe", "List", "Head")


class Died(BaseException):
    """The function's process ended right after a call took effect (a timeout, an out-of-memory kill)."""


DEATH, REFUSAL = "death", "refusal"


class Fault:
    """Counts the calls the functions' code makes (``calls``); at the ``at``-th one, the fault of its ``kind``."""

    def __init__(self, kind: str = DEATH, at: int | None = None):
        self.kind, self.at = kind, at
        self.calls: list[str] = []
        self.hit: str | None = None  # the call the fault hit
        self._target: dict[str, Any] | None = None

    def install(self, monkeypatch, *others: Any) -> None:
        monkeypatch.setattr(api_calls, "watchers", [self, *others])

    def before(self, call: dict[str, Any]) -> None:
        self.calls.append(f"{call['function']}: {call['service']}.{call['operation']}")
        if len(self.calls) == self.at:
            self.strike(self.at, call)

    def strike(self, at: int, call: dict[str, Any]) -> None:
        """The fault, at the ``at``-th call (``call``, counted already)."""
        self.at, self.hit = at, self.calls[at - 1]
        if self.kind == REFUSAL:
            raise client_error("ThrottlingException", "Rate exceeded (injected)", call["operation"])
        self._target = call

    def after(self, call: dict[str, Any], response: Any) -> None:
        if call is self._target:
            raise Died(self.hit)

    def publish_died(self) -> bool:
        """The fault was a death right after SNS took a message (the outbox's window: the message goes out again)."""
        return self.kind == DEATH and str(self.hit).endswith("sns.Publish")


def deliver(handler: Callable[[], Any]) -> bool:
    """One event as Lambda delivers it asynchronously: tried again after a death or an error, up to DELIVERIES."""
    for _ in range(DELIVERIES):
        try:
            handler()
            return True
        except (Exception, Died):  # noqa: BLE001 - Lambda retries whatever ended the invocation
            continue
    return False


DATASET = "a.tsv"  # the object every case drops (one version or two)


def run_ids(pipeline: Pipeline) -> list[str]:
    return sorted(item["run_id"] for item in RunsRepository(pipeline.clients.runs_table).by_dataset(DATASET, limit=50))


WELL, TUNING_FAILED, EVALUATION_FAILED = "well", "tuning failed", "evaluation failed"


def finish_jobs(pipeline: Pipeline, ending: str = WELL) -> None:
    """SageMaker ends what the runs started: every tuning job well (or Failed), every evaluation job with its
    evaluation.json (or Failed, with nothing written)."""
    for name, job in pipeline.sagemaker.tuning.items():
        if job["status"] == "InProgress":
            if ending == TUNING_FAILED:
                pipeline.sagemaker.finish_tuning(name, "Failed", failure="every training job failed")
            else:
                pipeline.finish_tuning_well(name)
    for name, job in pipeline.sagemaker.processing.items():
        if job["status"] == "InProgress":
            if ending == EVALUATION_FAILED:
                pipeline.sagemaker.finish_processing(name, "Failed", failure="AlgorithmError: out of memory")
            else:
                pipeline.sagemaker.finish_processing(name, evaluation=evaluation_of(pipeline, name))


def evaluation_of(pipeline: Pipeline, job_name: str) -> dict[str, Any]:
    """What the evaluation job writes: with a champion to measure, the challenger beats it by 3 points on the same
    test reviews (it is promoted)."""
    champion = pipeline.processing_argument(job_name.removesuffix("-eval"), "--champion-run-id")
    if champion is None:
        return EVALUATION
    return {**EVALUATION, "comparison": {"champion_run_id": champion, **measured(0.7412, 0.7112)}}


def drive(pipeline: Pipeline, fault: Fault, monkeypatch, *, events: bool, body: bytes | None = None,
          ending: str = WELL, versions: tuple[bytes | None, ...] = (None,), start_event: bool = True,
          forks: forking.ForkPoints | None = None) -> None:
    """The object dropped (``body``, a good file by default; or one version after the other of ``versions``),
    through the start events (``start_event``; else no event at all, not even dead-lettered), then (``events``)
    SageMaker's event for each job as it ends (as ``ending`` says), with ``fault`` watching every call; then the
    reconciler's passes. ``forks`` watches the calls after ``fault``."""
    fault.install(monkeypatch, *([forks] if forks else []))
    for version in versions:
        event = pipeline.drop_event(f"incoming/{DATASET}", body=version if version is not None else body)
        if start_event and not deliver(lambda event=event: pipeline.start_tuning(event)):
            pipeline.stack.dead_letter(event, "Died")
    if events:
        tell_job_ends(pipeline, ending)
    now = datetime.now(UTC)
    for _ in range(PASSES):
        if settled(pipeline):
            return
        now += RECONCILER_STEP
        finish_jobs(pipeline, ending)
        with contextlib.suppress(Died):  # a pass that died is followed by the next
            pipeline.reconcile(now)


def tell_job_ends(pipeline: Pipeline, ending: str) -> None:
    """Each job the runs start ends, and SageMaker's event for it is delivered, in the order they were started,
    until no new job is started (an ended run may start a queued one)."""
    tuning = "Failed" if ending == TUNING_FAILED else "Completed"
    evaluation = "Failed" if ending == EVALUATION_FAILED else "Completed"
    told: set[str] = set()
    while True:
        started = [(name, "tuning") for name in pipeline.sagemaker.tuning] + [
            (name, "evaluation") for name in pipeline.sagemaker.processing]
        waiting = [(name, kind) for name, kind in started if name not in told]
        if not waiting:
            return
        name, kind = waiting[0]
        told.add(name)
        finish_jobs(pipeline, ending)
        if kind == "tuning":
            deliver(lambda name=name: pipeline.tuning_ended(name, tuning))
        else:
            deliver(lambda name=name: pipeline.evaluation_ended(name.removesuffix("-eval"), evaluation))


def each_fault(stack: Any, monkeypatch, kind: str, calls: list[str], points: list[int],
               judge: Callable[[Pipeline, Fault], Any], **how: Any) -> dict[str, Any]:
    """The path of ``how`` (``drive``'s arguments) on a fresh stack of the same names (moto's accounts, buckets,
    tables, topics, queues) with a fault of ``kind`` at each of ``points`` in turn: what ``judge`` finds wrong at
    the end (None: nothing), by the call hit. The paths are one run that forks at each point (forking.py): up to
    the fault, each path must make the calls ``calls`` (those of the path without a fault) made."""
    fault = Fault(kind)

    def scenario(forks: forking.ForkPoints) -> tuple[str | None, Any]:
        BackendDict.reset()
        create_stack()
        pipeline = Pipeline(stack)
        drive(pipeline, fault, monkeypatch, forks=forks, **how)
        return fault.hit, judge(pipeline, fault)

    wrong = {}
    for at, answer in sorted(forking.sweep(points, fault.strike, scenario).items()):
        if answer.error:
            wrong[f"#{at} {calls[at - 1]}"] = answer.error
            continue
        hit, problem = answer.verdict
        if hit != calls[at - 1]:  # the same path up to the fault
            wrong[f"#{at} {calls[at - 1]}"] = f"the fault hit {hit}"
        elif problem is not None:
            wrong[f"#{at} {hit}"] = problem
    return wrong


def settled(pipeline: Pipeline) -> bool:
    """Nothing is left for a pass to do: every run final with its messages sent, no dead-lettered event waiting, no
    former champion's approval to settle."""
    runs = RunsRepository(pipeline.clients.runs_table)
    ids = run_ids(pipeline)
    return (
        bool(ids)
        and all(states.is_final(runs.get(run_id)["status"]) for run_id in ids)
        and not list(runs.with_pending_notice())
        and pipeline.stack.dead_letters() == 0
        and not any(champion.dethroned for champion in list_champions(pipeline.clients.runs_table))
    )


def crash_points(calls: list[str], *, events: bool, skip: tuple[str, ...] = ()) -> list[int]:
    """The calls to die after (1-based). With the events: the calls of the event handlers (the passes after them
    only read). Without: the calls of the reconciler's passes, which then do the work (the start event's calls are
    the same in both). A death after a read leaves what a death after the call before it leaves, so a read counts
    only as a function's first call; of a run of identical calls in a row (the split's files written one by one),
    only the first and the last. ``skip``: functions whose calls another case already covers (the start of a good
    file is the same whatever its jobs do later)."""
    points = []
    for index, call in enumerate(calls):
        function, operation = call.split(": ")[0], call.split(".")[-1]
        previous = calls[index - 1] if index else ""
        if (function == "reconcile") == events or function in skip:
            continue
        if operation.startswith(READS) and previous.startswith(f"{function}:"):
            continue
        if previous == call and index + 1 < len(calls) and calls[index + 1] == call:
            continue
        points.append(index + 1)
    return points


def outcome(pipeline: Pipeline) -> tuple[list[str], list[str], list[str]]:
    """The runs of the dropped file, their statuses and the statuses their messages told."""
    ids = run_ids(pipeline)
    return ids, [pipeline.run(i)["status"] for i in ids], [s for i in ids for s in pipeline.statuses_told(i)]


def one_outcome(expected: str, lifecycle_before: Any) -> Callable[[Pipeline, Fault], Any]:
    """each_fault's judge of a path that ends in one run: what is wrong with the run's status, its messages, the slots
    or the model lifecycle (None: nothing)."""

    def judge(pipeline: Pipeline, fault: Fault) -> Any:
        runs, statuses, told = outcome(pipeline)
        # SNS took the message, its sender died before marking it sent: once the lease is over, it is sent again
        expected_told = [expected] * (2 if fault.publish_died() else 1)
        held = slots.holders(pipeline.clients.runs_table)
        if len(runs) != 1 or statuses != [expected] or told != expected_told or held:
            return statuses, told, held
        if lifecycle(pipeline) != lifecycle_before:  # nothing of the model lifecycle is lost
            return lifecycle(pipeline)
        return None

    return judge


# A file whose row 11 has a label that is not -1, 0 or 1: rejected, with a copy and the reason kept.
MALFORMED = b"".join([*good_file().splitlines(keepends=True)[:11], b"7\tseven is no label\n",
                      *good_file().splitlines(keepends=True)[11:]])


@pytest.mark.parametrize(
    ("kind", "body", "events", "ending", "expected"),
    [
        (DEATH, None, False, WELL, "SUCCEEDED"),
        (DEATH, MALFORMED, True, WELL, "REJECTED"),
        (REFUSAL, None, False, WELL, "SUCCEEDED"),
        (REFUSAL, MALFORMED, True, WELL, "REJECTED"),
        (DEATH, None, True, TUNING_FAILED, "FAILED"),
        (DEATH, None, False, TUNING_FAILED, "FAILED"),
        (REFUSAL, None, True, TUNING_FAILED, "FAILED"),
        (DEATH, None, True, EVALUATION_FAILED, "FAILED"),
        (DEATH, None, False, EVALUATION_FAILED, "FAILED"),
        (REFUSAL, None, True, EVALUATION_FAILED, "FAILED"),
    ],
    ids=[
        "death, good file, SageMaker's events lost",
        "death, malformed file",
        "refusal, good file, SageMaker's events lost",
        "refusal, malformed file",
        "death, tuning job failed",
        "death, tuning job failed, SageMaker's events lost",
        "refusal, tuning job failed",
        "death, evaluation job failed",
        "death, evaluation job failed, SageMaker's events lost",
        "refusal, evaluation job failed",
    ],
)
def test_a_fault_at_any_call_still_ends_the_file_in_one_outcome_told_once(
    stack, monkeypatch, kind, body, events, ending, expected
):
    monkeypatch.setattr(dead_letters, "WAIT_SECONDS", 0)  # one moto server holds every message: no need to wait
    happy = Fault(kind)
    pipeline = Pipeline(stack)
    drive(pipeline, happy, monkeypatch, events=events, body=body, ending=ending)
    assert outcome(pipeline)[1:] == ([expected], [expected])
    lifecycle_before = lifecycle(pipeline)
    # a failed job's path starts as a good file's does: that part is covered by the cases that end well (below)
    covered = {WELL: (), TUNING_FAILED: ("start_tuning",), EVALUATION_FAILED: ("start_tuning", "start_evaluation")}
    points = crash_points(happy.calls, events=events, skip=covered[ending])
    assert len(points) > 3

    judge = one_outcome(expected, lifecycle_before)
    wrong = each_fault(stack, monkeypatch, kind, happy.calls, points, judge, events=events, body=body, ending=ending)
    assert wrong == {}, "\n".join(f"{k}: {v}" for k, v in wrong.items())


@pytest.mark.parametrize("kind", [DEATH, REFUSAL])
def test_a_fault_at_any_call_of_the_reconciler_taking_a_drop_whose_event_never_came_to_its_end(
    stack, monkeypatch, kind
):
    """No event at all: neither the file's Object Created event (not even dead-lettered) nor SageMaker's. The
    reconciler's listing of incoming/ finds the file an hour later, claims its run, starts it over and takes it to its
    end; a fault at any of its calls on the way still ends the file in one run, SUCCEEDED, told once."""
    monkeypatch.setattr(dead_letters, "WAIT_SECONDS", 0)
    happy = Fault(kind)
    pipeline = Pipeline(stack)
    drive(pipeline, happy, monkeypatch, events=False, start_event=False)
    assert outcome(pipeline)[1:] == (["SUCCEEDED"], ["SUCCEEDED"])
    assert pipeline.run(run_ids(pipeline)[0])["found_by_sweep"]
    lifecycle_before = lifecycle(pipeline)
    points = crash_points(happy.calls, events=False)
    # the pass that lists incoming/ writes the claim: its first write (reads after a function's first call are no
    # points: a death after one leaves what a death after the call before it leaves)
    listing = happy.calls.index("reconcile: s3.ListObjectVersions")
    claim = next(i for i in range(listing, len(happy.calls)) if happy.calls[i] == "reconcile: dynamodb.PutItem")
    assert claim + 1 in points

    judge = one_outcome("SUCCEEDED", lifecycle_before)
    wrong = each_fault(stack, monkeypatch, kind, happy.calls, points, judge, events=False, start_event=False)
    assert wrong == {}, "\n".join(f"{k}: {v}" for k, v in wrong.items())


SHARED_SLOT = {"versions": (good_file(20), good_file(21)), "told": [["QUEUED", "SUCCEEDED"], ["SUCCEEDED"]], "skip": ()}
# After the two starts, the tuned version's path is the slot case's first version's: only the starts are swept.
SAME_CONTENT = {"versions": (good_file(20), good_file(20)), "told": [["DUPLICATE"], ["SUCCEEDED"]],
                "skip": ("start_evaluation", "record_results")}


@pytest.mark.parametrize(
    ("kind", "case"),
    [(DEATH, SHARED_SLOT), (REFUSAL, SHARED_SLOT), (DEATH, SAME_CONTENT), (REFUSAL, SAME_CONTENT)],
    ids=[
        "death, two files, one slot",
        "refusal, two files, one slot",
        "death, the same content dropped twice",
        "refusal, the same content dropped twice",
    ],
)
def test_a_fault_at_any_call_while_two_files_meet_still_ends_each_in_one_outcome(stack, monkeypatch, kind, case):
    """Two versions of one object with other reviews and one tuning slot: the second waits (QUEUED, told so) until the
    first run ends and starts it, and is measured against it as champion and promoted. Or the same bytes
    twice: one version is tuned, the other is a DUPLICATE of it (which of the two depends on which start got through
    first). A fault anywhere on that path, the hand-over of the slot included, leaves each version one run, told once
    of each status it went through, no slot taken, and the same registry and champion outcome as without it."""
    monkeypatch.setattr(dead_letters, "WAIT_SECONDS", 0)
    monkeypatch.setenv("MAX_CONCURRENT_RUNS", "1")
    happy = Fault(kind)
    pipeline = Pipeline(stack)
    assert pipeline.settings.max_concurrent_runs == 1
    drive(pipeline, happy, monkeypatch, events=True, versions=case["versions"])
    assert sorted(told_per_run(pipeline)) == [(told, told) for told in case["told"]]
    lifecycle_before = lifecycle(pipeline)
    runs, champion, packages = lifecycle_before
    decisions = [decision for status, _, decision in runs if status == "SUCCEEDED"]
    assert decisions.count("first champion") == 1 and all(decisions), lifecycle_before
    # one Approved package, the champion's: one replaced goes back to pending (README "Champion")
    assert packages == ["Approved"] + ["PendingManualApproval"] * (len(decisions) - 1) and champion == decisions[-1]
    finals = sorted(told[-1] for told in case["told"])
    points = crash_points(happy.calls, events=True, skip=case["skip"])
    assert len(points) >= 20

    def judge(pipeline: Pipeline, fault: Fault) -> Any:
        runs = told_per_run(pipeline)
        missing = sum(((Counter(expected) - Counter(received)).total() for expected, received in runs))
        extra = sum(((Counter(received) - Counter(expected)).total() for expected, received in runs))
        duplicate = fault.publish_died()  # the outbox's window, as above
        held = slots.holders(pipeline.clients.runs_table)
        if sorted(expected[-1] for expected, _ in runs) != finals or missing or extra > duplicate or held:
            return runs, held
        if lifecycle(pipeline) != lifecycle_before:
            return lifecycle(pipeline)
        return None

    wrong = each_fault(stack, monkeypatch, kind, happy.calls, points, judge, events=True, versions=case["versions"])
    assert wrong == {}, "\n".join(f"{k}: {v}" for k, v in wrong.items())


def lifecycle(pipeline: Pipeline) -> tuple[list[tuple[Any, ...]], str | None, list[str]]:
    """Each run's status, model registry error and champion decision; the decision of the run the dataset's champion
    pointer names; the approval status of every model package registered (one per succeeded run)."""
    items = {run_id: pipeline.run(run_id) for run_id in run_ids(pipeline)}
    runs = sorted(
        (item["status"], item.get("registry", {}).get("error"), item.get("champion", {}).get("decision"))
        for item in items.values()
    )
    pointer = pipeline.clients.runs_table.get_item(Key={"run_id": champion_key(DATASET)}).get("Item", {})
    champion = items.get(pointer.get("champion_run_id"), {}).get("champion", {}).get("decision")
    return runs, champion, sorted(package.get("ModelApprovalStatus", "") for package in pipeline.sagemaker.packages())


def told_per_run(pipeline: Pipeline) -> list[tuple[list[str], list[str]]]:
    """For each run of the dropped files: the statuses it is to tell (QUEUED if it waited, unless that notice was
    still unsent when the run started, which drops it: runs.supersede_notice; then its status) and those its
    messages told."""
    runs = RunsRepository(pipeline.clients.runs_table)
    return [
        ((["QUEUED"] if "QUEUED" in item.get("status_history", {})
          and not dropped_unsent((item.get("outbox") or {}).get("QUEUED") or {}) else [])
         + [item["status"]], pipeline.statuses_told(item["run_id"]))
        for item in runs.by_dataset(DATASET, limit=50)
    ]
