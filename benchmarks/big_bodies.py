"""Many request bodies near the size limit at once: the endpoint must answer each and live.

``max_request_size`` admits the largest valid ad (every medium at its limit, base64: about
228 MiB by default), and a frontend holds a body several times over while it passes it to a
worker, so a few such bodies at once fill the Java frontend's memory. This sends ``--clients``
bodies of ``--mib`` MiB at once to a running endpoint (JSON with one large ``meta`` string,
which the handler accepts and ignores), then one small ad, and prints what each got.

    adpolicy serve model_store/adpolicy-default.mar --no-auth --port 8288 --run-dir /tmp/big
    python -m benchmarks.big_bodies --url http://127.0.0.1:8288/predictions/adpolicy-default
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from benchmarks.common import markdown_table, start


def post(url: str, body: bytes, timeout: float) -> str:
    """The status of one POST of ``body``, or what broke the connection."""
    try:
        response = requests.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout
        )
        return str(response.status_code)
    except requests.RequestException as err:
        return type(err).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the endpoint's predictions URL")
    parser.add_argument("--clients", type=int, default=10, help="bodies sent at once")
    parser.add_argument("--mib", type=int, default=200, help="size of each body")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    report = start("big_bodies", 1)
    body = json.dumps({"id": "big", "text": "hi", "meta": "a" * (args.mib << 20)}).encode()
    began = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        statuses = list(pool.map(lambda _: post(args.url, body, args.timeout), range(args.clients)))
    seconds = time.perf_counter() - began
    after = post(args.url, json.dumps({"id": "after", "text": "fresh coffee"}).encode(), 60.0)
    rows = [[status, count] for status, count in sorted(Counter(statuses).items())]
    report.print(f"{args.clients} bodies of {args.mib} MiB at once, answered in {seconds:.1f} s\n")
    report.print(markdown_table(["status", "requests"], rows))
    report.print(f"\nA small ad right after: {after}")
    report.save({"args": vars(args), "statuses": statuses, "seconds": seconds, "after": after})


if __name__ == "__main__":
    main()
