"""Soak: a real TorchServe on 127.0.0.1 under steady mixed load, with hostile requests.

``adpolicy serve``'s server (token auth on, the given key expiry) serves one archive; client
threads (one :class:`~serve.client.Client` each, renewing the key and retrying as it does for
users) send mixed ads (text, image, audio, video, in combinations) and a share of hostile
bodies (not UTF-8, cut JSON, deep nesting, a huge integer, a lone surrogate, unknown fields
with newlines in their names, an empty media string, base64 that is not) for the given time.
Every ``--sample-s`` the RSS of the Java frontend and of the Python workers and the size of
the run directory's logs (``logs/`` and ``torchserve.out``) are recorded.

Printed: per minute the requests and their classes (200, 4xx, 5xx, authorization failures),
the last RSS sample and the logs' size; then the goals: no 5xx, no authorization failure once
the key expired (with ``--token-expiry-min 1`` it expires many times during the soak),
frontend and worker RSS from minute 2 to the last within +10 %, logs bounded.

    python -m benchmarks.soak --artifact ART             # 10 minutes, 8 clients, 5 % bad
    python -m benchmarks.soak --minutes 3 --token-expiry-min 1

Without ``--artifact`` the embedded default model is exported first (minutes).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import requests

from benchmarks.common import GOALS_HEADER, Report, markdown_table
from ensemble import samples
from ensemble.scoring import DEFAULT_DIR
from export.exporter import ExportOptions, export_checkpoint
from serve.archive import ModelSettings, build_archive
from serve.client import AUTH_FAILED, Client
from serve.server import LOGS, ServerSettings, TorchServe

RSS_TARGET = 1.10
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "media"
HEADER = (
    "minute", "requests", "200", "4xx", "5xx", "auth failures", "frontend MiB", "workers MiB",
    "logs MiB",
)  # fmt: skip


def b64(data: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


def good_ads() -> list[dict[str, Any]]:
    """Mixed ads: text alone, image, audio and video each with or without text."""
    image = b64(samples.png_bytes(samples.banner(320, 240)))
    audio = b64(samples.wav_bytes(samples.tone(2.0, rate=16_000, freqs=(330.0,)), 16_000))
    video = b64((EXAMPLES / "calm.mp4").read_bytes())
    texts = ["Fresh coffee, delivered weekly.", "Big summer sale on shoes!", "you idiot"]
    media = [
        {},
        {"image": image},
        {"audio": audio},
        {"video": video},
        {"image": image, "audio": audio},
    ]
    return [
        {"id": f"ad-{i}", **({"text": texts[i % 3]} if i % 5 != 3 else {}), **media[i % 5]}
        for i in range(15)
    ]


def hostile_bodies() -> list[bytes]:
    """Request bodies every one of which must be answered 4xx, never 5xx."""
    return [
        b"\xff\xfe not utf-8",
        b'{"id": "cut", "text": "half',
        b'{"meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"id": "big", "text": "x", "n": ' + b"9" * 10_000 + b"}",
        b'{"id": "surrogate", "text": "\\udc00"}',
        json.dumps({"id": "label", "text": "x", "bad\nfield": 1}).encode(),
        json.dumps({"id": "empty", "text": "hi", "image": ""}).encode(),
        json.dumps({"id": "not-b64", "image": "this is not base64 !!"}).encode(),
        json.dumps({"id": "blank", "text": " \u200b "}).encode(),
        b"[]",
    ]


class Soak:
    """Client threads and a sampler over one running server."""

    def __init__(self, server: TorchServe, model: str, clients: int, bad: float) -> None:
        self.server = server
        self.url = server.predictions_url(model)
        self.clients = clients
        self.bad = bad
        self.start = time.monotonic()
        self.results: list[tuple[float, int, bool]] = []  # (seconds, status, auth failure)
        self.samples: list[tuple[float, float, float, float]] = []  # (s, frontend, workers, logs)
        self.lock = threading.Lock()

    def client_loop(self, seed: int, deadline: float) -> None:
        rng = random.Random(seed)
        client = Client(self.url, key_file=self.server.key_file)
        ads, bodies = good_ads(), hostile_bodies()
        while time.monotonic() < deadline:
            try:
                if rng.random() < self.bad:
                    prediction = client.post_raw(rng.choice(bodies))
                else:
                    prediction = client.predict(rng.choice(ads))
                status, auth = prediction.status, AUTH_FAILED in json.dumps(prediction.body)
            except requests.RequestException:  # no answer at all: counted with the 5xx
                status, auth = 599, False
            with self.lock:
                self.results.append((time.monotonic() - self.start, status, auth))

    def sample(self) -> None:
        frontend = psutil.Process(self.server.pid)
        workers = [p for p in frontend.children(recursive=True) if "python" in p.name()]
        logs = [*(self.server.run_dir / "logs").glob("*"), self.server.run_dir / "torchserve.out"]
        self.samples.append(
            (
                time.monotonic() - self.start,
                frontend.memory_info().rss / 2**20,
                sum(w.memory_info().rss for w in workers) / 2**20,
                sum(p.stat().st_size for p in logs if p.is_file()) / 2**20,
            )
        )

    def run(self, minutes: float, sample_s: float) -> None:
        deadline = time.monotonic() + 60 * minutes
        threads = [
            threading.Thread(target=self.client_loop, args=(seed, deadline), daemon=True)
            for seed in range(self.clients)
        ]
        for thread in threads:
            thread.start()
        while time.monotonic() < deadline:
            self.sample()
            time.sleep(min(sample_s, max(0.0, deadline - time.monotonic())))
        for thread in threads:
            thread.join()
        self.sample()

    def minutes(self) -> list[list[Any]]:
        rows = []
        for minute in range(1, int(max(s for s, *_ in self.samples) // 60) + 2):
            got = [(st, auth) for s, st, auth in self.results if minute - 1 <= s / 60 < minute]
            taken = [x for x in self.samples if x[0] / 60 < minute] or self.samples[:1]
            classes = Counter(st // 100 for st, _ in got)
            rows.append(
                [minute, len(got), classes[2], classes[4], classes[5], sum(a for _, a in got),
                 *taken[-1][1:]]
            )  # fmt: skip
        return [r for r in rows if r[1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", help="export artifact (default: export the default model)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--bad", type=float, default=0.05, help="share of hostile requests")
    parser.add_argument("--token-expiry-min", type=int, default=1)
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    report = Report("soak")
    settings = ServerSettings(token_expiry_min=args.token_expiry_min)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        artifact = args.artifact or export_checkpoint(
            DEFAULT_DIR, root / "artifact", ExportOptions(batch_sizes=(1, 4))
        )
        mar = build_archive(artifact, root / "store", ModelSettings(workers=args.workers))
        with TorchServe.start([mar], run_dir=root / "run", port=0, settings=settings) as server:
            soak = Soak(server, server.models[0], args.clients, args.bad)
            soak.run(args.minutes, args.sample_s)
    rows = soak.minutes()
    report.print(markdown_table(HEADER, rows))
    second, last = rows[min(1, len(rows) - 1)], rows[-1]
    errors5 = sum(r[4] for r in rows)
    auth = sum(r[5] for r in rows)
    bound = (settings.log_files + 1) * settings.log_mb * len(LOGS)
    goals = [
        ["5xx answers", errors5, 0, "met" if errors5 == 0 else "missed"],
        ["authorization failures", auth, 0, "met" if auth == 0 else "missed"],
        [
            "frontend RSS last / minute 2",
            last[6] / second[6],
            RSS_TARGET,
            _ratio(last[6] / second[6]),
        ],
        [
            "workers RSS last / minute 2",
            last[7] / second[7],
            RSS_TARGET,
            _ratio(last[7] / second[7]),
        ],
        ["logs MiB (bound)", last[8], bound, "met" if last[8] <= bound else "missed"],
    ]
    report.print("\n" + markdown_table(GOALS_HEADER, goals))
    report.save({"minutes": [dict(zip(HEADER, r, strict=True)) for r in rows], "goals": goals})


def _ratio(measured: float) -> str:
    return "met" if measured <= RSS_TARGET else f"missed ({measured:.2f})"


if __name__ == "__main__":
    main()
