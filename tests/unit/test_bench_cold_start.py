"""bench/cold_start.py: the environment each function gets from template.yaml, evaluated without deploying."""

from __future__ import annotations

import pytest

from bench.cold_start import handler_folders, template_environment


@pytest.mark.parametrize(("folder", "function_id"), sorted(handler_folders().items()))
def test_every_function_s_environment_resolves_to_deployed_looking_values(folder, function_id):
    env = template_environment(function_id)
    assert env["RUNS_TABLE_NAME"].startswith("reviewtune-RunsTable-")
    assert not [name for name, value in env.items() if "${" in value], env


def test_a_function_reads_the_dead_letter_queue_url_of_the_stack():
    env = template_environment(handler_folders()["reconcile"])
    assert env["START_TUNING_DEAD_LETTER_QUEUE_URL"].startswith("https://sqs.")
