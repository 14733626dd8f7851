"""The trials of a tuning job as the run item keeps them: all of them while they fit, else the best ones.

A DynamoDB item holds at most 400 KB. A tuning job may have up to 500 training jobs (``MaxJobs``), each recorded
with its hyperparameters, times, costs and SageMaker's failure reason (up to about 1 KB): kept whole, such a run's
item could not be written, and the run would stay ``TUNING`` until its deadline. So when the tuning record takes
more than ``ITEM_BUDGET_BYTES``, every trial is written to S3 (``runs/<run_id>/evaluation/input/trials.json``) and
the item keeps the best ``KEPT_TRIALS`` (by objective, the best training job first; failure reasons cut to
``KEPT_REASON_CHARS``) with ``trials_total`` and ``trials_uri``. ``total`` is what counts trials everywhere.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from reviewtune.core import names
from reviewtune.core.reasons import bounded

ITEM_BUDGET_BYTES = 100_000  # of 400 KB: the outbox's messages, the data summary and the rest need room too
KEPT_TRIALS = 50
KEPT_REASON_CHARS = 300


def size(record: Any) -> int:
    """Bytes of ``record`` as JSON (about what it takes in the item)."""
    return len(json.dumps(record, default=str).encode("utf-8"))


def total(tuning: Any) -> int:
    """How many trials the tuning job had (not only those the item kept)."""
    if not isinstance(tuning, dict):
        return 0
    kept = tuning.get("trials")
    counted = tuning.get("trials_total")
    if isinstance(counted, int | float | Decimal) and not isinstance(counted, bool) and math.isfinite(counted):
        return int(counted)
    return len(kept) if isinstance(kept, list) else 0


def _rank(best_name: str | None):
    def key(trial: dict[str, Any]) -> tuple:
        objective = trial.get("objective")
        return (trial.get("name") != best_name, objective is None, -(objective or 0.0), str(trial.get("name")))

    return key


def for_item(tuning: dict[str, Any], s3: Any, bucket: str, run_id: str) -> dict[str, Any]:
    """``tuning`` as the run item stores it: unchanged when it fits ``ITEM_BUDGET_BYTES``; else every trial goes to
    S3 and the item keeps the best ``KEPT_TRIALS`` (written again with the same key on a retry: same content)."""
    trials = tuning.get("trials") or []
    if size(tuning) <= ITEM_BUDGET_BYTES:
        return tuning
    key = names.trials_key(run_id)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps({"run_id": run_id, "trials": trials, "cost": tuning.get("cost")}, default=str).encode(),
        ContentType="application/json",
    )
    best_name = (tuning.get("best_training_job") or {}).get("name")
    kept = sorted(trials, key=_rank(best_name))[:KEPT_TRIALS]
    kept_names = {t.get("name") for t in kept}
    shown = [
        {**t, "failure_reason": bounded(t["failure_reason"], KEPT_REASON_CHARS, keep_end=True)} if t.get("failure_reason") else t
        for t in sorted(kept, key=lambda t: str(t.get("name")))
    ]
    cost = tuning.get("cost")
    if isinstance(cost, dict) and isinstance(cost.get("trials"), list):
        cost = {**cost, "trials": [c for c in cost["trials"] if c.get("name") in kept_names]}
    return {
        **tuning,
        "trials": shown,
        "cost": cost,
        "trials_total": len(trials),
        "trials_uri": names.s3_uri(bucket, key),
    }
