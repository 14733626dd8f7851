"""MaxConcurrentRuns under contention: many runs take and give back slots at once, against DynamoDB on a moto server.

Each thread is a stream of runs (its own boto3 session and HTTP connection, as separate Lambda invocations would
be). A run that gets a slot repeats its acquire (a retried step), holds the slot a moment, and releases it twice (a
replayed end); a run that finds every slot taken gives back the slot it never had (a failure path does). Counting
the holders on the client side can only under-count the table's set (a holder counts itself after its acquire
returned and stops counting before its release is sent), so a peak above the limit there is a real excess.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from reviewtune.core import slots
from reviewtune.local.moto_server import MotoServer
from tests.support.aws import REGION, table_properties

LIMIT = 3
THREADS = 16
RUNS_PER_THREAD = 6


@pytest.fixture
def moto_url(monkeypatch) -> Iterator[str]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with MotoServer() as server:
        yield server.url


def _table(url: str) -> Any:
    """A runs table handle of its own (boto3 sessions and resources are not shared between threads)."""
    config = Config(retries={"max_attempts": 1}, connect_timeout=30, read_timeout=120)
    return boto3.Session().resource("dynamodb", endpoint_url=url, region_name=REGION, config=config).Table("runs")


class Holders:
    """The runs holding a slot, as the threads see it, and the most there ever were at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


def test_concurrent_runs_never_hold_more_slots_than_the_limit_and_leave_none_behind(moto_url):
    # GIVEN the runs table, and THREADS streams of runs ready to start together
    boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION).create_table(
        TableName="runs", **table_properties("RunsTable")
    )
    tables = [_table(moto_url) for _ in range(THREADS + 1)]
    holders = Holders()
    outcomes: Counter[str] = Counter()
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()
    seen_in_table: list[int] = []

    def runs(index: int) -> None:
        table, chance = tables[index], random.Random(index)
        start.wait()
        for number in range(RUNS_PER_THREAD):
            run_id = f"run-{index:02d}-{number}"
            try:
                taken = slots.acquire(table, run_id, LIMIT)
                if taken:
                    holders.enter()
                    assert slots.acquire(table, run_id, LIMIT), "a holder's retried acquire must keep its slot"
                    time.sleep(chance.uniform(0.0, 0.02))
                    holders.leave()
                    slots.release(table, run_id)
                    slots.release(table, run_id)
                else:
                    assert run_id not in slots.holders(table), "a refused run must not hold a slot"
                    slots.release(table, run_id)
                outcomes["taken" if taken else "full"] += 1
            except BaseException as error:  # reported below, with the outcomes
                errors.append(error)
                outcomes["error"] += 1

    def watch() -> None:
        table = tables[THREADS]
        start.wait()
        while not done.wait(0.005):
            seen_in_table.append(len(slots.holders(table)))

    # WHEN they all take and give back slots at once
    threads = [threading.Thread(target=runs, args=(i,)) for i in range(THREADS)]
    watcher = threading.Thread(target=watch)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    done.set()
    watcher.join(timeout=60)

    # THEN every acquire either took a slot or was told the slots are full, never more than LIMIT were held at
    # once, the limit was reached (the runs did contend), and no slot is left taken
    assert errors == [], errors[:3]
    assert not any(thread.is_alive() for thread in threads)
    assert outcomes["taken"] + outcomes["full"] == THREADS * RUNS_PER_THREAD
    assert outcomes["full"] > 0 and outcomes["taken"] >= LIMIT, outcomes
    assert holders.peak <= LIMIT, f"{holders.peak} runs held a slot at once; the limit is {LIMIT}"
    assert seen_in_table and max(seen_in_table) <= LIMIT, max(seen_in_table, default=None)
    assert holders.peak == LIMIT, holders.peak
    assert slots.holders(tables[0]) == set()
