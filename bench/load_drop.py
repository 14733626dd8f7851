"""Many files dropped at once on the local runtime: every run ends, the spend guard holds, no message is lost.

Starts the local runtime (moto, the local SageMaker service, the stack of template.yaml) with ``MaxConcurrentRuns``
overridden and a tiny training budget (all-MiniLM-L6-v2, one trial, 2 training steps, length 32), subscribes an SQS
queue to the topic, drops N small valid files of distinct content at the same moment, samples the runs table every
second until every run is final, and prints one table: runs succeeded, the most runs TUNING or EVALUATING at once
(sampled, and exactly from each run's ``status_history``), the messages received and whether any is missing or
repeated.

    python bench/load_drop.py                  # 20 files, MaxConcurrentRuns 2
    python bench/load_drop.py --files 8 --max-concurrent-runs 3

Exits 1 when a run did not succeed, the limit was exceeded or a message is missing or repeated.
``tests/e2e/test_load.py`` runs a smaller version (5 files).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from reviewtune.budget import SAMPLE_MODEL, Budget  # noqa: E402
from reviewtune.core import names, states  # noqa: E402
from reviewtune.core.runs import RunsRepository, dropped_unsent, parse_iso  # noqa: E402
from reviewtune.sample_data import sample_tsv  # noqa: E402

ROWS_PER_CLASS = 40
# One trial of two training steps on a tiny model: the load, not the training, is measured.
TINY_STATIC = {"train_steps_per_epoch": 2, "validation_steps_per_epoch": 1, "train_batch_size": 8, "pooling": "mean"}
RECONCILE_PERIOD_S = 5.0  # the local reconciler: a queued run whose start was missed waits at most this long
ACTIVE = (states.RunStatus.TUNING.value, states.RunStatus.EVALUATING.value)
SUBSCRIBER_QUEUE = "reviewtune-load-subscriber"


def load_parameters(max_concurrent_runs: int) -> dict[str, str]:
    """Template parameter overrides: the tiny budget and the concurrency limit."""
    budget = Budget(
        max_jobs=1,
        max_parallel_jobs=1,
        epochs=1,
        max_seq_length=32,
        strategy="Random",
        ranges={"learning_rate": {"min": 5e-5, "max": 2e-4, "scaling": "Logarithmic"}},
        static=dict(TINY_STATIC),
        model=SAMPLE_MODEL,
    )
    return {**budget.parameters(), "MaxConcurrentRuns": str(max_concurrent_runs)}


def load_files(count: int, rows_per_class: int = ROWS_PER_CLASS) -> list[tuple[str, bytes]]:
    """``count`` small valid files, each of other reviews (another seed of the sample), so none is a DUPLICATE."""
    return [
        (f"incoming/load/reviews-{i:03d}.tsv", sample_tsv(per_class=rows_per_class, seed=1000 + i))
        for i in range(count)
    ]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most half-open intervals [start, end) covering one instant (an end before a start at the same time)."""
    events = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def active_interval(item: dict[str, Any]) -> tuple[float, float] | None:
    """When a run held a tuning or evaluation job: from entering TUNING to entering its final state."""
    history = item.get("status_history") or {}
    if states.RunStatus.TUNING.value not in history:
        return None
    start = parse_iso(history[states.RunStatus.TUNING.value]).timestamp()
    ends = [parse_iso(history[s]).timestamp() for s in states.FINAL_STATUSES if s in history]
    return start, min(ends) if ends else float("inf")


@dataclass
class LoadReport:
    files: int
    max_concurrent_runs: int
    final: dict[str, str] = field(default_factory=dict)  # run id -> final status
    queued: set[str] = field(default_factory=set)  # runs that went through QUEUED and owe its notice
    max_active_sampled: int = 0
    max_active_history: int = 0
    samples: int = 0
    told: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # run id -> statuses received
    unknown_messages: int = 0
    seconds: float = 0.0
    timed_out: bool = False

    @property
    def succeeded(self) -> int:
        return sum(1 for s in self.final.values() if s == states.RunStatus.SUCCEEDED)

    @property
    def messages(self) -> int:
        return sum(len(v) for v in self.told.values()) + self.unknown_messages

    def expected_messages(self, run_id: str) -> list[str]:
        """What the run must have told: "queued" when it waited, then its outcome."""
        queued = [states.RunStatus.QUEUED.value] if run_id in self.queued else []
        return [*queued, self.final[run_id]] if run_id in self.final else queued

    def message_problems(self) -> list[str]:
        problems = []
        for run_id in sorted(set(self.final) | set(self.told)):
            expected, got = sorted(self.expected_messages(run_id)), sorted(self.told.get(run_id, []))
            if expected != got:
                problems.append(f"{run_id}: expected {expected}, received {got}")
        if self.unknown_messages:
            problems.append(f"{self.unknown_messages} message(s) of no dropped run")
        return problems

    def problems(self) -> list[str]:
        problems = []
        if self.timed_out:
            problems.append(f"{self.files - len(self.final)} run(s) not final in time")
        problems += [f"{run_id} ended {status}" for run_id, status in self.final.items() if status != "SUCCEEDED"]
        if max(self.max_active_sampled, self.max_active_history) > self.max_concurrent_runs:
            problems.append(
                f"{max(self.max_active_sampled, self.max_active_history)} runs were active at once, "
                f"more than MaxConcurrentRuns {self.max_concurrent_runs}"
            )
        return problems + self.message_problems()

    def rows(self) -> list[tuple[str, str]]:
        lost = sum(
            max(0, len(self.expected_messages(r)) - len(self.told.get(r, []))) for r in set(self.final) | set(self.told)
        )
        extra = sum(
            max(0, len(self.told.get(r, [])) - len(self.expected_messages(r))) for r in self.told
        ) + self.unknown_messages
        return [
            ("files dropped at once", str(self.files)),
            ("MaxConcurrentRuns", str(self.max_concurrent_runs)),
            ("runs final / SUCCEEDED", f"{len(self.final)} / {self.succeeded}"),
            ("runs that waited QUEUED", str(len(self.queued))),
            ("max TUNING+EVALUATING at once, sampled every 1 s", f"{self.max_active_sampled} ({self.samples} samples)"),
            ("max TUNING+EVALUATING at once, from status_history", str(self.max_active_history)),
            ("messages received (queued + final)", f"{self.messages} (expected {self.expected_total()})"),
            ("messages lost / repeated or stray", f"{lost} / {extra}"),
            ("wall time", f"{self.seconds:.0f} s"),
            ("result", "OK" if not self.problems() else "; ".join(self.problems())[:500]),
        ]

    def expected_total(self) -> int:
        return sum(len(self.expected_messages(r)) for r in self.final)


class Subscriber:
    """An SQS queue subscribed to the topic (as `reviewtune run` does); messages kept by SNS message id."""

    def __init__(self, runtime: Any, queue_name: str = SUBSCRIBER_QUEUE):
        self.sqs = runtime.client("sqs")
        self.url = self.sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        runtime.client("sns").subscribe(
            TopicArn=runtime.stack.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=arn
        )
        self.received: dict[str, dict[str, Any]] = {}  # an SQS redelivery of one SNS message counts once

    def drain(self, wait_s: int = 0) -> None:
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
            ).get("Messages", [])
            for message in batch:
                body = json.loads(message["Body"])
                self.received.setdefault(body["MessageId"], body)
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            if len(batch) < 10:
                return


def drop_all(runtime: Any, files: list[tuple[str, bytes]]) -> list[str]:
    """Put every file at the same moment (one thread each); returns the run ids their versions become."""
    bucket = runtime.stack.outputs["DataBucketName"]
    prefix = runtime.parameters.get("JobNamePrefix", "reviewtune")

    def put(entry: tuple[str, bytes]) -> str:
        key, body = entry
        response = runtime.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
        identity = names.object_identity(bucket, key, response.get("VersionId"), response.get("ETag"))
        return names.tuning_job_name(prefix, identity)

    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        return list(pool.map(put, files))


def watch(runtime: Any, run_ids: list[str], report: LoadReport, subscriber: Subscriber, timeout_s: float) -> None:
    """Sample the runs every second until all are final and their messages are in (or ``timeout_s`` passed)."""
    runs = RunsRepository(runtime.table(runtime.stack.outputs["RunsTableName"]))
    started = time.monotonic()
    deadline = started + timeout_s
    items: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        tick = time.monotonic()
        for run_id in run_ids:
            item = runs.get(run_id)
            if item is not None:
                items[run_id] = item
        report.samples += 1
        report.max_active_sampled = max(
            report.max_active_sampled, sum(1 for i in items.values() if i["status"] in ACTIVE)
        )
        subscriber.drain()
        _tally(report, items, subscriber)
        if len(report.final) == len(run_ids) and not report.message_problems():
            break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    else:
        report.timed_out = len(report.final) < len(run_ids)
    subscriber.drain(wait_s=2)  # a repeated message would come now: the last sends are done
    _tally(report, items, subscriber)
    intervals = [i for i in (active_interval(item) for item in items.values()) if i is not None]
    report.max_active_history = max_overlap(intervals)
    report.seconds = time.monotonic() - started


def _tally(report: LoadReport, items: dict[str, dict[str, Any]], subscriber: Subscriber) -> None:
    report.final = {r: i["status"] for r, i in items.items() if states.is_final(i["status"])}
    # runs told "queued": every run that waited, but one that started before its notice went out (dropped unsent)
    report.queued = {r for r, i in items.items() if states.RunStatus.QUEUED.value in (i.get("status_history") or {})
                     and not dropped_unsent((i.get("outbox") or {}).get(states.RunStatus.QUEUED.value) or {})}
    report.told = defaultdict(list)
    report.unknown_messages = 0
    for message in subscriber.received.values():
        attributes = message.get("MessageAttributes") or {}
        run_id = (attributes.get("run_id") or {}).get("Value")
        if run_id in items:
            report.told[run_id].append(attributes["status"]["Value"])
        else:
            report.unknown_messages += 1


def run_load(
    files: int = 20,
    max_concurrent_runs: int = 2,
    *,
    workdir: Path | None = None,
    total_cpus: int | None = 2,
    timeout_s: float = 3600.0,
    rows_per_class: int = ROWS_PER_CLASS,
) -> LoadReport:
    """Start the local runtime, drop ``files`` files at once, wait for every run and its messages."""
    from reviewtune.local.runtime import LocalRuntime

    report = LoadReport(files=files, max_concurrent_runs=max_concurrent_runs)
    with tempfile.TemporaryDirectory(prefix="reviewtune-load-") as scratch:
        runtime = LocalRuntime(
            workdir=Path(workdir or scratch) / "runtime",
            template=REPO / "template.yaml",
            parameters=load_parameters(max_concurrent_runs),
            total_cpus=total_cpus,
            schedule_period_s=RECONCILE_PERIOD_S,
        )
        with runtime:
            subscriber = Subscriber(runtime)
            run_ids = drop_all(runtime, load_files(files, rows_per_class))
            watch(runtime, run_ids, report, subscriber, timeout_s)
    return report


def print_report(report: LoadReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.files} files dropped at once, MaxConcurrentRuns {report.max_concurrent_runs}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in report.rows():
        table.add_row(name, value)
    Console(highlight=False).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20, help="files dropped at once (default 20)")
    parser.add_argument("--max-concurrent-runs", type=int, default=2, help="the MaxConcurrentRuns parameter")
    parser.add_argument("--rows-per-class", type=int, default=ROWS_PER_CLASS)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs the local SageMaker service shares out")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for every run")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the runtime's logs and jobs here")
    args = parser.parse_args(argv)
    report = run_load(
        args.files,
        args.max_concurrent_runs,
        workdir=args.workdir,
        total_cpus=args.cpus,
        timeout_s=args.timeout,
        rows_per_class=args.rows_per_class,
    )
    print_report(report)
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
