"""The client without a server: what it answers itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from serve.client import MAX_RENEWALS, AuthError, Client

# Nothing listens on the discard port: a request that was sent would raise ConnectionError.
NOWHERE = "http://127.0.0.1:9/predictions/none"


def test_an_unreadable_media_file_is_answered_without_a_request(tmp_path: Path) -> None:
    client = Client(NOWHERE, token="t")
    for multipart in (False, True):
        got = client.predict(
            {"id": "a1", "text": "hi", "audio": "media/missing.wav"},
            base_dir=tmp_path,
            multipart=multipart,
        )
        assert got.status == 400
        assert got.body["id"] == "a1"
        assert got.body["status"] == "error"
        assert got.body["errors"] == [
            {
                "field": "audio",
                "error": "cannot read 'media/missing.wav': No such file or directory",
            }
        ]


class FakeSession:
    """Answers POSTs from a script; a GET to the token API writes a new key to the key file."""

    def __init__(self, statuses: list[tuple[int, str]], key_file: Path | None = None) -> None:
        self.statuses = statuses
        self.key_file = key_file
        self.posts: list[dict] = []
        self.gets: list[str] = []

    def post(self, url: str, *, headers: dict, timeout: float, **body) -> requests.Response:
        self.posts.append(headers)
        status, text = self.statuses.pop(0)
        return _response(status, text)

    def get(self, url: str, *, params: dict, headers: dict, timeout: float) -> requests.Response:
        self.gets.append(f"{url}?type={params['type']} {headers['Authorization']}")
        assert self.key_file is not None
        keys = json.loads(self.key_file.read_text())
        keys["inference"]["key"] = "renewed"
        self.key_file.write_text(json.dumps(keys))
        return _response(200, "{}")


def _response(status: int, text: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = text.encode()
    return response


def test_5xx_that_mean_try_again_are_retried_with_backoff() -> None:
    session = FakeSession([(503, "busy"), (507, "Worker died."), (200, '{"status": "ok"}')])
    client = Client(NOWHERE, token="t", session=session, backoff_s=0.01)  # type: ignore[arg-type]
    assert client.predict({"text": "hi"}).status == 200
    assert len(session.posts) == 3
    session = FakeSession([(500, "bug"), (200, "{}")])
    client = Client(NOWHERE, token="t", session=session, backoff_s=0.01)  # type: ignore[arg-type]
    assert client.predict({"text": "hi"}).status == 500  # not retried


def test_an_expired_key_is_renewed_through_the_token_api_once(tmp_path: Path) -> None:
    key_file = tmp_path / "key_file.json"
    keys = {"inference": {"key": "old"}, "management": {"key": "m"}, "API": {"key": "api"}}
    key_file.write_text(json.dumps(keys))
    expired = (400, '{"code": 400, "message": "Token Authorization failed. Token expired"}')
    session = FakeSession([expired, (200, "{}")], key_file)
    client = Client(
        NOWHERE,
        key_file=key_file,
        management_url="http://m",
        session=session,  # type: ignore[arg-type]
    )
    assert client.predict({"text": "hi"}).status == 200
    assert session.gets == ["http://m/token?type=inference Bearer api"]
    assert [h["Authorization"] for h in session.posts] == ["Bearer old", "Bearer renewed"]
    session.statuses = [expired] * 4  # a key that never works: refused after 3 renewals
    with pytest.raises(AuthError, match=r"refused the key .*Token expired.*renewed 3 times"):
        client.predict({"text": "hi"})
    assert len(session.gets) == 1 + MAX_RENEWALS


def test_a_body_over_max_request_size_is_the_ads_error_row() -> None:
    """TorchServe's frontend refuses a body over ``max_request_size`` before any handler:
    413 with an empty body (measured on the real server with a 300 MB body; the test
    servers' limit is 239 MB, too big to send in a test). The client names the ad and why."""
    session = FakeSession([(413, "")])
    client = Client(NOWHERE, token="t", session=session)  # type: ignore[arg-type]
    got = client.predict({"id": "huge", "text": "hi"})
    assert (got.status, got.body["id"], got.body["http_status"]) == (413, "huge", 413)
    assert got.body["errors"] == [
        {
            "field": "body",
            "error": "the server refused the request unread (413, no body): it is larger than "
            "the server's max_request_size, which the archive's media limits set",
        }
    ]


def test_an_error_row_quoting_the_auth_failure_words_is_a_row_not_a_refused_key() -> None:
    """Only TorchServe's own JSON error means a refused key: a row of the handler that quotes
    the words (an ad whose id is them) is that ad's answer, not the end of the run."""
    row = {"id": "Token Authorization failed", "status": "error", "http_status": 400, "errors": []}
    session = FakeSession([(400, json.dumps(row))])
    client = Client(NOWHERE, token="t", session=session)  # type: ignore[arg-type]
    got = client.predict({"id": "Token Authorization failed", "text": "hi"})
    assert (got.status, got.body) == (400, row)


def test_predict_from_a_file_keeps_media_paths_in_the_ads_folder(tmp_path, capsys) -> None:
    """`adpolicy predict` read and uploaded `../../etc/passwd` and absolute paths named by a
    file of ads; `adpolicy score` refuses them. Refused before any request (nothing listens
    at NOWHERE), unless --allow-any-path."""
    from ensemble.cli import main

    ads = tmp_path / "ads" / "ads.jsonl"
    ads.parent.mkdir()
    (tmp_path / "secret.png").write_bytes(b"not for the server")
    ads.write_text(
        '{"id": "up", "image": "../secret.png"}\n'
        + json.dumps({"id": "abs", "image": str(tmp_path / "secret.png")})
        + "\n"
    )
    assert main(["predict", "--url", NOWHERE, "--token", "t", str(ads)]) == 3
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["up", "abs"]
    for row in rows:
        [error] = row["errors"]
        assert error["field"] == "image"
        assert (
            "outside the folder of the ads file (allow it with --allow-any-path)" in error["error"]
        )
    args = ["predict", "--url", NOWHERE, "--token", "t", "--allow-any-path", str(ads)]
    assert main(args) == 4  # read, then sent: nothing listens there
    assert "adpolicy predict:" in capsys.readouterr().err
