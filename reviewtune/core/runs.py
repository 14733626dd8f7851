"""The runs table: one item per run, keyed by run_id (= tuning job name). Item conversion lives here only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

DATASET_INDEX = "by_dataset"
STATUS_INDEX = "by_status"


class RunStatus(StrEnum):
    TUNING = "TUNING"
    EVALUATING = "EVALUATING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    REJECTED = "REJECTED"


FINAL_STATUSES = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.REJECTED}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_item(value: Any) -> Any:
    """Plain JSON-able data to what DynamoDB accepts (floats as Decimal, datetimes as ISO strings)."""
    return json.loads(json.dumps(value, default=_default), parse_float=Decimal)


def from_item(value: Any) -> Any:
    """A DynamoDB item back to plain JSON-able data (Decimal to int or float)."""
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_item(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot store {type(value).__name__} in a run item")


class RunsRepository:
    """Reads and writes run items. Takes a boto3 DynamoDB Table resource."""

    def __init__(self, table: Any):
        self.table = table

    def create(self, item: dict[str, Any]) -> bool:
        """Write a new run; False when a run with that id exists already."""
        stamp = now_iso()
        item = {"created_at": stamp, "updated_at": stamp, **item}
        try:
            self.table.put_item(Item=to_item(item), ConditionExpression="attribute_not_exists(run_id)")
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def get(self, run_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"run_id": run_id}, ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def update(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Set the given top-level attributes of an existing run (and updated_at)."""
        fields["updated_at"] = now_iso()
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": to_item(value) for i, value in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        response = self.table.update_item(
            Key={"run_id": run_id},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ConditionExpression="attribute_exists(run_id)",
            ReturnValues="ALL_NEW",
        )
        return from_item(response["Attributes"])

    def by_dataset(self, dataset: str, limit: int = 20) -> list[dict[str, Any]]:
        """Runs of one dataset, newest first."""
        response = self.table.query(
            IndexName=DATASET_INDEX,
            KeyConditionExpression=Key("dataset").eq(dataset),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [from_item(i) for i in response["Items"]]

    def by_status(self, status: str, limit: int = 20) -> list[dict[str, Any]]:
        """Runs in one status, newest first."""
        response = self.table.query(
            IndexName=STATUS_INDEX,
            KeyConditionExpression=Key("status").eq(status),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [from_item(i) for i in response["Items"]]
