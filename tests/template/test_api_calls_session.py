"""When the least-privilege tests may use this session's recorded calls instead of running the scenarios again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.template import api_calls
from tests.template.helpers import ROOT

NODES = [f"{path}::test_{n}" for path in api_calls.RECORDED_TESTS for n in (1, 2)]


@pytest.fixture
def session(monkeypatch):
    """A fresh view of one session: its collection, its reports, and one call recorded by each kind of test."""
    monkeypatch.setattr(api_calls, "_scenarios", {"collected": set(), "passed": set(), "failed": set()})
    monkeypatch.setattr(
        api_calls,
        "_calls",
        [
            {"function": "start_tuning", "test": api_calls.RECORDED_TESTS[0]},
            {"function": "reconcile", "test": "tests/x.py"},
        ],
    )

    def collect(nodes=NODES, args=("tests",), invoked_in: Path = ROOT):
        config = SimpleNamespace(args=list(args), invocation_params=SimpleNamespace(dir=invoked_in))
        api_calls.pytest_collection_modifyitems(None, config, [SimpleNamespace(nodeid=n) for n in nodes])

    def report(nodeid, outcome="passed", when="call"):
        api_calls.pytest_runtest_logreport(
            SimpleNamespace(nodeid=nodeid, when=when, passed=outcome == "passed", failed=outcome == "failed")
        )

    return SimpleNamespace(collect=collect, report=report)


def test_a_session_that_ran_and_passed_every_scenario_gives_their_calls_only(session):
    session.collect(NODES + ["tests/unit/test_other.py::test_x"])
    for nodeid in NODES[:-1]:
        session.report(nodeid)
    assert api_calls.scenario_calls() is None  # one has not run yet
    session.report(NODES[-1])
    assert api_calls.scenario_calls() == [{"function": "start_tuning", "test": api_calls.RECORDED_TESTS[0]}]


def test_a_failed_scenario_even_in_its_teardown_sends_the_check_to_a_subprocess(session):
    session.collect()
    for nodeid in NODES:
        session.report(nodeid)
    session.report(NODES[0], "failed", when="teardown")
    assert api_calls.scenario_calls() is None


@pytest.mark.parametrize(
    "args, invoked_in",
    [
        ((f"{api_calls.RECORDED_TESTS[0]}::test_1", "tests"), ROOT),
        ((f"functional/{Path(api_calls.RECORDED_TESTS[0]).name}::test_1",), ROOT / "tests"),
        ((f"{ROOT / api_calls.RECORDED_TESTS[0]}::test_1",), Path("/")),
    ],
)
def test_a_scenario_file_picked_by_node_id_is_not_whole(session, args, invoked_in):
    session.collect(args=args, invoked_in=invoked_in)
    for nodeid in NODES:
        session.report(nodeid)
    assert api_calls.scenario_calls() is None


def test_a_deselected_scenario_or_a_file_not_collected_sends_the_check_to_a_subprocess(session):
    api_calls.pytest_deselected([SimpleNamespace(nodeid=NODES[0])])
    session.collect(NODES[1:])
    assert api_calls.scenario_calls() is None
    api_calls._scenarios = {"collected": set(), "passed": set(), "failed": set()}
    partial = [n for n in NODES if not n.startswith(api_calls.RECORDED_TESTS[-1])]
    session.collect(partial)
    for nodeid in partial:
        session.report(nodeid)
    assert api_calls.scenario_calls() is None


def test_a_deselected_test_of_another_file_changes_nothing(session):
    api_calls.pytest_deselected([SimpleNamespace(nodeid="tests/unit/test_other.py::test_x")])
    session.collect()
    for nodeid in NODES:
        session.report(nodeid)
    assert api_calls.scenario_calls() is not None
