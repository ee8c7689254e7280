"""From one TorchServe request to one raw ad, or an :class:`~ensemble.batch.AdError`.

TorchServe hands a handler one mapping per request: a JSON, text or binary body arrives as
``{"body": ...}`` (JSON already parsed when the content type is ``application/json`` and the
body is valid JSON, else bytes); a ``multipart/form-data`` request as one entry per form
field (bytes). Two formats are accepted:

* JSON: the ad itself, ``{"id": ..., "text": ..., "image": {"base64": ...}, ...}``;
* multipart: fields ``id`` and ``text`` (text), ``image`` / ``audio`` / ``video`` (files).

Everything else about an ad (sizes, decoding, tokenizing) is checked by the SAME preparation
as offline scoring (:class:`~ensemble.batch.AdPreparer`); this module only unwraps HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from encoders.base import MODALITIES, InputError
from encoders.media import MediaLimits
from ensemble.reader import json_kind, parse_json, structure_error
from ensemble.rows import AdError

TEXT_FIELDS = ("id", "text")
MEDIA_FIELDS = tuple(m for m in MODALITIES if m != "text")
HOW_TO_SEND = "send one ad as JSON (Content-Type: application/json) or as multipart/form-data"


def _fail(field: str, problem: str) -> AdError:
    return AdError([InputError(field, problem)])


def parse_request(
    request: Mapping[str, Any], limits: MediaLimits | None = None, content_type: str = ""
) -> dict[str, Any]:
    """The raw ad of one request.

    Args:
        request: TorchServe's mapping for the request (``"body"`` or form fields; query
            parameters arrive as fields too).
        limits: The record limits (size, nesting depth) of the body.
        content_type: The request's ``Content-Type`` header, if known: it only words the
            error of a body that is neither JSON nor a form TorchServe could split.

    Returns:
        The ad as a dict (not yet validated).

    Raises:
        AdError: An empty body, a body that is not one JSON object (not UTF-8, not JSON, a
            number too big, nested too deep, a lone surrogate), a field that is not UTF-8
            text, or query parameters beside a body.
    """
    limits = limits or MediaLimits()
    if "body" not in request:
        return _parse_form(request, _media_type(content_type))
    extra = sorted(set(request) - {"body"})
    if extra:
        raise _fail(extra[0], "query parameters are not accepted; put every field in the body")
    body = request["body"]
    if isinstance(body, bytes | bytearray | str):
        body = _parse_json(body, limits, content_type)
    elif (error := structure_error(body, "the body", limits, field="body")) is not None:
        raise error  # decoded by TorchServe: still checked as the files are
    if not isinstance(body, dict):
        raise _fail("body", f"expected one ad as a JSON object, got {json_kind(body)}")
    return body


def _parse_json(body: bytes | bytearray | str, limits: MediaLimits, content_type: str) -> Any:
    media_type = _media_type(content_type)
    if not body or not body.strip():
        raise _fail("body", f"empty request body; {HOW_TO_SEND}")
    if media_type.startswith("multipart/"):
        raise _fail(
            "body",
            f"a {media_type} body that could not be split into fields"
            + (
                ": its Content-Type has no boundary"
                if "boundary=" not in content_type.lower()
                else ""
            )
            + "; let the HTTP client write the form and its header (curl -F, requests' files=)",
        )
    value, error = parse_json(
        bytes(body) if isinstance(body, bytearray) else body, "the body", limits, field="body"
    )
    if error is not None:
        if media_type and media_type != "application/json":
            hint = f" (sent as {media_type}; {HOW_TO_SEND})"
            raise AdError([InputError(e.field, e.problem + hint, e.status) for e in error.errors])
        raise error
    return value


def _media_type(content_type: str) -> str:
    """``multipart/form-data`` of ``multipart/form-data; boundary=x``, in lower case."""
    return content_type.partition(";")[0].strip().lower()


def _parse_form(fields: Mapping[str, Any], media_type: str) -> dict[str, Any]:
    if not fields:
        raise _fail(
            "body",
            f"a {media_type} body with no field: its parts do not match the boundary of its "
            "Content-Type"
            if media_type.startswith("multipart/")
            else f"no body; {HOW_TO_SEND}",
        )
    if len(fields) == 1 and next(iter(fields)).lstrip().startswith("{"):
        raise _fail(
            "body", "the body looks like JSON sent as a form: set Content-Type: application/json"
        )
    ad: dict[str, Any] = {}
    errors = []
    for name, value in fields.items():
        if name in TEXT_FIELDS and isinstance(value, bytes | bytearray):
            try:
                ad[name] = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                errors.append(InputError(name, "not valid UTF-8 text"))
        else:
            ad[name] = value
    if errors:  # the id, when it reads, still names the ad's error row
        raise AdError(errors, {"id": ad["id"]} if "id" in ad else None)
    return ad
