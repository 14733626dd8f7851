"""tests/functional/forking.py, which the crash-point tests stand on: each point's child takes the fault there and
answers with the scenario's verdict and the API calls it made; what goes wrong in a child is an answer too."""

from __future__ import annotations

from typing import Any

from tests.functional import forking
from tests.template import api_calls


def test_each_point_is_answered_by_a_child_that_took_the_fault_there_and_the_parent_goes_on_without_it(monkeypatch):
    monkeypatch.setattr(api_calls, "_calls", [])
    struck: list[int] = []

    def fault(at: int, call: dict[str, Any]) -> None:
        struck.append(at)

    def scenario(forks: forking.ForkPoints) -> tuple[int, ...]:
        for n in range(1, 6):
            api_calls._calls.append({"n": n, "after": tuple(struck)})
            forks.before({"n": n})
        return tuple(struck)

    answers = forking.sweep([2, 4], fault, scenario)
    assert {at: (answer.verdict, answer.error) for at, answer in answers.items()} == {2: ((2,), None), 4: ((4,), None)}
    assert struck == []
    # the parent's own calls, then each child's calls made after its fork, told by the struck point they saw
    assert [(call["n"], call["after"]) for call in api_calls._calls] == [
        (1, ()), (2, ()), (3, (2,)), (4, (2,)), (5, (2,)), (3, ()), (4, ()), (5, (4,)), (5, ())]


def test_a_child_that_raises_and_a_point_never_reached_are_answered_as_errors():
    def fault(at: int, call: dict[str, Any]) -> None:
        raise RuntimeError(f"refused at call {at}")

    def scenario(forks: forking.ForkPoints) -> str:
        for n in range(3):
            forks.before({"n": n})
        return "ended"

    answers = forking.sweep([2, 9], fault, scenario)
    assert answers[2].verdict is None and "RuntimeError: refused at call 2" in answers[2].error
    assert answers[9].error == "the run made 3 calls: never reached"
