"""The real TorchServe under hostile requests and past the inference key's expiry."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ensemble.scoring import Scorer
from serve.client import Client
from serve.server import ServerSettings, TorchServe
from tests.ensemble.test_hostile import good_ad, hostile_line, policies
from tests.serve.helpers import max_score_diff

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def server(
    small_mar: Path, bare_python: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TorchServe]:
    """The small archive alone, its inference key living one minute."""
    with TorchServe.start(
        [small_mar],
        run_dir=tmp_path_factory.mktemp("short-key"),
        port=0,
        python=bare_python,
        settings=ServerSettings(token_expiry_min=1),
    ) as started:
        yield started


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(good_ad, hostile_line()), min_size=1, max_size=8))
def test_hostile_bodies_cost_only_their_own_answer(
    server: TorchServe, offline: Scorer, lines: list[Any]
) -> None:
    client = Client(server.predictions_url(), key_file=server.key_file)
    for line in lines:
        if isinstance(line, dict):
            got = client.predict(line)
            assert got.status == 200, got.body
            assert max_score_diff(got.body, offline.score([line])[0]) <= 1e-5
            assert set(policies(got.body)) == set(policies(offline.score([line])[0]))
        else:
            got = client.post_raw(line)
            assert got.status in (200, 400, 413), (line, got.body)  # never a 5xx
            assert set(got.body) >= {"id", "status", "model", "warnings"}


@pytest.mark.slow
def test_requests_keep_succeeding_after_the_key_expires(server: TorchServe) -> None:
    first = json.loads(server.key_file.read_text())["inference"]["key"]
    client = Client(server.predictions_url(), key_file=server.key_file)
    statuses = []
    deadline = time.monotonic() + 80  # past the one-minute expiry
    while time.monotonic() < deadline:
        statuses.append(client.predict({"text": "still here"}).status)
        time.sleep(2)
    assert set(statuses) == {200}
    assert json.loads(server.key_file.read_text())["inference"]["key"] != first
