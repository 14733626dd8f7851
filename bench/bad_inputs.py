"""Print the bad-input catalogue as a table: each file through the start_tuning handler on moto, and what came back.

    PYTHONPATH=. .venv/bin/python bench/bad_inputs.py [--width 110] [> table.md]

The table goes to standard output; the function's own log lines (Powertools' JSON) go to standard error.

The same catalogue (tests/support/bad_inputs.py) is asserted entry by entry in tests/functional/test_bad_inputs.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=110, help="characters of each reason shown")
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    from moto import mock_aws

    from tests.support.aws import LambdaContext, create_stack, load_event, load_handler
    from tests.support.bad_inputs import CATALOGUE, drop_event, lowered_limits

    rows = []
    # The handler's logger writes to the stdout of its import: stderr here, so the table stays whole.
    with contextlib.redirect_stdout(sys.stderr), mock_aws():
        stack = create_stack()
        os.environ.update(stack.env())
        handler = load_handler("start_tuning")
        for bad in CATALOGUE:
            data = bad.data()
            event = drop_event(bad, data, stack.bucket, f"incoming/catalogue/{bad.key}", load_event("s3_object_created.json"))
            with lowered_limits(bad):
                result = handler.handler(event, LambdaContext())
            messages = stack.messages()
            reason = result.get("reason", "")
            ok = result["status"] == "REJECTED" and bad.expect in reason and len(messages) == 1
            shown = reason if len(reason) <= args.width else reason[: args.width - 3] + "..."
            rows.append((bad.name, f"{len(data):,}", result["status"], len(messages), "yes" if ok else "NO",
                         shown.replace("|", "\\|").replace("\n", " ")))
    print("| # | bad input | bytes | outcome | messages | as expected | reason |")
    print("|---|---|---|---|---|---|---|")
    for i, row in enumerate(rows, 1):
        print(f"| {i} | " + " | ".join(str(c) for c in row) + " |")
    failed = [r[0] for r in rows if r[4] != "yes"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rejected as expected" + (f"; NOT: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
