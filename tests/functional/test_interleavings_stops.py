"""The outcome guarantee under events in any order with people's commands mixed in.

GIVEN the handlers and the reconciler on moto with one in-memory SageMaker, several versions of one object dropped
one after the other (distinct reviews, the same bytes again, a malformed file), their Object Created events delivered
in a random order, some twice, some late, some dead-lettered and some never; SageMaker's job events duplicated, late
or lost, some jobs failing on their own, some job starts throttled; reconciler passes between them.

WHEN people act at random points of that order: ``reviewtune runs stop`` (the request recorded, then the run's job
stopped at once) before a run exists, while it is CLAIMED, QUEUED, TUNING or EVALUATING, twice, or after it ended;
``reviewtune runs retry`` of runs that ended FAILED or STOPPED (sometimes twice, sometimes of a run that cannot be
retried), the copy's own Object Created event delivered at once, late, twice or never (the reconciler's listing of
incoming/ then claims it). Each seed is one interleaving, the same on every run (``random.Random(seed)``).

THEN, once every job has ended and the passes have nothing left to do: every object version, retry copies included,
has exactly one run, ended, each status it went through told once; a stop that was refused (no run yet, ended
already) changed nothing and said why; a run whose stop was recorded never succeeds nor is ever champion, and ends
STOPPED (FAILED when its job had failed on its own; REJECTED or DUPLICATE when its start, under way, found the file
so); a retried run keeps its outcome, told once, and its copy's run ends in its own outcome told once; a second retry
is refused with nothing copied; no slot held, no dead letter left; the champion pointer names a SUCCEEDED run, whose
package is the one Approved. tests/functional/test_interleavings.py has the same orders without people's commands.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import boto3
import pytest

from reviewtune.core import dead_letters, slots, states
from reviewtune.core.champion import champion_key
from reviewtune.core.retries import RETRYABLE, RetryError, retry_run
from reviewtune.core.runs import RunsRepository, no_such_run
from reviewtune.core.stop_requests import FAILED as STOP_FAILED
from reviewtune.core.stop_requests import NO_JOB, NOT_RUNNING, STOPPING, StopError, request_stop, stop_job_now
from reviewtune.core.tuning import DroppedObject, run_id_of
from tests.functional.pipeline import Pipeline
from tests.functional.test_crash_points import (
    DATASET,
    MALFORMED,
    deliver,
    evaluation_of,
    settled,
    told_per_run,
)
from tests.functional.test_interleavings import Interleaving
from tests.functional.test_retries import retried_event
from tests.support.aws import REGION

SEEDS = range(10)
KEY = f"incoming/{DATASET}"
BY = "arn:aws:iam::123456789012:user/ops"
WHY = "dropped by mistake"
JOB_FAILS = 0.3  # the share of jobs that fail on their own
NOT_YET = "no run yet"


class WithPeople(Interleaving):
    """test_interleavings.py's interleaving, with stops, retries, failing jobs and throttled starts among its steps."""

    passes = 24  # a retry's copy whose event never came waits for the listing of incoming/ (an hour's grace)

    def __init__(self, seed: int, pipeline: Pipeline):
        super().__init__(seed, pipeline)
        self.runs = RunsRepository(pipeline.clients.runs_table)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.job_events: list[tuple[str, str, str]] = []  # (kind, run id, status) of jobs ended, not told yet
        self.stops: dict[str, dict[str, Any]] = {}  # run id -> the run as it was when its stop was recorded
        self.retried: dict[str, tuple[str, str]] = {}  # run retried -> (its status then, the copy's run id)
        self.bodies: dict[str, bytes] = {}  # version id -> its bytes (retry copies included)
        self.champions: set[str] = set()  # every run the champion pointer named after any step
        self.run_ids: dict[str, str] = {}  # version id -> its run id

    # -- the steps ------------------------------------------------------------------------------------------

    def step(self) -> None:
        weighted = [(self.drop, 2 if self.to_drop else 0), (self.start, 3 if self.starts else 0),
                    (self.end_a_job, 1 if self.running() else 0), (self.tell_a_job, 2 if self.job_events else 0),
                    (self.pass_, 1), (self.stop, 1), (self.retry, 1 if self.versions else 0),
                    (self.throttle_a_start, 0.3)]
        actions, weights = zip(*weighted, strict=True)
        self.rng.choices(actions, weights)[0]()
        self.observe()

    def drop(self) -> None:
        super().drop()
        version, body = self.versions[-1]
        self.bodies[version] = body

    def running(self) -> list[tuple[str, str]]:
        sagemaker = self.pipeline.sagemaker
        going = ("InProgress", "Stopping")
        return [("tuning", name) for name, job in sagemaker.tuning.items() if job["status"] in going] + [
            ("evaluation", name) for name, job in sagemaker.processing.items() if job["status"] in going]

    def end_a_job(self) -> None:
        """SageMaker ends a job: one asked to stop ends Stopped, another Completed or, now and then, Failed."""
        kind, name = self.rng.choice(self.running())
        sagemaker = self.pipeline.sagemaker
        jobs = sagemaker.tuning if kind == "tuning" else sagemaker.processing
        if jobs[name]["status"] == "Stopping":
            status = "Stopped"
        else:
            status = "Failed" if self.rng.random() < JOB_FAILS else "Completed"
        if kind == "tuning" and status == "Completed":
            self.pipeline.finish_tuning_well(name)
        elif kind == "tuning":
            sagemaker.finish_tuning(name, status, failure="AlgorithmError: out of memory" if status == "Failed" else None)
        elif status == "Failed":
            sagemaker.finish_processing(name, "Failed", failure="AlgorithmError: out of memory")
        else:  # a stopped evaluation may have written its results already
            wrote = status == "Completed" or self.rng.random() < 0.5
            sagemaker.finish_processing(name, status, evaluation=evaluation_of(self.pipeline, name) if wrote else None)
        run_id = name.removesuffix("-eval")
        self.job_events += [(kind, run_id, status)] * self.rng.choice([0, 1, 1, 2])  # lost, told, told twice
        if status != "Stopped" and self.rng.random() < 0.25:  # a stop landing before anything read the job's end
            self.stop_run(run_id)

    def tell_a_job(self) -> None:
        kind, run_id, status = self.job_events.pop(self.rng.randrange(len(self.job_events)))
        if kind == "tuning":
            deliver(lambda: self.pipeline.tuning_ended(run_id, status))
        else:
            deliver(lambda: self.pipeline.evaluation_ended(run_id, status))

    def throttle_a_start(self) -> None:
        """SageMaker throttles the next CreateHyperParameterTuningJob: that run waits CLAIMED for the reconciler."""
        refusals = self.pipeline.sagemaker.fail["create_hyper_parameter_tuning_job"]
        if not refusals:
            refusals.append("ThrottlingException")

    def observe(self) -> None:
        pointer = self.pipeline.clients.runs_table.get_item(Key={"run_id": champion_key(DATASET)}).get("Item")
        if pointer and pointer.get("champion_run_id"):
            self.champions.add(pointer["champion_run_id"])

    # -- people ---------------------------------------------------------------------------------------------

    def known(self) -> dict[str, str]:
        """The run id of every version dropped or copied so far, with the state its run is in (NOT_YET: none,
        "final" for any final status; a TUNING or EVALUATING run whose job ended told apart)."""
        known = {}
        for version, _ in self.versions:
            run_id = self.run_id(version)
            status = self.status(run_id)
            known[run_id] = NOT_YET if status is None else ("final" if states.is_final(status) else status)
            job = self.job(run_id, status)
            if job is not None and job["status"] not in ("InProgress", "Stopping"):
                known[run_id] += ", its job ended"  # the step that reads the job's end is still to come
        return known

    def job(self, run_id: str, status: str | None) -> dict[str, Any] | None:
        """The SageMaker job a TUNING or EVALUATING run follows."""
        if status == "TUNING":
            return self.pipeline.sagemaker.tuning.get(run_id)
        return self.pipeline.sagemaker.processing.get(f"{run_id}-eval") if status == "EVALUATING" else None

    def status(self, run_id: str) -> str | None:
        item = self.pipeline.clients.runs_table.get_item(
            Key={"run_id": run_id}, ProjectionExpression="#s", ExpressionAttributeNames={"#s": "status"},
            ConsistentRead=True).get("Item")
        return None if item is None else item["status"]

    def run_id(self, version: str) -> str:
        if version in self.run_ids:
            return self.run_ids[version]
        head = self.s3.head_object(Bucket=self.pipeline.stack.bucket, Key=KEY, VersionId=version)
        obj = DroppedObject(self.pipeline.stack.bucket, KEY, version, head["ETag"].strip('"'), None)
        self.run_ids[version] = run_id_of(obj, self.pipeline.settings)
        return self.run_ids[version]

    def stop(self) -> None:
        """``reviewtune runs stop`` of a run in a state picked at random among those the runs are in; sometimes twice."""
        known = self.known()
        if not known:
            return
        present = sorted(set(known.values()))
        state = self.rng.choices(present, [0.5 if s == "final" else 1 if s == NOT_YET else 2 for s in present])[0]
        run_id = self.rng.choice(sorted(r for r, s in known.items() if s == state))
        for _ in range(self.rng.choice([1, 1, 2])):
            self.stop_run(run_id)

    def stop_run(self, run_id: str) -> None:
        before = self.runs.get(run_id)
        try:
            item = request_stop(self.runs, run_id, why=WHY, by=BY)
        except StopError as error:
            assert self.runs.get(run_id) == before, (run_id, str(error))  # refused: nothing written
            if before is None:
                assert str(error) == no_such_run(run_id), str(error)
            elif states.is_final(before["status"]):
                assert str(error) == f"run {run_id} is {before['status']} already: there is nothing to stop"
            else:
                assert "past its deadline" in str(error), str(error)
            return
        assert before is not None and not states.is_final(before["status"]), (run_id, before)
        if "stop_request" in before:  # a second request keeps the first
            assert item["stop_request"] == before["stop_request"]
        else:
            assert item["stop_request"]["by"] == BY
            self.stops[run_id] = before
        refused = self.rng.random() < 0.2  # SageMaker throttles the command's stop: the reconciler stops the job
        operation = "stop_hyper_parameter_tuning_job" if item["status"] == "TUNING" else "stop_processing_job"
        self.pipeline.sagemaker.fail[operation] = ["ThrottlingException"] if refused else []
        outcome, _ = stop_job_now(self.pipeline.sagemaker, item)
        self.pipeline.sagemaker.fail[operation] = []
        assert outcome in (STOPPING, NO_JOB, NOT_RUNNING, STOP_FAILED), outcome

    def retry(self) -> None:
        """``reviewtune runs retry`` of a run that ended FAILED or STOPPED (now and then of any other run): its copy's
        event delivered once, twice or never; sometimes the same command again at once."""
        known = [run_id for run_id, state in self.known().items() if state != NOT_YET]
        if not known:
            return
        ended = [r for r in known if self.status(r) in ("FAILED", "STOPPED")]
        pool = ended if ended and self.rng.random() < 0.8 else known
        run_id = self.rng.choice(sorted(pool))
        for _ in range(self.rng.choice([1, 1, 2])):
            self.retry_run(run_id)

    def retry_run(self, run_id: str) -> None:
        before, versions = self.runs.get(run_id), self.listed()
        try:
            retry = retry_run(self.runs, self.s3, run_id, why="the cause is fixed", by=BY, now=self.now)
        except RetryError as error:
            assert self.runs.get(run_id) == before and self.listed() == versions, (run_id, str(error))
            if run_id in self.retried:
                assert f"run {run_id} was retried already, as {self.retried[run_id][1]} " in str(error), str(error)
            elif not states.is_final(before["status"]):
                assert f"run {run_id} is {before['status']}: it has not ended" in str(error), str(error)
            elif before["status"] == "SUCCEEDED":
                assert "SUCCEEDED: its file would only end DUPLICATE of it" in str(error), str(error)
            return
        assert run_id not in self.retried and before["status"] in RETRYABLE, (run_id, before["status"])
        assert self.listed() == [retry.version_id, *versions]  # one new version, the key's latest
        self.retried[run_id] = (before["status"], retry.new_run_id)
        body = self.bodies[before["source"]["version_id"]]
        self.versions.append((retry.version_id, body))
        self.bodies[retry.version_id] = body
        assert self.run_id(retry.version_id) == retry.new_run_id
        self.starts += [retried_event(self.pipeline, retry)] * self.rng.choice([0, 1, 2])  # never, once, twice

    def listed(self) -> list[str]:
        """The versions of the key in S3, newest first."""
        listing = self.s3.list_object_versions(Bucket=self.pipeline.stack.bucket, Prefix=KEY)
        return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == KEY]

    # -- the end --------------------------------------------------------------------------------------------

    def done(self) -> bool:
        """Nothing is left for a pass to do, and every version has its run (a copy whose event never came too)."""
        known = self.known().values()
        return all(state == "final" for state in known) and settled(self.pipeline)


def failed_on_its_own(pipeline: Pipeline, run_id: str) -> bool:
    jobs = [pipeline.sagemaker.tuning.get(run_id), pipeline.sagemaker.processing.get(f"{run_id}-eval")]
    return any(job and job["status"] == "Failed" for job in jobs)


@pytest.mark.parametrize("seed", SEEDS)
def test_stops_and_retries_at_any_point_of_any_order_leave_each_version_one_outcome_told_once(
        stack, monkeypatch, seed):
    monkeypatch.setattr(dead_letters, "WAIT_SECONDS", 0)
    monkeypatch.setenv("MAX_CONCURRENT_RUNS", str(random.Random(seed).choice([1, 2])))
    pipeline = Pipeline(stack)
    interleaving = WithPeople(seed, pipeline)
    interleaving.run()
    assert interleaving.done()

    items = RunsRepository(pipeline.clients.runs_table).by_dataset(DATASET, limit=100)
    by_version = Counter(item["source"]["version_id"] for item in items)
    assert sorted(by_version) == sorted(interleaving.listed())  # every version in S3, retry copies included
    assert by_version == Counter(version for version, _ in interleaving.versions)  # one run each
    runs = {item["run_id"]: item for item in items}
    for expected, received in told_per_run(pipeline):
        assert sorted(received) == sorted(expected), (expected, received)

    for run_id, item in runs.items():
        body = interleaving.bodies[item["source"]["version_id"]]
        if run_id in interleaving.stops:
            asked_while = interleaving.stops[run_id]["status"]
            allowed = {"STOPPED"}
            if failed_on_its_own(pipeline, run_id):
                allowed.add("FAILED")
            if asked_while == "CLAIMED":  # its start, under way, may find the file so first
                allowed |= {"REJECTED"} if body == MALFORMED else {"DUPLICATE"}
            assert item["status"] in allowed, (run_id, asked_while, item["status"], allowed)
            assert item["stop_request"]["by"] == BY
        else:
            assert item["status"] != "STOPPED", (run_id, item.get("failure_reason"))
            assert "stop_request" not in item, (run_id, item["stop_request"])
        if body == MALFORMED:
            assert item["status"] in ("REJECTED", "STOPPED"), (run_id, item["status"])
        elif item["status"] == "FAILED":
            assert failed_on_its_own(pipeline, run_id), (run_id, item.get("failure_reason"))

    for run_id, (status, new_run_id) in interleaving.retried.items():
        assert runs[run_id]["status"] == status  # the retried run keeps its outcome
        assert runs[run_id]["retried"]["new_run_id"] == new_run_id
        assert runs[new_run_id]["retry_of"] == run_id  # whatever its end (a REJECTED copy: test_retries.py)
        assert states.is_final(runs[new_run_id]["status"])

    tuned = Counter(interleaving.bodies[item["source"]["version_id"]] for item in items if item["status"] == "SUCCEEDED")
    assert all(count == 1 for count in tuned.values()), tuned  # each content tuned to success once at most
    assert not slots.holders(pipeline.clients.runs_table)
    assert pipeline.stack.dead_letters() == 0

    succeeded = {run_id: item for run_id, item in runs.items() if item["status"] == "SUCCEEDED"}
    assert not interleaving.champions & set(interleaving.stops), interleaving.champions & set(interleaving.stops)
    assert interleaving.champions <= set(succeeded), interleaving.champions - set(succeeded)
    pointer = pipeline.clients.runs_table.get_item(Key={"run_id": champion_key(DATASET)}).get("Item")
    assert (pointer is not None) == bool(succeeded)
    approved = [package["ModelPackageArn"] for package in pipeline.sagemaker.packages()
                if package["ModelApprovalStatus"] == "Approved"]
    if pointer:
        assert approved == [succeeded[pointer["champion_run_id"]]["model_package_arn"]]
    else:
        assert approved == []
