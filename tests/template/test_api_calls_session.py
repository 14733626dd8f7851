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


class _Worker:
    """A pytest-xdist worker as its scheduler sees it: the indexes of the tests sent to it, in order."""

    def __init__(self, name):
        self.gateway = SimpleNamespace(id=name)
        self.sent: list[int] = []
        self.done = 0
        self.shutting_down = False

    def send_runtest_some(self, indexes):
        self.sent.extend(indexes)

    def shutdown(self):
        self.shutting_down = True


def _run_under_xdist(collection, workers=2):
    """Which worker runs which test, when the scheduler of ``make test`` (``-n 2``) distributes ``collection``."""
    option = SimpleNamespace(dist="load", tx=[f"{workers}*popen"], loadscopereorder=True)
    config = SimpleNamespace(option=option, getvalue=lambda name: getattr(option, name))
    config.getoption = config.getvalue
    scheduler = api_calls.pytest_xdist_make_scheduler(config, None)
    nodes = [_Worker(f"gw{n}") for n in range(workers)]
    for node in nodes:
        scheduler.add_node(node)
        scheduler.add_node_collection(node, collection)
    scheduler.schedule()
    ran: dict[str, str] = {}
    while any(node.done < len(node.sent) for node in nodes):  # the scheduler sends more as tests complete
        node = next(node for node in nodes if node.done < len(node.sent))  # each worker in turn
        index = node.sent[node.done]
        node.done += 1
        ran[collection[index]] = node.gateway.id
        scheduler.mark_test_complete(node, index)
        nodes.append(nodes.pop(nodes.index(node)))
    return ran


def test_under_xdist_the_scenarios_and_the_least_privilege_tests_run_in_one_worker_in_their_order():
    together = NODES + [f"{api_calls.LEAST_PRIVILEGE_TESTS}::test_{n}[Fn]" for n in (1, 2)]
    others = [f"tests/unit/test_other_{n % 15}.py::test_{n}" for n in range(30)]  # two tests in each of 15 files
    collection = others[:10] + together[:5] + others[10:20] + together[5:] + others[20:]
    ran = _run_under_xdist(collection)
    assert sorted(ran) == sorted(collection)
    assert len({ran[nodeid] for nodeid in together}) == 1
    assert [nodeid for nodeid in ran if nodeid in together] == together  # the scenarios first, as collected
    assert {ran[nodeid] for nodeid in others} == {"gw0", "gw1"}  # the rest is shared, a file to one worker
    by_file: dict[str, set[str]] = {}
    for nodeid in others:
        by_file.setdefault(nodeid.split("::")[0], set()).add(ran[nodeid])
    assert all(len(workers) == 1 for workers in by_file.values()), by_file
    assert all(api_calls.unit_of_work(nodeid) is None for nodeid in others)


def test_other_ways_of_distributing_are_left_to_xdist():
    option = SimpleNamespace(dist="each")
    assert api_calls.pytest_xdist_make_scheduler(SimpleNamespace(getoption=lambda name: option.dist), None) is None
