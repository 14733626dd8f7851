"""layers/core/Makefile, the CoreLayer build ``sam build`` runs: the package and its bytecode, usable read-only.

``layer-code`` (the package and the .pyc files) runs offline here; the whole build, wheels included, is checked by
``sam build`` in test_sam_tools.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.template.helpers import ROOT, template

LAYER_DIR = ROOT / "layers" / "core"
MAKEFILE = LAYER_DIR / "Makefile"
MACHINE = {"arm64": "aarch64", "x86_64": "x86_64"}
# PEP 552: the flags word of a .pyc header. 0b01 = hash-based, 0b10 = check the source; unchecked-hash = 0b01.
UNCHECKED_HASH = 1


def make(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(LAYER_DIR), *args, *(f"{k}={v}" for k, v in variables.items())],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def pyc_flags(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[4:8], "little")


def cached(source: Path) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    artifacts = tmp_path_factory.mktemp("CoreLayer")
    result = make("layer-code", ARTIFACTS_DIR=str(artifacts), PYTHON=sys.executable)
    assert result.returncode == 0, result.stdout + result.stderr
    return artifacts / "python"


def test_sam_runs_the_makefile_target_named_after_the_layer():
    assert template()["Resources"]["CoreLayer"]["Metadata"]["BuildMethod"] == "makefile"
    assert re.search(r"^build-CoreLayer:", MAKEFILE.read_text(), re.MULTILINE)


def test_the_wheels_are_for_the_functions_cpu():
    architecture = template()["Globals"]["Function"]["Architectures"][0]
    platform = re.search(r"^LAMBDA_PLATFORM \?= (\S+)$", MAKEFILE.read_text(), re.MULTILINE)
    assert platform and platform.group(1).endswith(f"_{MACHINE[architecture]}")


def test_the_build_needs_the_artifacts_folder_sam_gives_it():
    result = make("layer-code", PYTHON=sys.executable)
    assert result.returncode != 0 and "ARTIFACTS_DIR is not set" in result.stderr


def test_every_module_of_the_package_ships_unchecked_hash_bytecode(built):
    sources = sorted((ROOT / "reviewtune").rglob("*.py"))
    assert len(sources) > 20
    for source in sources:
        shipped = built / source.relative_to(ROOT)
        assert shipped.read_bytes() == source.read_bytes()
        assert pyc_flags(cached(shipped)) == UNCHECKED_HASH, source
    # Uploaded for SageMaker (code_bundle.py skips bytecode anyway), never imported by a function.
    assert sorted(p.name for p in (built / "training_code").iterdir()) == sorted(
        p.name for p in (ROOT / "training_code").iterdir() if p.name != "__pycache__"
    )


def test_a_read_only_layer_imports_from_its_bytecode_without_looking_at_the_sources(built):
    # GIVEN the built layer, with one source changed after the build (as a timestamp change after unzipping would
    # look to timestamp-checked bytecode)
    source = built / "reviewtune" / "core" / "names.py"
    source.write_text(source.read_text() + "\nraise RuntimeError('compiled from the source')\n")
    # WHEN a fresh interpreter that may not write bytecode (read-only /opt) imports the package
    probe = "import reviewtune.core.names as m, sys; print(m.__cached__); print(sys.flags.dont_write_bytecode)"
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={"PYTHONPATH": str(built), "PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ.get("PATH", "")},
        cwd=built.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN the shipped bytecode is used as it is
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(cached(source)), "1"]
