"""The Lambda packages stay small: handlers import boto3, Powertools and reviewtune.core only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.aws import ROOT

HEAVY = ("torch", "transformers", "pandas", "numpy", "sagemaker", "sklearn", "optuna", "moto", "matplotlib")
PROBE = """
import importlib.util, json, sys, time
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({"seconds": time.perf_counter() - start, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""
ENV = {
    "BUCKET_NAME": "b", "RUNS_TABLE_NAME": "t", "IDEMPOTENCY_TABLE_NAME": "i", "TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
    "SAGEMAKER_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1",
    "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
}


@pytest.mark.parametrize("function", ["start_tuning", "start_evaluation", "record_results", "reconcile"])
def test_handler_imports_no_heavy_package(function):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "functions" / function / "app.py")],
        env={**ENV, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True,
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1])["modules"])
    assert not loaded & set(HEAVY), f"{function} imports {sorted(loaded & set(HEAVY))}"
    assert {"boto3", "aws_lambda_powertools", "reviewtune"} <= loaded
