"""``python -m reviewtune.local.sagemaker --port 8085 --workdir .reviewtune/sagemaker``: serve until interrupted.

S3 and EventBridge are reached through the standard environment (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_EVENTBRIDGE`` or ``AWS_ENDPOINT_URL``, credentials, ``AWS_DEFAULT_REGION``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from .service import LocalSageMaker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m reviewtune.local.sagemaker", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--workdir", type=Path, required=True, help="where job folders are created")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--account-id", default="123456789012")
    parser.add_argument("--total-cpus", type=int, default=None, help="CPUs shared by parallel training jobs")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    service = LocalSageMaker(
        workdir=args.workdir, region=args.region, account_id=args.account_id, total_cpus=args.total_cpus
    )
    url = service.start(args.host, args.port)
    print(url, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    service.stop()


if __name__ == "__main__":
    main()
