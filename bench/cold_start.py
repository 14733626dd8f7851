"""Cold-start import time of each Lambda handler: ``functions/<name>/app.py`` imported in a fresh interpreter.

Each handler module is imported N times, every time in a new subprocess with the environment the template gives the
functions (Globals, parameter defaults, placeholder names for the stack's resources) plus the variables the Lambda
runtime sets (``LAMBDA_TASK_ROOT`` among them, so Powertools' Tracer is active and patches botocore as deployed).
The time is measured inside the subprocess around the module import only (interpreter start-up excluded):
wall-clock seconds, and the CPU seconds of the process, which stay meaningful on a machine busy with other work.
Prints the medians and the range per handler.

    python bench/cold_start.py [--form shipped|source|venv] [--runs 9] [--json out.json] [--importtime start_tuning]

``--form shipped`` (the default) imports what Lambda runs: CoreLayer built by ``layers/core/Makefile`` (the target
``sam build`` runs, with wheels for this machine instead of arm64) into ``.bench-layer/``, the function's folder as
``/var/task``, and boto3 as the runtime provides it (compiled); ``python -S`` (no site-packages) and
``PYTHONDONTWRITEBYTECODE=1``, because ``/opt`` and ``/var/task`` are read-only: every import is a cold start that
can only use the bytecode shipped. ``--form source`` is the same layer without its .pyc files (what the ``python3.11``
build method shipped: each cold start compiles the layer's modules). ``--form venv`` imports from the project's
virtualenv with warm bytecode caches, whose extra packages make the figures differ. The layer is built once
(``--rebuild`` builds it again); the reviewtune package in it is refreshed on every run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reviewtune.cfn_yaml import condition_holds, load_template  # noqa: E402
from reviewtune.core.containers import url_suffix  # noqa: E402
from reviewtune.local import language_extensions  # noqa: E402

FUNCTIONS_DIR = REPO / "functions"
LAYER_SOURCE = REPO / "layers" / "core"
BENCH_DIR = REPO / ".bench-layer"
FORMS = ("shipped", "source", "venv")
LAMBDA_PATH = "REVIEWTUNE_BENCH_AS_IN_LAMBDA"  # set in the environment of imports with Lambda's sys.path
PROBE = """
import importlib.util, json, sys, time
start, cpu = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}))
"""
# Values of the stack's own resources (Ref / GetAtt) as they would look once deployed.
RESOURCE_VALUES = {
    "DataBucket": "reviewtune-databucket-1a2b3c4d5e6f",
    "RunsTable": "reviewtune-RunsTable-1A2B3C4D5E6F",
    "IdempotencyTable": "reviewtune-IdempotencyTable-1A2B3C4D5E6F",
    "NotificationTopic": "arn:aws:sns:us-east-1:123456789012:reviewtune-NotificationTopic-1A2B3C4D5E6F",
    "SageMakerExecutionRole": "arn:aws:iam::123456789012:role/reviewtune-SageMakerExecutionRole-1A2B3C4D5E6F",
    "StartTuningDeadLetterQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/reviewtune-StartTuningDLQ-1A2B3C4D",
}
PSEUDO = {"AWS::Region": "us-east-1", "AWS::URLSuffix": "amazonaws.com", "AWS::AccountId": "123456789012",
          "AWS::StackName": "reviewtune"}


def _resolve(node: Any, values: dict[str, str], template: dict[str, Any]) -> Any:
    """Enough of Ref / GetAtt / Sub / If / FindInMap / Join to evaluate the functions' environment."""
    if not isinstance(node, dict):
        return str(node)
    ((key, arg),) = node.items()
    if key in ("Ref", "Fn::GetAtt"):
        name = arg if key == "Ref" else arg[0]
        if name not in values:
            raise ValueError(f"{key} {name}: add a deployed-looking value for it to RESOURCE_VALUES")
        return values[name]
    if key == "Fn::FindInMap":  # those with a DefaultValue are resolved already (language_extensions.apply)
        name, first, second = (_resolve(a, values, template) for a in arg)
        found = template["Mappings"][name].get(first, {}).get(second)
        if found is None:
            raise ValueError(f"Fn::FindInMap {name} / {first} / {second}: no such entry")
        return found
    if key == "Fn::If":  # both branches resolved, as CloudFormation resolves a Fn::FindInMap in either
        condition, when_true, when_false = arg
        resolved = [_resolve(branch, values, template) for branch in (when_true, when_false)]
        return resolved[0] if _condition(condition, values, template) else resolved[1]
    if key == "Fn::Join":
        return arg[0].join(_resolve(a, values, template) for a in arg[1])
    if key == "Fn::Sub":
        text, local = (arg, {}) if isinstance(arg, str) else arg
        scope = {**values, **{k: _resolve(v, values, template) for k, v in local.items()}}
        for name, value in sorted(scope.items(), key=lambda item: -len(item[0])):
            text = text.replace(f"${{{name}}}", str(value)).replace(f"${{{name}.Arn}}", str(value))
        return text
    raise ValueError(f"cannot evaluate {key} in the functions' environment")


def _condition(name: str, values: dict[str, str], template: dict[str, Any]) -> bool:
    return condition_holds(template, name, lambda node: _resolve(node, values, template))


def template_environment(
    function_id: str | None = None, region: str = PSEUDO["AWS::Region"], parameters: dict[str, str] | None = None
) -> dict[str, str]:
    """The variables template.yaml gives a function (Globals merged with the function's own), parameters at their
    defaults but for ``parameters``, in a stack in ``region``."""
    template = load_template(REPO / "template.yaml")
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(parameters or {})
    partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
    values.update(RESOURCE_VALUES, **PSEUDO)
    values.update({"AWS::Region": region, "AWS::URLSuffix": url_suffix(region), "AWS::Partition": partition})
    template = language_extensions.apply(template, values, region)  # first, as CloudFormation runs it
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    if function_id:
        own = template["Resources"][function_id]["Properties"].get("Environment", {}).get("Variables", {})
        variables.update(own)
    return {name: str(_resolve(value, values, template)) for name, value in variables.items()}


def lambda_environment(folder: str, memory_mb: int = 256, path: list[Path] | None = None) -> dict[str, str]:
    """What the Lambda python3.11 runtime adds (no credentials: the import makes no AWS call). ``path``: the
    folders after the function's own on sys.path (the layer and the runtime's packages), or None for the
    repository (in the project's virtualenv)."""
    return {
        "LAMBDA_TASK_ROOT": str(FUNCTIONS_DIR / folder),
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_FUNCTION_NAME": f"reviewtune-{folder}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": PSEUDO["AWS::Region"],
        "AWS_DEFAULT_REGION": PSEUDO["AWS::Region"],
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "_HANDLER": "app.handler",
        "PYTHONPATH": os.pathsep.join(str(p) for p in ([FUNCTIONS_DIR / folder, *path] if path else [REPO])),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


def _run(*command: str | Path, **env: str) -> None:
    subprocess.run([str(c) for c in command], check=True, env={**os.environ, **env})


def prepare(form: str, rebuild: bool = False) -> list[Path] | None:
    """sys.path after the function's folder for ``form``: the built layer and the runtime's boto3 (None: venv)."""
    if form == "venv":
        return None
    layer, runtime = BENCH_DIR / "layer", BENCH_DIR / "runtime"
    built = layer / "python" / "aws_lambda_powertools"
    make = ["make", "--no-print-directory", "-C", LAYER_SOURCE]
    variables = [f"ARTIFACTS_DIR={layer}", "LAMBDA_PLATFORM=", f"PYTHON={sys.executable}"]
    # The whole build (wheels from the index) once; the reviewtune package and its bytecode on every run.
    if rebuild or not built.is_dir():
        shutil.rmtree(layer, ignore_errors=True)
        _run(*make, "build-CoreLayer", *variables)
    else:
        _run(*make, "layer-code", *variables)
    if rebuild or not (runtime / "boto3").is_dir():
        shutil.rmtree(runtime, ignore_errors=True)
        _run(sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", runtime, "boto3")
        _run(sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", runtime)
    if form == "shipped":
        return [layer / "python", runtime]
    source = BENCH_DIR / "layer-source"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(layer, source, ignore=shutil.ignore_patterns("__pycache__"))
    return [source / "python", runtime]


def handler_folders() -> dict[str, str]:
    """folder under functions/ -> the template's logical id of its function."""
    template = load_template(REPO / "template.yaml")
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            folder = resource["Properties"]["CodeUri"].rstrip("/").split("/")[-1]
            found[folder] = logical_id
    return found


def import_once(folder: str, env: dict[str, str], extra_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """One import in a new interpreter; as in Lambda (``python -S``) unless it imports from the virtualenv."""
    app = FUNCTIONS_DIR / folder / "app.py"
    as_in_lambda = ("-S",) if env.get(LAMBDA_PATH) else ()
    return subprocess.run(
        [sys.executable, *as_in_lambda, *extra_args, "-c", PROBE, str(app)],
        cwd=FUNCTIONS_DIR / folder,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def _environment(folder: str, function_id: str, path: list[Path] | None) -> dict[str, str]:
    env = {**template_environment(function_id), **lambda_environment(folder, path=path)}
    if path:
        env[LAMBDA_PATH] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # read-only /opt and /var/task: nothing is cached between imports
    return env


def measure(folder: str, function_id: str, runs: int, path: list[Path] | None = None) -> dict[str, Any]:
    env = _environment(folder, function_id, path)
    import_once(folder, env)  # venv: writes the bytecode caches; shipped: reads the files once. Not counted.
    samples = [json.loads(import_once(folder, env).stdout.strip().splitlines()[-1]) for _ in range(runs)]
    wall = [sample["seconds"] for sample in samples]
    cpu = [sample["cpu_seconds"] for sample in samples]
    return {
        "function": folder,
        "runs": runs,
        "median_s": round(statistics.median(wall), 4),
        "min_s": round(min(wall), 4),
        "max_s": round(max(wall), 4),
        "median_cpu_s": round(statistics.median(cpu), 4),
        "wall_s": [round(x, 4) for x in wall],
        "cpu_s": [round(x, 4) for x in cpu],
    }


def import_profile(folder: str, top: int = 25, path: list[Path] | None = None) -> str:
    """The modules with the largest cumulative import time in one run (``python -X importtime``)."""
    env = _environment(folder, handler_folders()[folder], path)
    stderr = import_once(folder, env, ("-X", "importtime")).stderr
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((int(cumulative), depth, name.strip()))
    rows.sort(reverse=True)
    return "\n".join(f"{us / 1000:8.1f} ms  {'  ' * depth}{name}" for us, depth, name in rows[:top])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="imports per handler (median reported)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--importtime", metavar="FOLDER", help="print one import profile of this handler and stop")
    parser.add_argument("--form", choices=FORMS, default="shipped", help="what is imported (see above)")
    parser.add_argument("--rebuild", action="store_true", help="build the layer in .bench-layer/ again")
    args = parser.parse_args(argv)
    path = prepare(args.form, args.rebuild)
    if args.importtime:
        print(import_profile(args.importtime, path=path))
        return 0
    handlers = sorted(handler_folders().items())
    results = [{"form": args.form, **measure(folder, function_id, args.runs, path)} for folder, function_id in handlers]
    print(f"import of functions/<handler>/app.py ({args.form}), {args.runs} fresh processes each")
    print(f"{'handler':<20} {'median':>8} {'min':>8} {'max':>8} {'median CPU':>11}")
    for r in results:
        print(
            f"{r['function']:<20} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s {r['max_s']:>7.3f}s"
            f" {r['median_cpu_s']:>10.3f}s"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
