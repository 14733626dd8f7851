"""The outcome guarantee under events in any order: several versions of one object (distinct reviews, the same bytes
again, a malformed file) dropped one after the other, their Object Created events delivered in a random order, some
twice, some late (after the versions that followed, after the runs they concern moved on), some dead-lettered and
some never; SageMaker's job events likewise, duplicated, late or lost, with one or two tuning slots; reconciler
passes between them. Each seed is one interleaving, the same on every run (``random.Random(seed)``).

Whatever the order, once the jobs end and the passes have nothing left to do: one run per version, REJECTED for the
malformed file, DUPLICATE for each repeat of bytes tuned already, SUCCEEDED for every other; each run tells each status
it went through once (QUEUED as told_per_run says); no slot held, no dead letter left; one package Approved, the
champion's. Faults at single calls are tests/functional/test_crash_points.py's.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reviewtune.core import dead_letters, slots
from reviewtune.core.champion import champion_key
from reviewtune.core.runs import RunsRepository
from tests.functional.pipeline import Pipeline
from tests.functional.test_crash_points import (
    DATASET,
    MALFORMED,
    PASSES,
    RECONCILER_STEP,
    deliver,
    evaluation_of,
    settled,
    told_per_run,
)
from tests.support.bad_inputs import good_file

SEEDS = range(10)
STEPS = 30  # random steps before the end, where every job ends and the passes run until nothing is left


class Interleaving:
    passes = PASSES  # reconciler passes at the end at most, each RECONCILER_STEP later than the last

    def __init__(self, seed: int, pipeline: Pipeline):
        self.rng, self.pipeline = random.Random(seed), pipeline
        self.now = datetime.now(UTC)
        self.versions: list[tuple[str, bytes]] = []  # (version id, body) in the order dropped
        self.starts: list[dict[str, Any]] = []  # start events not delivered yet (a copy may stay for later)
        self.job_events: list[tuple[str, str]] = []  # (kind, run id) of jobs ended, not told yet
        bodies: list[bytes] = []
        for n in range(self.rng.randint(3, 5)):
            choice = self.rng.random()
            if choice < 0.2:
                bodies.append(MALFORMED)
            elif choice < 0.45 and bodies:
                bodies.append(self.rng.choice(bodies))  # the same bytes again
            else:
                bodies.append(good_file(20 + n))
        self.to_drop = bodies

    def step(self) -> None:
        weighted = [(self.drop, 2 if self.to_drop else 0), (self.start, 3 if self.starts else 0),
                    (self.end_a_job, 1 if self.running() else 0), (self.tell_a_job, 2 if self.job_events else 0),
                    (self.pass_, 1)]
        actions, weights = zip(*weighted, strict=True)
        self.rng.choices(actions, weights)[0]()

    def drop(self) -> None:
        body = self.to_drop.pop(0)
        event = self.pipeline.drop_event(f"incoming/{DATASET}", body=body)
        self.versions.append((event["detail"]["object"]["version-id"], body))
        fate = self.rng.random()
        if fate < 0.1:
            self.pipeline.stack.dead_letter(event, "Died")
        elif fate < 0.9:  # else never delivered: the listing of incoming/ finds the version
            self.starts += [event] * self.rng.choice([1, 1, 2])

    def start(self) -> None:
        event = self.starts.pop(self.rng.randrange(len(self.starts)))
        if not deliver(lambda: self.pipeline.start_tuning(event)):
            self.pipeline.stack.dead_letter(event, "Died")

    def running(self) -> list[tuple[str, str]]:
        sagemaker = self.pipeline.sagemaker
        return [("tuning", name) for name, job in sagemaker.tuning.items() if job["status"] == "InProgress"] + [
            ("evaluation", name) for name, job in sagemaker.processing.items() if job["status"] == "InProgress"]

    def end_a_job(self) -> None:
        kind, name = self.rng.choice(self.running())
        if kind == "tuning":
            self.pipeline.finish_tuning_well(name)
        else:
            self.pipeline.sagemaker.finish_processing(name, evaluation=evaluation_of(self.pipeline, name))
        run_id = name.removesuffix("-eval")
        self.job_events += [(kind, run_id)] * self.rng.choice([0, 1, 1, 2])  # lost, told, told twice

    def tell_a_job(self) -> None:
        kind, run_id = self.job_events.pop(self.rng.randrange(len(self.job_events)))
        if kind == "tuning":
            deliver(lambda: self.pipeline.tuning_ended(run_id))
        else:
            deliver(lambda: self.pipeline.evaluation_ended(run_id))

    def pass_(self) -> None:
        self.now += timedelta(minutes=self.rng.choice([1, 2, 5]))
        self.pipeline.reconcile(self.now)

    def done(self) -> bool:
        """Nothing is left for a pass to do."""
        return settled(self.pipeline)

    def observe(self) -> None:
        """After each step of the end (a subclass watches what the steps leave)."""

    def run(self) -> None:
        for _ in range(STEPS):
            self.step()
        while self.to_drop:
            self.drop()
        self.rng.shuffle(self.starts)
        for event in self.starts:  # late, in any order
            deliver(lambda event=event: self.pipeline.start_tuning(event))
        self.starts = []
        self.observe()
        for _ in range(self.passes):
            if self.done():
                return
            while self.running() or self.job_events:
                if self.running():
                    self.end_a_job()
                while self.job_events:
                    self.tell_a_job()
                self.observe()
            self.now += RECONCILER_STEP
            with contextlib.suppress(Exception):  # a pass that raised is followed by the next
                self.pipeline.reconcile(self.now)
            self.observe()


@pytest.mark.parametrize("seed", SEEDS)
def test_versions_whose_events_come_in_any_order_each_end_in_one_outcome_told_once(stack, monkeypatch, seed):
    monkeypatch.setattr(dead_letters, "WAIT_SECONDS", 0)
    monkeypatch.setenv("MAX_CONCURRENT_RUNS", str(random.Random(seed).choice([1, 2])))
    pipeline = Pipeline(stack)
    interleaving = Interleaving(seed, pipeline)
    interleaving.run()
    assert settled(pipeline)

    items = RunsRepository(pipeline.clients.runs_table).by_dataset(DATASET, limit=50)
    by_version = Counter(item["source"]["version_id"] for item in items)
    assert by_version == Counter(version for version, _ in interleaving.versions)  # one run per version
    status = {item["source"]["version_id"]: item["status"] for item in items}
    good = [body for _, body in interleaving.versions if body != MALFORMED]
    assert sorted(status.values()) == sorted(
        ["REJECTED"] * (len(interleaving.versions) - len(good)) + ["SUCCEEDED"] * len(set(good))
        + ["DUPLICATE"] * (len(good) - len(set(good))))
    assert [status[version] for version, body in interleaving.versions if body == MALFORMED] == ["REJECTED"] * (
        len(interleaving.versions) - len(good))
    tuned = Counter(body for version, body in interleaving.versions if status[version] == "SUCCEEDED")
    assert tuned == Counter(set(good))  # each distinct file tuned once, its repeats DUPLICATE
    for expected, received in told_per_run(pipeline):
        assert sorted(received) == sorted(expected), (expected, received)
    assert not slots.holders(pipeline.clients.runs_table)
    assert pipeline.stack.dead_letters() == 0

    succeeded = {item["run_id"]: item for item in items if item["status"] == "SUCCEEDED"}
    pointer = pipeline.clients.runs_table.get_item(Key={"run_id": champion_key(DATASET)}).get("Item")
    assert (pointer is not None) == bool(succeeded)
    if pointer:
        champion = succeeded[pointer["champion_run_id"]]
        approved = [package["ModelPackageArn"] for package in pipeline.sagemaker.packages()
                    if package["ModelApprovalStatus"] == "Approved"]
        assert approved == [champion["model_package_arn"]]
