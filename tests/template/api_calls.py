"""pytest plugin: record every AWS API call a Lambda function's code makes while it runs (loaded by tests/conftest.py).

A call is attributed to a function when it is made while that function runs (inside ``handler(...)`` of a module
loaded with ``tests.support.aws.load_handler``, or inside ``reviewtune.core.reconciler.reconcile``, the reconcile
function's pass that tests also run with their own clock) and comes from the function: walking out from the call,
past libraries (the Powertools decorators among them) and the fault-injecting wrappers of ``tests.support.faults``,
the first frame is code of ``reviewtune/`` or ``functions/``, or the function's entry itself. So a test's own calls
are never recorded, even those a test hook makes in the middle of a handler (dropping a second file while the first
is being read); a handler that such a hook runs is recorded as itself.
Both botocore calls and the calls the functions make to the in-memory SageMaker of ``tests.support.faults`` are
recorded, with the parameters that name what the call touches and the test file that made the function run.

tests/template/test_least_privilege.py checks the calls of the scenarios in ``RECORDED_TESTS``. When the session ran
every test of those files, and they passed, before it in the same process (``make test``: tests/functional comes
before tests/template, and its two pytest-xdist workers take those files and the least-privilege tests as one unit
of work, ``pytest_xdist_make_scheduler``), it reads this session's calls (``scenario_calls``); otherwise it runs
those files again in a subprocess, which writes its calls to the JSON file named by ``REVIEWTUNE_API_CALLS`` when it
ends.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import botocore.client
import botocore.session
import pytest
from botocore import xform_name

import tests.support.aws as support

# Parameters that name what a call touches (strings), recorded as they are.
RESOURCE_PARAMETERS = (
    "Bucket",
    "Key",
    "TableName",
    "IndexName",
    "TopicArn",
    "HyperParameterTuningJobName",
    "TrainingJobName",
    "ProcessingJobName",
    "ModelPackageGroupName",
    "ModelPackageArn",
    "ModelPackageName",
    "ResourceArn",
    "QueueUrl",
    "Prefix",
)
ROOT = Path(__file__).resolve().parents[2]
FUNCTION_CODE = (str(ROOT / "reviewtune") + os.sep, str(ROOT / "functions") + os.sep)
TEST_CODE = str(ROOT / "tests") + os.sep
# Test code that stands in for AWS or wraps the function's clients: calls through it are the function's.
TRANSPARENT = (str(ROOT / "tests" / "support" / "faults.py"), os.path.realpath(__file__))
# The functional tests whose scenarios the least-privilege tests check: each handler's own, and the fault, queue,
# duplicate, model lifecycle, crash-point, stop-request, owed-stop, missed-drop and former-champion paths (the
# reconciler's passes among them).
RECORDED_TESTS = tuple(
    f"tests/functional/test_{name}.py"
    for name in (
        "start_tuning", "start_evaluation", "record_results", "guarantees", "duplicates", "lifecycle", "crash_points",
        "stop_requests", "job_stops", "missed_drops", "former_champions",
    )
)
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)
_calls: list[dict[str, Any]] = []
_test_file: str | None = None  # the file of the test running now, relative to ROOT
# Told of every recorded call before it is made (``before(call)``) and after its answer (``after(call, response)``):
# a test injects faults at the functions' calls this way (tests/functional/test_crash_points.py).
watchers: list[Any] = []
# This session's tests of RECORDED_TESTS: collected, and passed (every phase); None once the session is known not
# to run all of them (a -k, a node id, --lf).
_scenarios: dict[str, set[str]] | None = {"collected": set(), "passed": set(), "failed": set()}


def _as_function(name: str, code: Callable[..., Any]) -> Callable[..., Any]:
    """``code`` with the calls it makes attributed to the function ``name`` (the innermost one, when a test hook
    runs another handler inside a handler)."""

    @functools.wraps(code)
    def run(*args: Any, **kwargs: Any) -> Any:
        token = _current.set(name)
        try:
            return code(*args, **kwargs)
        finally:
            _current.reset(token)

    return run


# The code of every function entry made by _as_function (one code object, many closures).
_ENTRY = _as_function("", print).__code__


@functools.cache
def _origin(path: str) -> str | None:
    """"function", "test" or None (a library, the standard library, a transparent test helper) for a code file."""
    path = os.path.realpath(path)
    if path.startswith(FUNCTION_CODE):
        return "function"
    if path.startswith(TEST_CODE) and path not in TRANSPARENT:
        return "test"
    return None


def _made_by_function_code() -> bool:
    """Whether the call comes from the function: walking out from it, the function's code or the function's entry
    (``_as_function``; between the two only libraries, e.g. the Powertools decorators) comes before any test code."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code is _ENTRY:
            return True
        origin = _origin(code.co_filename)
        if origin is not None:
            return origin == "function"
        frame = frame.f_back
    return False


def _recording_loader(load_handler: Callable[[str], Any]) -> Callable[[str], Any]:
    @functools.wraps(load_handler)
    def load(name: str) -> Any:
        module = load_handler(name)
        module.handler = _as_function(name, module.handler)
        return module

    return load


def _role_arns(value: Any) -> Iterator[str]:
    """Every ``RoleArn`` in a request, nested ones included (a tuning job's training job definitions)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "RoleArn" and isinstance(item, str):
                yield item
            else:
                yield from _role_arns(item)
    elif isinstance(value, list):
        for item in value:
            yield from _role_arns(item)


def _copy_source(params: Mapping[str, Any]) -> dict[str, Any]:
    """CopyObject's source: its key, whether a version is named, and whether the tags are copied along."""
    source = params.get("CopySource")
    if source is None:
        return {}
    if isinstance(source, str):
        path, _, query = source.lstrip("/").partition("?")
        key, version = path.split("/", 1)[1], "versionId=" in query
    else:
        key, version = source["Key"], bool(source.get("VersionId"))
    return {
        "SourceKey": key,
        "source_version": version,
        "copies_tags": params.get("TaggingDirective", "COPY") == "COPY",
    }


def _transaction(params: Mapping[str, Any]) -> dict[str, Any]:
    """TransactWriteItems' parts: each one's kind (Put, Update, Delete, ConditionCheck) and table."""
    items = params.get("TransactItems")
    if not isinstance(items, list):
        return {}
    return {"parts": [(kind, part["TableName"]) for item in items for kind, part in item.items()]}


def _batch_get(params: Mapping[str, Any]) -> dict[str, Any]:
    """BatchGetItem's tables (RequestItems' keys)."""
    items = params.get("RequestItems")
    return {"tables": sorted(items)} if isinstance(items, Mapping) else {}


def _record(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    function = _current.get()
    if function is None or not _made_by_function_code():
        return None
    call = {
        "function": function,
        "test": _test_file,
        "service": service,
        "operation": operation,
        "tags": bool(params.get("Tags") or params.get("Tagging")),
        "version": bool(params.get("VersionId")),
        "roles": sorted(set(_role_arns(params))),
        **{k: params[k] for k in RESOURCE_PARAMETERS if isinstance(params.get(k), str)},
        **_copy_source(params),
        **_transaction(params),
        **_batch_get(params),
    }
    _calls.append(call)
    for watcher in watchers:
        watcher.before(call)
    return call


def _answered(call: dict[str, Any] | None, response: Any) -> None:
    """A recorded call's answer: a created model package's ARN (its version number is known only from the answer)."""
    if call is None:
        return
    if call["operation"] == "CreateModelPackage" and isinstance(response, Mapping):
        call["created"] = response.get("ModelPackageArn")
    for watcher in watchers:
        watcher.after(call, response)


def _record_botocore() -> None:
    make_api_call = botocore.client.BaseClient._make_api_call

    def _make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        call = _record(self.meta.service_model.signing_name, operation_name, api_params)
        response = make_api_call(self, operation_name, api_params)
        _answered(call, response)
        return response

    botocore.client.BaseClient._make_api_call = _make_api_call


def _record_fake_sagemaker() -> None:
    """The fake SageMaker's methods are named as boto3 names the API's operations: record each as that operation."""
    from tests.support import faults

    def recording(operation: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Any, **params: Any) -> Any:
            recorded = _record("sagemaker", operation, params)
            response = method(self, **params)
            _answered(recorded, response)
            return response

        return call

    model = botocore.session.get_session().get_service_model("sagemaker")
    for operation in model.operation_names:
        method = getattr(faults.FakeSageMaker, xform_name(operation), None)
        if method is not None:
            setattr(faults.FakeSageMaker, xform_name(operation), recording(operation, method))
    paginate = faults._Paginator.paginate
    faults._Paginator.paginate = recording("ListTrainingJobsForHyperParameterTuningJob", paginate)


def pytest_configure(config: Any) -> None:
    import reviewtune.core.reconciler as reconciler

    support.load_handler = _recording_loader(support.load_handler)
    reconciler.reconcile = _as_function("reconcile", reconciler.reconcile)
    _record_botocore()
    _record_fake_sagemaker()


# The least-privilege tests read the calls of their own process's scenarios: under pytest-xdist (``make test``) the
# scenarios and those tests are one unit of work, run by one worker in the order collected.
LEAST_PRIVILEGE_TESTS = "tests/template/test_least_privilege.py"
TOGETHER = "recorded API calls"


def unit_of_work(nodeid: str) -> str | None:
    """The xdist scope of a test that must run in the same worker as others; None for any other test."""
    return TOGETHER if _recorded_file(nodeid) or nodeid.split("::", 1)[0] == LEAST_PRIVILEGE_TESTS else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: Any, log: Any) -> Any:
    """``-n N`` (``--dist load``) and ``--dist loadgroup``: xdist's scheduling by units of work, with the recorded
    scenarios and the least-privilege tests as one unit and every other test file as one (so a module's fixtures,
    a local runtime or a trained model, are built once). (xdist's own ``xdist_group`` mark names the group in the
    node id, which pytest 9.2's node ids no longer take: pytest-xdist issue 1386.) The largest unit goes first."""
    if config.getoption("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class RecordedCallsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid) or nodeid.split("::", 1)[0]

    return RecordedCallsTogether(config, log)


def _recorded_file(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return path if path in RECORDED_TESTS else None


def _names_tests_of_a_recorded_file(arg: str, invoked_in: Path) -> bool:
    """Whether a command-line argument picks tests of a file of RECORDED_TESTS by node id (``file.py::test``)."""
    path, node, _ = arg.partition("::")
    if not node:
        return False
    try:
        return (invoked_in / path).resolve().relative_to(ROOT).as_posix() in RECORDED_TESTS
    except ValueError:
        return False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    global _scenarios
    if _scenarios is None:
        return
    named = [arg for arg in config.args if _names_tests_of_a_recorded_file(arg, config.invocation_params.dir)]
    collected = {item.nodeid for item in items if _recorded_file(item.nodeid)}
    if named or {_recorded_file(nodeid) for nodeid in collected} != set(RECORDED_TESTS):
        _scenarios = None
    else:
        _scenarios["collected"] = collected


def pytest_deselected(items: list[Any]) -> None:
    global _scenarios
    if any(_recorded_file(item.nodeid) for item in items):
        _scenarios = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: Any, nextitem: Any) -> Any:
    global _test_file
    _test_file = item.nodeid.split("::", 1)[0]
    try:
        return (yield)
    finally:
        _test_file = None


def pytest_runtest_logreport(report: Any) -> None:
    if _scenarios is not None and _recorded_file(report.nodeid):
        if report.failed:
            _scenarios["failed"].add(report.nodeid)
        elif report.when == "call" and report.passed:
            _scenarios["passed"].add(report.nodeid)


def scenario_calls() -> list[dict[str, Any]] | None:
    """The calls this session's tests of RECORDED_TESTS made, when every one of them ran and passed; else None."""
    if _scenarios is None or not _scenarios["collected"]:
        return None
    if _scenarios["failed"] or _scenarios["passed"] != _scenarios["collected"]:
        return None
    return [call for call in _calls if call["test"] in RECORDED_TESTS]


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get("REVIEWTUNE_API_CALLS")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"exitstatus": int(exitstatus), "calls": _calls}, handle, indent=1)
