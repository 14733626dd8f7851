"""Peak memory of the start (StartTuning, and the reconciler when it starts a claim again) on the largest file it takes.

The start keeps every distinct review of a file in memory to split it (``dataset.split_stream``), then writes each
split through a spooled temporary file and the train reviews' hashes (``tuning.store_splits``). The most a file can
make it keep is ``formats.MAX_ROWS`` distinct reviews filling ``formats.MAX_FILE_BYTES``; how much memory a review
takes depends on its characters, since Python keeps a string at 1, 2 or 4 bytes a character after the widest one in
it:

- ``ascii``: 1,000,000 distinct reviews of plain ASCII, 1 byte a character in the file and in memory;
- ``astral``: the same with one emoji in each, 4 bytes a character in memory for 1 in the file (the worst case:
  reviews of accented letters take 1 byte a character, of other scripts 2, both for 2-3 bytes in the file);
- ``widening``: the same, written in U+3313 (a squared katakana word, 3 bytes in the file) that Unicode NFKC, as
  reviews are compared, makes 4 characters: the most a file may grow before it is refused
  (``dataset.MAX_NORMALIZED_GROWTH``), the longest the comparison of reviews takes.

Each case runs in a fresh process (from the project's virtualenv) with the environment template.yaml gives
StartTuningFunction, which first imports ``functions/start_tuning/app.py`` (boto3, Powertools, reviewtune: its
clients, Logger, Tracer, Metrics and idempotency store stay alive, as in a warm function); the S3 client is a
stand-in that reads what it is given. Reports the process's peak resident memory (VmHWM, the import included)
against the functions' MemorySize, the seconds the work took against their Timeout, and the largest split written
to the temporary folder against their ephemeral storage. The Lambda runtime's own process and the page cache of
that folder count against the function's memory too: the headroom is for them.

    python bench/start_memory.py [--cases ascii astral] [--json bench/results/start_memory.json]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cold_start import FUNCTIONS_DIR, _environment  # noqa: E402
from reviewtune.cfn_yaml import load_template  # noqa: E402
from reviewtune.core.formats import MAX_FILE_BYTES, MAX_ROWS  # noqa: E402

CASES = {"ascii": "", "astral": "\U0001f600 ", "widening": ""}
FILLERS = {"widening": "\u3313"}  # the padding of a case's reviews, FILLER unless named
START_FUNCTIONS = ("StartTuningFunction", "ReconcileFunction")  # both run the start path (reconciler: restarts)
DEFAULT_EPHEMERAL_MB = 512
MiB = 2**20
FILLER = "the fit is right and the fabric feels good, though the colour is a little darker than shown. "


class LargestFile(io.RawIOBase):
    """A TSV of ``rows`` distinct reviews, each padded so the file is as close to ``size`` bytes as it can be,
    made as it is read (never whole in memory)."""

    HEADER = b"sentiment\treview_body\n"

    def __init__(self, marker: str, rows: int = MAX_ROWS, size: int = MAX_FILE_BYTES, filler: str = FILLER):
        self._marker, self._rows, self._filler = marker, rows, filler
        self._row_bytes = (size - len(self.HEADER)) // rows
        self._next, self._pending, self.total = 0, self.HEADER, 0

    def _row(self, index: int) -> bytes:
        start = f"{(index % 3) - 1}\treview {index}: {self._marker}".encode()
        pad = self._row_bytes - len(start) - 1
        padding = (self._filler * (pad // len(self._filler) + 1)).encode()[:pad]
        return start + padding.decode("utf-8", "ignore").encode() + b"\n"  # whole characters only

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._pending) < len(buffer) and self._next < self._rows:
            self._pending += b"".join(self._row(i) for i in range(self._next, min(self._rows, self._next + 4096)))
            self._next = min(self._rows, self._next + 4096)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.total += n
        return n


class DrainingS3:
    """Stands in for the S3 client: reads each body it is given, keeps the largest size."""

    def __init__(self) -> None:
        self.largest = 0

    def put_object(self, Body: Any, **_: Any) -> dict[str, Any]:  # noqa: N803 (boto3's parameter name)
        size = 0
        if isinstance(Body, bytes | bytearray):
            size = len(Body)
        else:
            while chunk := Body.read(MiB):
                size += len(chunk)
        self.largest = max(self.largest, size)
        return {}


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(case: str, rows: int, size: int) -> dict[str, Any]:
    """One case in this process: import the handler as Lambda does, then the start's path over the file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("app", FUNCTIONS_DIR / "start_tuning" / "app.py")
    app = importlib.util.module_from_spec(spec)
    sys.modules["app"] = app  # kept alive to the end, as Lambda keeps the handler's module
    spec.loader.exec_module(app)
    from reviewtune.core.dataset import split_stream
    from reviewtune.core.tuning import store_splits

    imported = _kib("VmRSS")
    started = time.perf_counter()
    body, s3 = LargestFile(CASES[case], rows, size, FILLERS.get(case, FILLER)), DrainingS3()
    dataset = split_stream(body, "largest.tsv", **app.ctx.settings.split_options())
    store_splits(s3, "bucket", "run", dataset)
    return {
        "case": case,
        "file_bytes": body.total,
        "rows_read": dataset.rows_read,
        "rows": {name: len(reviews) for name, reviews in dataset.splits.items()},
        "after_import_mib": round(imported / 1024),
        "peak_mib": round(_kib("VmHWM") / 1024),
        "largest_object_mib": round(s3.largest / MiB, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def limits() -> dict[str, int]:
    """The smallest MemorySize (MB, which Lambda means as MiB), Timeout (s) and EphemeralStorage (MB) of the functions
    that run the start."""
    template = load_template(REPO / "template.yaml")
    globals_ = template.get("Globals", {}).get("Function", {})
    found: dict[str, list[int]] = {"memory_mb": [], "timeout_s": [], "ephemeral_mb": []}
    for function_id in START_FUNCTIONS:
        properties = {**globals_, **template["Resources"][function_id]["Properties"]}
        found["memory_mb"].append(int(properties.get("MemorySize", 128)))
        found["timeout_s"].append(int(properties.get("Timeout", 3)))
        found["ephemeral_mb"].append(int(properties.get("EphemeralStorage", {}).get("Size", DEFAULT_EPHEMERAL_MB)))
    return {name: min(values) for name, values in found.items()}


def measure(case: str, rows: int = MAX_ROWS, size: int = MAX_FILE_BYTES) -> dict[str, Any]:
    env = _environment("start_tuning", "StartTuningFunction", None)
    env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(limits()["memory_mb"])
    command = [sys.executable, __file__, "--child", case, "--rows", str(rows), "--size", str(size)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--rows", type=int, default=MAX_ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=MAX_FILE_BYTES, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.size)))
        return 0
    bounds = limits()
    results = [measure(case, args.rows, args.size) for case in args.cases]
    print(f"the start's peak memory on the largest file it takes ({args.rows:,} distinct reviews, "
          f"{args.size / MiB:,.0f} MiB); the functions' MemorySize {bounds['memory_mb']:,} MiB, Timeout "
          f"{bounds['timeout_s']} s, ephemeral storage {bounds['ephemeral_mb']:,} MiB")
    print(f"{'case':<8} {'file MiB':>9} {'after import':>13} {'peak MiB':>9} {'of memory':>10} {'seconds':>8} "
          f"{'largest split MiB':>18}")
    for r in results:
        share = r["peak_mib"] / bounds["memory_mb"]
        print(f"{r['case']:<8} {r['file_bytes'] / MiB:>9,.0f} {r['after_import_mib']:>13,} {r['peak_mib']:>9,} "
              f"{share:>10.0%} {r['seconds']:>8,.0f} {r['largest_object_mib']:>18,.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"limits": bounds, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
