"""The model-lifecycle core modules stay Lambda-safe: importing them loads no heavy package."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.functional.test_lambda_imports import HEAVY
from tests.support.aws import ROOT

MODULES = ["registry", "champion", "costs", "prices", "train_hashes", "warm_start"]


def test_lifecycle_modules_import_no_heavy_package():
    probe = (
        "import importlib, json, sys\n"
        f"for name in {MODULES!r}: importlib.import_module('reviewtune.core.' + name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "reviewtune" in loaded
