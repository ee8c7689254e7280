"""A Python client for the endpoint: one ad per request, JSON or multipart, with the token.

Media given as paths (``"media/banner.png"`` or ``{"path": ...}``) are read HERE, on the
client, and sent as base64 (JSON) or as files (multipart): the server never reads paths.

Two failures are handled here rather than returned:

* an expired inference key (TorchServe answers 400 "Token Authorization failed"): with a
  ``key_file``, the client asks the token API of the server's management port for a new key
  (``GET /token?type=inference`` with the ``API`` key of the same file), which TorchServe writes
  to the key file, and retries; when the file already holds another key (another client
  renewed it), that key is used without renewing again. Each renewal invalidates the previous
  key, so clients renewing at once can invalidate each other's: a request renews at most
  ``MAX_RENEWALS`` times;
* a server that is briefly unable to answer (502, 503, 504, and 507 "Worker died" when a worker
  crashed under the request): retried up to ``retries`` times, waiting ``backoff_s``, then twice
  that, and so on. Every other status is returned at once.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from encoders.base import MODALITIES, InputError
from encoders.media import read_file
from ensemble.rows import AdError, ModelInfo, ad_id, error_row
from serve.server import TorchServe, read_token

log = logging.getLogger(__name__)
RETRIED = frozenset({502, 503, 504, 507})
AUTH_FAILED = "Token Authorization failed"
MAX_RENEWALS = 3  # per request: clients renewing at once invalidate each other's new keys
RENEWING = threading.Lock()

MEDIA_FIELDS = tuple(m for m in MODALITIES if m != "text")
BINARY = "application/octet-stream"  # a text/* part would reach the handler decoded


class AuthError(RuntimeError):
    """The server refused the key (none given, or one renewal after another failed): no ad
    can be scored, so it is not an ad's error row."""


@dataclass(frozen=True)
class Prediction:
    """One response.

    Attributes:
        status: The HTTP status (200, or the 4xx/5xx of a bad ad).
        body: The parsed JSON body: a result row, or ``{"status": "error", "errors": ...}``.
        model_version: The archive version that answered (``X-Adpolicy-Model-Version``).
    """

    status: int
    body: Any
    model_version: str | None


def _media_bytes(
    value: Any, field: str, base_dir: Path, *, decode_base64: bool, confine: bool
) -> bytes | None:
    """The bytes of a media value given as a path or bytes (or base64 when ``decode_base64``);
    None for a value sent as it is (a data URI, base64 in a JSON body).

    Raises:
        InputError: A path that cannot be read, or (``confine``) that leads out of
            ``base_dir`` (the server's limits apply on the server).
    """
    if isinstance(value, Mapping) and set(value) == {"path"}:
        value = value["path"]
    if isinstance(value, Mapping) and set(value) == {"base64"} and decode_base64:
        return base64.b64decode(value["base64"])
    if isinstance(value, str) and not value.startswith("data:"):
        return read_file(value, field, base_dir, sys.maxsize, confine=confine)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class Client:
    """Posts ads to ``http://HOST:PORT/predictions/MODEL[/VERSION]``.

    Args:
        url: The predictions URL.
        token: The inference key; or
        key_file: TorchServe's ``key_file.json``, read at every request, and renewed when the
            key expired (see the module docstring).
        management_url: The server's management URL, for the token API (default: from the
            ``server.json`` that ``adpolicy serve`` writes beside the key file).
        timeout: Seconds per request.
        session: A ``requests.Session`` to reuse connections (one per thread).
        retries: Retries of a 502/503/504/507 answer.
        backoff_s: The first wait before a retry; each next one doubles.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        key_file: str | Path | None = None,
        management_url: str | None = None,
        timeout: float = 120.0,
        session: requests.Session | None = None,
        retries: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        self.url = url
        self.token = token
        self.key_file = Path(key_file) if key_file is not None else None
        self.management_url = management_url
        self.timeout = timeout
        self.session = session or requests.Session()
        self.retries = retries
        self.backoff_s = backoff_s
        name, _, version = url.rstrip("/").partition("/predictions/")[2].partition("/")
        self.model: ModelInfo = {"name": name or "unknown", "version": version}

    def headers(self) -> dict[str, str]:
        token = self.token or (read_token(self.key_file) if self.key_file else None)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def predict(
        self,
        ad: Mapping[str, Any],
        *,
        base_dir: str | Path = ".",
        multipart: bool = False,
        confine: bool = False,
    ) -> Prediction:
        """Score one ad.

        Args:
            ad: ``{"id", "text", "image", "audio", "video"}``; media as paths (relative to
                ``base_dir``), bytes, ``{"base64": ...}`` or data URIs.
            base_dir: Directory relative media paths are resolved against.
            multipart: Send multipart/form-data (media as files) instead of JSON.
            confine: Refuse media paths leading out of ``base_dir`` (a file of ads from
                elsewhere must not send the machine's other files), as ``adpolicy score``
                does without ``--allow-any-path``.

        Returns:
            The :class:`Prediction`; a bad ad is a 4xx prediction, not an exception. A media
            file that cannot be read here is answered here, as the server would answer it.
        """
        root = Path(base_dir)
        try:
            media = {
                f: _media_bytes(ad[f], f, root, decode_base64=multipart, confine=confine)
                for f in MEDIA_FIELDS
                if ad.get(f) is not None
            }
        except InputError as err:
            failed = error_row(ad_id(ad, ""), AdError([err]), self.model)
            return Prediction(err.status, failed, None)
        if multipart:
            parts: dict[str, tuple[Any, ...]] = {
                k: (None, _text(v)) for k, v in ad.items() if k not in media
            }
            for f, data in media.items():
                parts[f] = (f, data, BINARY) if data is not None else (None, _text(ad[f]))
            response = self._post(files=parts)
        else:
            encoded = {
                f: {"base64": base64.b64encode(data).decode()}
                for f, data in media.items()
                if data is not None
            }
            response = self._post(json={**ad, **encoded})
        prediction = _prediction(response)
        if prediction.status == 200 or (
            isinstance(prediction.body, dict) and "status" in prediction.body
        ):
            return prediction
        problem = _not_a_row(prediction)  # TorchServe's own answer: no handler saw the ad
        failed = error_row(
            ad_id(ad, ""), AdError.of("body", problem, prediction.status), self.model
        )
        return Prediction(prediction.status, failed, prediction.model_version)

    def post_raw(self, body: bytes, content_type: str | None = "application/json") -> Prediction:
        """Post an already encoded body as it is (a JSON document from a file, ...)."""
        extra = {"Content-Type": content_type} if content_type else {}
        return _prediction(self._post(data=body, extra_headers=extra))

    def _post(
        self, *, extra_headers: Mapping[str, str] | None = None, **body: Any
    ) -> requests.Response:
        """POST with the current key, renewed on an authorization failure; 502/503/504/507
        retried with backoff (see the module docstring).

        Raises:
            AuthError: The key is refused, and renewing it (with a key file) did not help.
        """
        renewals = attempt = 0
        while True:
            headers = {**self.headers(), **(extra_headers or {})}
            response = self.session.post(self.url, headers=headers, timeout=self.timeout, **body)
            if self.key_file is not None and _auth_failed(response) and renewals < MAX_RENEWALS:
                renewals += 1
                with RENEWING:  # one renewal at a time; a key renewed meanwhile is just reused
                    if self.headers()["Authorization"] == headers["Authorization"]:
                        self.renew_key()
                continue
            if _auth_failed(response):
                raise AuthError(
                    f"{self.url} refused the key ({_not_a_row(_prediction(response))}): give "
                    "the server's --key-file or --token"
                    + (f" (renewed {renewals} times through the token API)" if renewals else "")
                )
            if response.status_code not in RETRIED or attempt >= self.retries:
                return response
            wait = self.backoff_s * 2**attempt
            log.info("%s answered %d; retrying in %.1f s", self.url, response.status_code, wait)
            time.sleep(wait)
            attempt += 1

    def renew_key(self) -> None:
        """Ask the token API for a new inference key; TorchServe writes it to the key file.

        Raises:
            RuntimeError: No key file, no management URL, or the token API refused.
        """
        if self.key_file is None:
            raise RuntimeError("renewing the inference key needs the key file")
        url = self.management_url
        if url is None:
            server = TorchServe.find(self.key_file.parent)
            if server is None:
                raise RuntimeError(f"no server.json beside {self.key_file}: give management_url")
            url = server.management_url
        api_key = read_token(self.key_file, "API")
        response = self.session.get(
            f"{url}/token",
            params={"type": "inference"},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=self.timeout,
        )
        if response.status_code != 200:
            raise RuntimeError(f"the token API answered {response.status_code}: {response.text}")
        log.info("inference key renewed through %s/token", url)


def _auth_failed(response: requests.Response) -> bool:
    """Whether TorchServe's frontend refused the key: its own JSON error, not a row (an ad's
    error row may quote the words)."""
    if response.status_code not in (400, 401):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict) and "status" not in body and AUTH_FAILED in str(body.get("message"))
    )


def _not_a_row(prediction: Prediction) -> str:
    """The error of a response that is not a row: TorchServe's own JSON error (a model not
    found) or its frontend's empty 413 for a body over ``max_request_size``."""
    body = prediction.body
    said = str(body.get("message", body) if isinstance(body, dict) else body).strip()
    if prediction.status == 413 and not said:
        return (
            "the server refused the request unread (413, no body): it is larger than the "
            "server's max_request_size, which the archive's media limits set"
        )
    return f"the server answered {prediction.status} without a result: {said[:300] or 'no body'}"


def _prediction(response: requests.Response) -> Prediction:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return Prediction(response.status_code, body, response.headers.get("X-Adpolicy-Model-Version"))
