from __future__ import annotations

import pytest

from tests.support.aws import forget_handlers
from tests.support.botocore_models import share_across_sessions
from tests.support.dynamodb_values import write_directly

share_across_sessions()  # every boto3 session of the test process reads botocore's models once
write_directly()  # moto writes DynamoDB's attribute values without walking their shapes

# Records the AWS calls the functions' code makes, for the least-privilege tests (tests/template/api_calls.py).
pytest_plugins = ("tests.template.api_calls",)


@pytest.fixture(autouse=True)
def _forget_loaded_handlers():
    """Each test's handler modules are dropped after it (see tests.support.aws.forget_handlers)."""
    yield
    forget_handlers()


@pytest.fixture(autouse=True)
def _plans_for_a_cpu_without_amx(monkeypatch):
    """A plan's speeds depend on the CPU (reviewtune.budget.cpu_has_amx): every test plans for one without AMX, whatever
    CPU runs it, unless it points ``CPUINFO`` elsewhere itself."""
    from reviewtune import budget

    monkeypatch.setattr(budget, "CPUINFO", "/nonexistent/cpuinfo")
