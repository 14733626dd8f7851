"""Print the bad-input catalogue as a table: each file through the start_tuning handler on moto, and what came back.

    PYTHONPATH=. .venv/bin/python bench/bad_inputs.py [--width 110]

The same catalogue (tests/support/bad_inputs.py) is asserted entry by entry in tests/functional/test_bad_inputs.py.
"""

from __future__ import annotations

import argparse
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

    from reviewtune.core import reader
    from tests.functional.test_bad_inputs import raw_event
    from tests.support.aws import LambdaContext, create_stack, load_handler
    from tests.support.bad_inputs import CATALOGUE

    rows = []
    with mock_aws():
        stack = create_stack()
        os.environ.update(stack.env())
        handler = load_handler("start_tuning")
        for bad in CATALOGUE:
            saved = {name: getattr(reader, name) for name in bad.limits}
            for name, value in bad.limits.items():
                setattr(reader, name, value)
            try:
                data = bad.data()
                result = handler.handler(raw_event(stack, f"incoming/catalogue/{bad.key}", data, bad.event_size),
                                         LambdaContext())
            finally:
                for name, value in saved.items():
                    setattr(reader, name, value)
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
