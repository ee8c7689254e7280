"""The client without a server: what it answers itself."""

from __future__ import annotations

from pathlib import Path

from serve.client import Client

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
