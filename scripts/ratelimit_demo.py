"""Fire N requests at once with one organisation's token and print the tally.

    TOKEN=$(.venv/bin/python manage.py issue_token --email admin@acme.test)
    .venv/bin/python scripts/ratelimit_demo.py --token "$TOKEN"

Options: --url (default http://127.0.0.1:8000), --requests (default 110),
--path (default /api/v1/org), --concurrency (default 32).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def fire(url: str, token: str) -> tuple[int, dict[str, str], dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # nosec B310 - URL given by the operator
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--requests", type=int, default=110)
    parser.add_argument("--path", default="/api/v1/org")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    target = args.url.rstrip("/") + args.path
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(lambda _: fire(target, args.token), range(args.requests)))

    tally = Counter(status for status, _, _ in results)
    print(f"{args.requests} requests to {target}")
    for status, count in sorted(tally.items()):
        label = {200: "ok", 429: "rate limited"}.get(status, "")
        print(f"  {status} {label:<13} {count}")
    limited = next((r for r in results if r[0] == 429), None)
    if limited:
        status, headers, body = limited
        print("one rejection:")
        for name in ("Retry-After", "RateLimit-Policy", "RateLimit"):
            print(f"  {name}: {headers.get(name)}")
        print(f"  error: {body.get('error', {}).get('message')}")
    unexpected = {s for s in tally if s not in (200, 429)}
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
