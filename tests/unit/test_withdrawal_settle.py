"""withdrawal.settle when SageMaker refuses for good or the package is gone, on the paths of a SUCCEEDED run: one
recorded not champion (put back to pending) and one promoted by hand since (approved as the champion's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from reviewtune.core import registry, withdrawal

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
CLIENTS = SimpleNamespace(sagemaker=None)  # registry.set_approval is replaced in each test


@pytest.fixture(autouse=True)
def approved_package(monkeypatch):
    """The owed run's package is Approved when read (registry.back_to_pending reads it before putting it back)."""
    monkeypatch.setattr(registry, "approval_status", lambda sagemaker, arn: registry.APPROVED)


class Runs:
    def __init__(self):
        self.written: list[dict] = []

    def update_if(self, run_id, status, **fields):
        self.written.append({"run_id": run_id, "status": status, **fields})
        return self.written[-1]


def refusing(code: str, message: str):
    def refuse(*args, **kwargs):
        raise ClientError({"Error": {"Code": code, "Message": message}}, "UpdateModelPackage")

    return refuse


def owed_run(marked_days_ago: float) -> dict:
    item = {"run_id": "r1", "status": "SUCCEEDED", "dataset": "d", "model_package_arn": "arn:pkg/2",
            "package_marked_at": (NOW - timedelta(days=marked_days_ago)).isoformat(), "updated_at": NOW.isoformat(),
            "registry": {"approval": "Approved", "error": "approval failed: ThrottlingException"},
            "notice_pending": "PENDING"}
    assert withdrawal.owed(item)
    return item


@pytest.mark.parametrize("champion", [False, True], ids=["not champion", "promoted since"])
def test_a_change_refused_for_a_week_is_recorded_with_the_approval_the_package_keeps(monkeypatch, champion):
    monkeypatch.setattr(withdrawal, "champion_now", lambda clients, item: champion)
    monkeypatch.setattr(registry, "set_approval", refusing("AccessDeniedException", "not allowed"))
    runs = Runs()
    with pytest.raises(ClientError):
        withdrawal.settle(runs, CLIENTS, owed_run(6), NOW)  # within the week: tried again next pass
    assert runs.written == []

    assert withdrawal.settle(runs, CLIENTS, owed_run(8), NOW)

    [written] = runs.written
    assert written["registry"]["approval"] == "Approved"  # refused: the package is as it was, not pending
    change = "approved as the champion's" if champion else "put back to pending"
    assert written["registry"]["error"] == (
        f"approval failed: not {change}, refused for 7 days: AccessDeniedException: not allowed")
    assert written["approval_settled_at"]


@pytest.mark.parametrize("champion", [False, True], ids=["not champion", "promoted since"])
def test_a_package_deleted_since_settles_at_once_whichever_change_was_owed(monkeypatch, champion):
    monkeypatch.setattr(withdrawal, "champion_now", lambda clients, item: champion)
    monkeypatch.setattr(registry, "set_approval", refusing("ValidationException", "ModelPackage arn:pkg/2 does not exist."))
    runs = Runs()

    assert withdrawal.settle(runs, CLIENTS, owed_run(0.01), NOW)

    [written] = runs.written
    assert "approval" not in written["registry"]
    assert written["registry"]["error"].startswith("the model package no longer exists: ValidationException")


def test_a_re_approval_given_up_after_this_pass_put_the_package_back_records_it_pending(monkeypatch):
    """The run was promoted between the pass's first read of the champion and its withdrawal (which went through):
    approving it back is refused for good, so the package stays pending, and the record says so."""
    reads = iter([False, True])
    monkeypatch.setattr(withdrawal, "champion_now", lambda clients, item: next(reads))
    calls = []

    def set_approval(sagemaker, arn, status, description=None):
        calls.append(status)
        if status == registry.APPROVED:
            refusing("AccessDeniedException", "not allowed")()

    monkeypatch.setattr(registry, "set_approval", set_approval)
    runs = Runs()

    assert withdrawal.settle(runs, CLIENTS, owed_run(8), NOW)

    assert calls == [registry.PENDING, registry.APPROVED]
    [written] = runs.written
    assert written["registry"]["approval"] == registry.PENDING
    assert written["registry"]["error"].startswith("approval failed: not approved as the champion's, refused for 7 days")


def test_a_run_promoted_since_whose_package_a_person_rejected_is_settled_without_approving_it(monkeypatch):
    monkeypatch.setattr(withdrawal, "champion_now", lambda clients, item: True)
    monkeypatch.setattr(registry, "approval_status", lambda sagemaker, arn: registry.REJECTED)
    calls = []
    monkeypatch.setattr(registry, "set_approval", lambda *args, **kwargs: calls.append(args))
    runs = Runs()

    assert withdrawal.settle(runs, CLIENTS, owed_run(0.01), NOW)

    assert calls == []
    [written] = runs.written
    assert written["registry"] == {"approval": "Rejected"} and written["approval_settled_at"]
