"""The four handlers on moto with one in-memory SageMaker, driven step by step by a test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reviewtune.core import reconciler
from reviewtune.core.runs import parse_iso
from tests.functional.test_record_results import EVALUATION
from tests.functional.test_start_tuning import drop
from tests.support.aws import LambdaContext, load_event, load_handler
from tests.support.faults import FakeSageMaker
from tests.unit.test_dataset import balanced_rows, make_file

HANDLERS = ("start_tuning", "start_evaluation", "record_results", "reconcile")
LATER = timedelta(hours=1)


def good_file(seed: int = 0) -> bytes:
    return make_file(balanced_rows(20 + seed))


class Pipeline:
    def __init__(self, stack: Any):
        self.stack = stack
        self.handlers = {name: load_handler(name) for name in HANDLERS}
        self.sagemaker = FakeSageMaker(stack.bucket)
        self.use("sagemaker", self.sagemaker)
        self.received: list[dict[str, Any]] = []
        self.context = LambdaContext()

    @property
    def settings(self) -> Any:
        return self.handlers["reconcile"].ctx.settings

    @property
    def clients(self) -> Any:
        return self.handlers["reconcile"].ctx.clients

    def use(self, client: str, value: Any) -> None:
        """Give every handler this client (a fault-injecting wrapper, the fake SageMaker)."""
        for module in self.handlers.values():
            setattr(module.ctx.clients, client, value)

    # -- events ---------------------------------------------------------------------------------------------

    def drop_event(self, key: str = "incoming/a.tsv", body: bytes | None = None) -> dict[str, Any]:
        return drop(self.stack, key, good_file() if body is None else body)

    def start_tuning(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.handlers["start_tuning"].handler(event, self.context)

    def tuning_ended(self, run_id: str, status: str = "Completed") -> dict[str, Any]:
        event = load_event("tuning_job_completed.json")
        event["detail"]["HyperParameterTuningJobName"] = run_id
        event["detail"]["HyperParameterTuningJobStatus"] = status
        return self.handlers["start_evaluation"].handler(event, self.context)

    def evaluation_ended(self, run_id: str, status: str = "Completed", ended_at: int | None = None) -> dict[str, Any]:
        """The evaluation job's state-change event to record_results; ``ended_at``: its ProcessingEndTime (epoch
        milliseconds; the sample event's, in 2024, by default)."""
        event = load_event("processing_job_completed.json")
        detail = event["detail"]
        detail["ProcessingJobName"] = f"{run_id}-eval"
        detail["ProcessingJobStatus"] = status
        if ended_at is not None:
            detail["ProcessingEndTime"] = ended_at
        for output in detail.get("ProcessingOutputConfig", {}).get("Outputs", []):
            output["S3Output"]["S3Uri"] = f"s3://{self.stack.bucket}/runs/{run_id}/evaluation"
        return self.handlers["record_results"].handler(event, self.context)

    def reconcile(self, now: datetime | None = None) -> dict[str, Any]:
        """A pass of the reconcile function: its handler, or its core at a later clock (the same code and clients)."""
        if now is None:
            return self.handlers["reconcile"].handler({"source": "aws.scheduler"}, self.context)
        return reconciler.reconcile(self.settings, self.clients, now)

    # -- SageMaker ------------------------------------------------------------------------------------------

    def finish_tuning_well(self, run_id: str, best_status: str = "Completed") -> None:
        self.sagemaker.finish_tuning(
            run_id,
            "Completed",
            trials=[
                {"status": best_status, "objective": 74.0, "objective_status": "Succeeded"},
                {"status": "Completed", "objective": 70.0, "objective_status": "Succeeded"},
            ],
            best=f"{run_id}-001-abcdef01",
        )

    def finish_tuning_past_deadline(self, run_id: str) -> None:
        """The tuning job ends well, after the run's deadline (a pass then ends the run at its deadline; a job that
        ended before it gets its step instead)."""
        self.finish_tuning_well(run_id)
        self.ended_past_deadline(run_id, self.sagemaker.tuning[run_id])

    def ended_past_deadline(self, run_id: str, job: dict[str, Any]) -> None:
        """SageMaker says ``job`` (the fake's record of a tuning or processing job) ended after the run's deadline."""
        job["ended_at"] = parse_iso(self.run(run_id)["deadline_at"]) + timedelta(minutes=1)

    def succeed(self, run_id: str, comparison: dict[str, Any] | None = None,
                metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Tune, evaluate and record a run. ``comparison``: the numbers the evaluation job reports for the
        champion it was told to measure (``measured``); its champion_run_id is the one the request named.
        ``metrics``: evaluation.json's instead of the usual ones (74.12 % on 309 balanced test reviews)."""
        self.finish_tuning_well(run_id)
        self.tuning_ended(run_id)
        evaluation = dict(EVALUATION) if metrics is None else {**EVALUATION, "metrics": metrics}
        champion = self.processing_argument(run_id, "--champion-run-id")
        if comparison is not None:
            assert champion is not None, "the evaluation job was not asked to measure a champion"
            evaluation["comparison"] = {"champion_run_id": champion, **comparison}
        self.sagemaker.finish_processing(f"{run_id}-eval", evaluation=evaluation)
        return self.evaluation_ended(run_id)

    def processing_request(self, run_id: str) -> dict[str, Any]:
        return self.sagemaker.processing[f"{run_id}-eval"]["request"]

    def processing_argument(self, run_id: str, name: str) -> str | None:
        """The value after ``name`` in the evaluation job's ContainerArguments, None when absent."""
        arguments = self.processing_request(run_id)["AppSpecification"]["ContainerArguments"]
        return arguments[arguments.index(name) + 1] if name in arguments else None

    # -- observing ------------------------------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        item = self.stack.run(run_id)
        assert item is not None, run_id
        return item

    def messages(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every message received so far (of one run)."""
        self.received += self.stack.messages()
        return [
            m for m in self.received if run_id is None or m["MessageAttributes"]["run_id"]["Value"] == run_id
        ]

    def statuses_told(self, run_id: str) -> list[str]:
        return [m["MessageAttributes"]["status"]["Value"] for m in self.messages(run_id)]


def measured(challenger: float, champion: float, rows: int = 309, left_out: int = 0, overlap_checked: bool = True,
             only: tuple[int, int] | None = None) -> dict[str, Any]:
    """The comparison section of evaluation.json: both accuracies on the same ``rows`` test reviews; ``only``: the
    reviews only the challenger got right and only the champion (None: as an evaluation job that did not count them
    writes it)."""
    return {
        "rows_compared": rows,
        "rows_left_out": left_out,
        "overlap_checked": overlap_checked,
        "challenger_accuracy": challenger,
        "champion_accuracy": champion,
        **({} if only is None else {"challenger_only_correct": only[0], "champion_only_correct": only[1]}),
    }


def later(hours: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)
