"""The AWS tools accept the template: cfn-lint, ``sam validate --lint`` and ``sam build`` (from the SAM venv)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.template.helpers import FUNCTIONS, ROOT, TEMPLATE_PATH, template

SAM_VENV = Path(os.environ.get("SAM_VENV", ROOT / ".venv-sam"))
SAM_BIN = SAM_VENV / "bin"

pytestmark = pytest.mark.skipif(
    not (SAM_BIN / "sam").exists(),
    reason=f"no SAM CLI venv at {SAM_VENV} (make creates it; set SAM_VENV to use another one)",
)


def _run(*args: str | Path, cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        # sam build needs python3.11 on PATH; the SAM venv's own interpreter is one.
        "PATH": f"{SAM_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _dist(site: Path, name: str) -> importlib.metadata.Distribution | None:
    """The distribution ``name`` installed in ``site`` (a --target folder), if any."""
    found = [d for d in importlib.metadata.distributions(path=[str(site)]) if d.metadata["Name"].lower() == name]
    return found[0] if found else None


def test_cfn_lint_reports_nothing():
    result = _run(SAM_BIN / "cfn-lint", "--include-checks", "I", "--", TEMPLATE_PATH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_sam_validate_lint_accepts_the_template():
    result = _run(SAM_BIN / "sam", "validate", "--lint", "--region", "us-east-1", "--template", TEMPLATE_PATH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.mark.slow
def test_sam_build_puts_the_project_package_in_the_layer_and_the_handlers_in_the_functions(tmp_path):
    build_dir = tmp_path / "build"
    result = _run(
        SAM_BIN / "sam",
        "build",
        "--template",
        TEMPLATE_PATH,
        "--build-dir",
        build_dir,
        "--no-cached",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    layer = build_dir / "CoreLayer" / "python"
    assert (layer / "reviewtune" / "core" / "__init__.py").is_file()
    assert not (layer / "reviewtune").is_symlink(), "the layer must hold the package itself, not a link to it"
    assert sorted(p.name for p in (layer / "reviewtune" / "core").glob("*.py")) == sorted(
        p.name for p in (ROOT / "reviewtune" / "core").glob("*.py")
    )
    assert sorted(p.name for p in (layer / "training_code").iterdir()) == sorted(
        p.name for p in (ROOT / "training_code").iterdir() if p.name != "__pycache__"
    )
    assert (layer / "aws_lambda_powertools").is_dir()
    # The X-Ray SDK brings botocore, which shadows the runtime's: boto3 must come with it, from the same resolve.
    versions = {name: _dist(layer, name) for name in ("boto3", "botocore")}
    assert all(versions.values()), versions
    wanted = [r for r in versions["boto3"].requires or [] if Requirement(r).name == "botocore"]
    assert wanted and Requirement(wanted[0]).specifier.contains(versions["botocore"].version), (wanted, versions)
    assert not (layer / "pydantic").exists(), "the event readers need no pydantic (reviewtune/core/events.py)"
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[template()["Globals"]["Function"]["Architectures"][0]]
    assert list((layer / "wrapt").glob(f"*{machine}*.so")), "wrapt (X-Ray SDK) must be built for the function CPU"
    # Every importable module ships its bytecode, unchecked-hash (valid whatever the files' times after unzipping).
    modules = [p for p in layer.rglob("*.py") if "training_code" not in p.relative_to(layer).parts]
    assert len(modules) > 300
    for module in modules:
        pyc = module.parent / "__pycache__" / f"{module.stem}.cpython-311.pyc"
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 1, pyc
    assert not list((layer / "training_code").rglob("__pycache__"))

    for function_id, (folder, _, _) in FUNCTIONS.items():
        built = build_dir / function_id
        assert (built / "app.py").read_bytes() == (ROOT / "functions" / folder / "app.py").read_bytes()
        assert not (built / "reviewtune").exists(), "the package comes from the layer only"
    assert (build_dir / "template.yaml").is_file()
