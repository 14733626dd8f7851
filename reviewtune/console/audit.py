"""``reviewtune audit``: every file version under incoming/ beside the run it has, so that the outcome guarantee can be
checked from outside (one run per version) rather than trusted.

Versions are listed from S3 (ListObjectVersions), runs read per dataset from the ``by_dataset`` index and matched by
key and version (the identity start_tuning names runs by), so runs named under any job name prefix count. A version without a run
is either on its way (written less than ``missed_drops.GRACE_SECONDS`` ago: its event may still come) or missed: the
reconciler's next pass claims it (missed_drops.py) when it is within the sweep's window, else it is for people.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.table import Table

from reviewtune.console.text import add_row, utc_time
from reviewtune.core import missed_drops, names
from reviewtune.core.runs import RunsRepository
from reviewtune.core.tuning import dropped_object

NO_RUN_YET = "no run yet"  # written within the grace: its event may still come
MISSING = "no run"


def audit(s3: Any, runs: RunsRepository, bucket: str, dataset: str | None, days: float,
          now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per version under incoming/ (or the dataset's key or folder) written within ``days``, newest first."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    prefix = names.INCOMING_PREFIX + (names.normalize_dataset(dataset) if dataset else "")
    by_dataset: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            obj = missed_drops.dropped_version(bucket, version)
            if obj is not None and version["LastModified"] >= since:
                by_dataset[names.dataset_name(obj.key)].append((version, obj))
    rows = []
    for name, found in by_dataset.items():
        known = {dropped_object(run).identity: run for run in runs.all_of_dataset(name)}
        for version, obj in found:
            run = known.get(obj.identity)
            age = (now - version["LastModified"]).total_seconds()
            status = run["status"] if run else (NO_RUN_YET if age < missed_drops.GRACE_SECONDS else MISSING)
            rows.append({"key": obj.key, "version_id": obj.version_id, "written": version["LastModified"],
                         "size": obj.size, "dataset": name, "run_id": run["run_id"] if run else None,
                         "status": status})
    return sorted(rows, key=lambda row: row["written"], reverse=True)


def table(rows: list[dict[str, Any]], title: str) -> Table:
    view = Table(title=title)
    for column in ("written (UTC)", "file", "version", "run", "status"):
        view.add_column(column, overflow="fold")
    for row in rows:
        add_row(view, utc_time(row["written"]), row["key"], row["version_id"] or "-", row["run_id"] or "-",
                row["status"])
    return view
