"""The handler in process, driven as TorchServe's worker drives it: TorchServe's own Context,
RequestProcessor and metrics cache (no server), on batches mixing good and bad requests."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import yaml
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from ensemble.batch import PreparedAd
from ensemble.explain import Explainer
from ensemble.rows import Row
from ensemble.scoring import Scorer
from export.artifact import ArtifactError
from serve.archive import ARTIFACT_DIR, CAPTURE_ENV, ModelSettings
from serve.capture import read_capture
from serve.handler import EXPLAIN_HEADER, MODEL_HEADER, VERSION_HEADER, AdPolicyHandler
from serve.metrics import METRICS, default_metrics_config, metrics_config

from .conftest import SERVE_SETTINGS, b64
from .helpers import assert_results_close, without_timings

Response = tuple[int, dict[str, Any], dict[str, str]]


@pytest.fixture(scope="module")
def model_dir(serve_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unpacked archive as far as the handler looks: ``artifact/`` (the export)."""
    root = tmp_path_factory.mktemp("model-dir")
    (root / ARTIFACT_DIR).symlink_to(serve_artifact, target_is_directory=True)
    return root


def make_context(model_dir: Path, tmp_path: Path, model_config: dict[str, Any]) -> Context:
    """A Context as TorchServe's worker builds it, with the metrics config `adpolicy serve`
    writes."""
    metrics_file = tmp_path / "metrics.yaml"
    metrics_file.write_text(yaml.safe_dump(metrics_config(default_metrics_config())))
    cache = MetricsCacheYamlImpl(str(metrics_file))
    cache.initialize_cache()
    cache.model_name = "small"
    manifest = {"model": {"modelName": "small", "modelVersion": "1.0"}}
    return Context("small", str(model_dir), manifest, 8, None, "0.12.0", True, cache, model_config)


def run_batch(
    handler: AdPolicyHandler, context: Context, batch: list[Any], explain: Collection[int] = ()
) -> list[Response]:
    """What TorchServe's Service.predict does around handle(): request ids and processors
    (the requests at ``explain`` came to ``/explanations``: TorchServe's ``explain`` header)."""
    context.request_ids = {i: f"req-{i}" for i in range(len(batch))}
    context.request_processor = [
        RequestProcessor({EXPLAIN_HEADER: "True"} if i in explain else {})
        for i in range(len(batch))
    ]
    context.metrics.set_request_ids(context.request_ids)
    bodies = handler.handle(batch, context)
    assert len(bodies) == len(batch)
    return [
        (context.get_response_status(i)[0], bodies[i], context.get_response_headers(i))
        for i in range(len(batch))
    ]


@pytest.fixture(scope="module")
def handler(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[AdPolicyHandler, Context]:
    context = make_context(
        model_dir, tmp_path_factory.mktemp("context"), SERVE_SETTINGS.to_model_config()
    )
    handler = AdPolicyHandler()
    handler.initialize(context)
    return handler, context


def offline_result(offline: Scorer, ad: dict[str, Any]) -> Row:
    return offline.score([ad])[0]


def test_a_batch_with_bad_items_answers_each_on_its_own(
    handler: tuple[AdPolicyHandler, Context],
    media: dict[str, bytes],
    good_ads: list[dict[str, Any]],
    offline: Scorer,
) -> None:
    """Good items get their scores, each bad one its own 4xx naming the field."""
    h, context = handler
    multipart = {"id": b"mp-1", "text": b"you idiot", "image": media["image1"]}
    batch = [
        {"body": good_ads[0]},
        {"body": {"id": "bad-b64", "image": {"base64": "not base64 at all!"}}},
        multipart,
        {"body": b""},
        {"body": {"id": "corrupt", "text": "hello", "image": b64(media["corrupt"])}},
        {"body": {"id": "too-big", "image": b64(media["oversized"])}},
        {"body": good_ads[3]},
    ]
    responses = run_batch(h, context, batch)
    assert [status for status, _, _ in responses] == [200, 400, 200, 400, 400, 413, 200]
    for _, _, headers in responses:
        assert headers["content-type"] == "application/json"
        assert headers[MODEL_HEADER] == "small"
        assert headers[VERSION_HEADER] == "1.0"
    assert_results_close(responses[0][1], offline_result(offline, good_ads[0]))
    assert_results_close(responses[6][1], offline_result(offline, good_ads[3]))
    offline_multipart = {"id": "mp-1", "text": "you idiot", "image": media["image1"]}
    assert_results_close(responses[2][1], offline_result(offline, offline_multipart))
    errors = {body["id"]: body["errors"][0] for status, body, _ in responses if status != 200}
    assert all(body["model"] == responses[0][1]["model"] for _, body, _ in responses)
    assert errors["bad-b64"]["field"] == "image"
    assert "invalid base64" in errors["bad-b64"]["error"]
    assert errors["req-3"] == {
        "field": "body",
        "error": "empty request body; send one ad as JSON (Content-Type: application/json) "
        "or as multipart/form-data",
    }
    assert errors["corrupt"]["field"] == "image"
    assert "cannot decode image" in errors["corrupt"]["error"]
    assert errors["too-big"]["field"] == "image"
    assert "exceeds the limit of 300000 bytes" in errors["too-big"]["error"]


@pytest.mark.parametrize("first", ["explained", "predicted"])
def test_each_request_to_explanations_is_explained_in_a_mixed_batch(
    handler: tuple[AdPolicyHandler, Context],
    media: dict[str, bytes],
    good_ads: list[dict[str, Any]],
    offline: Scorer,
    first: str,
) -> None:
    """TorchServe's base handler looks at the first request only; ours reads each one's
    header: explained rows equal offline explanations of the eager model, predictions stay
    plain rows, a bad request keeps its 4xx (whichever request comes first)."""
    h, context = handler
    text_ad = {"id": "why-text", "text": "you idiot, buy now"}
    image_ad = {"id": "why-image", "image": b64(media["image1"])}
    batch = [{"body": text_ad}, {"body": good_ads[2]}, {"body": image_ad}, {"body": {"id": "x"}}]
    explain = {0, 2, 3} if first == "explained" else {2, 3}
    responses = run_batch(h, context, batch, explain)
    assert [status for status, _, _ in responses] == [200, 200, 200, 400]
    assert ("explanation" in responses[0][1]) == (first == "explained")
    assert "explanation" not in responses[1][1]
    assert_results_close(responses[1][1], offline_result(offline, good_ads[2]))
    want = Explainer(offline).explain([text_ad, image_ad])
    explained = [0, 2] if first == "explained" else [2]
    for i in explained:
        got = responses[i][1]
        assert_results_close(without_timings(got), without_timings(want[i // 2]), atol=1e-4)
    image = responses[2][1]["explanation"]["image"]
    assert set(image["attribution"]) == {"violence"}  # adult is untrained: never explained
    assert len(image["attribution"]["violence"]) == 7


def test_rows_and_the_model_info_say_how_each_policy_decides(
    handler: tuple[AdPolicyHandler, Context], good_ads: list[dict[str, Any]]
) -> None:
    h, context = handler
    responses = run_batch(h, context, [{"body": good_ads[0]}, {"body": b""}])
    ok, refused = responses[0][1], responses[1][1]
    scored = {n: e for n, e in ok["policies"].items() if e["status"] == "scored"}
    assert scored
    for entry in scored.values():  # no band stored: the single threshold decides
        assert entry["decision"] == ("block" if entry["flag"] else "allow")
    assert ok["decision"] == ("block" if ok["flags"] else "allow")
    assert h.describe_handle() == ok["model"] == refused["model"]
    assert ok["model"]["decisions"]["offensive_language"] == {"method": "threshold"}


@pytest.mark.parametrize(
    ("request_", "status", "field", "fragment"),
    [
        ({"body": b"{not json"}, 400, "body", "not valid JSON: Expecting property name"),
        ({"body": b'{"text": "hi", "text": "vermin"}'}, 400, "body", "'text' is given twice"),
        ({"body": b'{"text": "hi", "meta": NaN}'}, 400, "body", "NaN is not a JSON number"),
        ({"body": [{"text": "a"}]}, 400, "body", "expected one ad as a JSON object, got an array"),
        ({"body": {"text": "hi", "colour": "red"}}, 400, "colour", "unknown field"),
        ({"body": {"image": "/etc/passwd"}}, 400, "image", "file paths are not accepted"),
        ({"body": {"text": "a" * 20_001}}, 413, "text", "exceeds the limit of 20000"),
        ({"body": {"id": "x"}}, 400, "ad", "no text, image, audio or video field"),
        ({"body": {"id": True, "text": "a"}}, 400, "id", "expected a string or integer"),
        ({"text": b"\xff\xfe"}, 400, "text", "not valid UTF-8"),
        ({'{"text": "hi"}': b""}, 400, "body", "set Content-Type: application/json"),
        ({"body": {"text": "hi"}, "debug": b"1"}, 400, "debug", "query parameters"),
    ],
)
def test_each_malformed_request_gets_its_own_error(
    handler: tuple[AdPolicyHandler, Context],
    good_ads: list[dict[str, Any]],
    request_: dict[str, Any],
    status: int,
    field: str,
    fragment: str,
) -> None:
    """In a batch of two, the malformed request fails alone, with the field and the problem."""
    h, context = handler
    (bad_status, bad, _), (good_status, good, _) = run_batch(
        h, context, [request_, {"body": good_ads[1]}]
    )
    assert (bad_status, good_status) == (status, 200)
    assert bad["status"] == "error"
    assert bad["http_status"] == status
    assert bad["errors"][0]["field"] == field
    assert fragment in bad["errors"][0]["error"]
    assert good["id"] == good_ads[1]["id"]
    assert good["status"] == "ok"


def test_text_the_model_cannot_read_is_answered_with_a_warning(
    handler: tuple[AdPolicyHandler, Context],
    good_ads: list[dict[str, Any]],
    offline: Scorer,
) -> None:
    """A text in another script is scored with the warning offline scoring gives it (naming
    ``text``); the good ads and the bad request of its batch answer as they do alone."""
    h, context = handler
    russian = {"id": "russian", "text": "Большая распродажа обуви", "image": good_ads[0]["image"]}
    mostly = {"id": "mostly", "text": "Купите новый iPhone сегодня"}
    batch = [
        {"body": russian},
        {"body": good_ads[1]},
        {"body": {"id": "bad", "text": 3}},
        {"body": mostly},
    ]
    responses = run_batch(h, context, batch)
    assert [status for status, _, _ in responses] == [200, 200, 400, 200]
    (warning,) = responses[0][1]["warnings"]
    assert warning.startswith("text: no Latin letter or digit in it")
    assert responses[3][1]["warnings"][0].startswith("text: 18 of its 24 letters are not")
    assert responses[1][1]["warnings"] == []
    assert responses[2][1]["errors"][0]["field"] == "text"
    for i, ad in ((0, russian), (1, good_ads[1]), (3, mostly)):
        assert_results_close(responses[i][1], offline_result(offline, ad))


def test_a_form_whose_text_is_not_utf_8_keeps_its_id_and_names_each_bad_field(
    handler: tuple[AdPolicyHandler, Context],
) -> None:
    h, context = handler
    [(status, body, _)] = run_batch(h, context, [{"id": b"m15", "text": b"caf\xe9"}])  # Latin-1
    assert (status, body["id"]) == (400, "m15")
    assert body["errors"] == [{"field": "text", "error": "not valid UTF-8 text"}]
    [(_, both, _)] = run_batch(h, context, [{"id": b"\xff", "text": b"\xfe"}])
    assert both["id"] == "req-0"  # no readable id: the request's
    assert [e["field"] for e in both["errors"]] == ["id", "text"]


def test_an_ad_without_id_is_named_after_its_request(
    handler: tuple[AdPolicyHandler, Context],
) -> None:
    h, context = handler
    [(status, body, _)] = run_batch(h, context, [{"body": {"text": "Fresh coffee"}}])
    assert status == 200
    assert body["id"] == "req-0"


def test_metrics_of_a_batch(
    handler: tuple[AdPolicyHandler, Context],
    good_ads: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Batch size, times, scored / failed counts, flags and scores per policy are emitted."""
    h, context = handler
    caplog.set_level(logging.INFO, logger="ts.metrics.caching_metric")
    run_batch(h, context, [{"body": good_ads[0]}, {"body": good_ads[1]}, {"body": b"["}])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[METRICS]")]
    emitted = {line[len("[METRICS]") :].split(".", 1)[0] for line in lines}
    assert {name for name in emitted if name.startswith("adpolicy_")} == {s.name for s in METRICS}
    [batch_size] = [line for line in lines if line.startswith("[METRICS]adpolicy_batch_size.")]
    assert ":3|#ModelName:small,Level:Model|" in batch_size
    [failed] = [line for line in lines if "adpolicy_ads_failed_total" in line]
    assert ":1|#Status:400,Field:body,ModelName:small,Level:Model|" in failed
    scores = [line for line in lines if line.startswith("[METRICS]adpolicy_score.")]
    assert sum("Policy:violence" in s for s in scores) == 2  # both good ads
    assert sum("Policy:offensive_language" in s for s in scores) == 2
    assert not any("Policy:adult" in s for s in scores)  # untrained: never a score


def test_a_batch_of_only_bad_requests_skips_the_graph(
    handler: tuple[AdPolicyHandler, Context], caplog: pytest.LogCaptureFixture
) -> None:
    h, context = handler
    caplog.set_level(logging.INFO, logger="ts.metrics.caching_metric")
    responses = run_batch(h, context, [{"body": b""}, {"body": {"text": 3}}])
    assert [status for status, _, _ in responses] == [400, 400]
    assert not any("adpolicy_inference_seconds" in r.getMessage() for r in caplog.records)


def test_an_unexpected_failure_costs_one_request(
    handler: tuple[AdPolicyHandler, Context],
    good_ads: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault injection: a preparation bug on one ad answers 500 for it, 200 for the rest."""
    h, context = handler
    prepare = h.preparer.prepare

    def broken(ad: Any, **kwargs: Any) -> PreparedAd:
        if ad["id"] == "boom":
            raise RuntimeError("a bug")
        return prepare(ad, **kwargs)

    monkeypatch.setattr(h.preparer, "prepare", broken)
    responses = run_batch(
        h, context, [{"body": {"id": "boom", "text": "x"}}, {"body": good_ads[1]}]
    )
    assert [status for status, _, _ in responses] == [500, 200]
    assert responses[0][1]["errors"][0]["error"].startswith("internal error")


def test_a_graph_failure_on_one_ad_costs_only_that_ad(
    handler: tuple[AdPolicyHandler, Context],
    good_ads: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault injection: the graph raises on any batch holding the poisoned ad; the batch is
    scored again ad by ad, and only that ad answers 500."""
    h, context = handler
    run = h.scorer.run

    def fragile(prepared: Any) -> Any:
        if any(p.id == "poison" for p in prepared):
            raise RuntimeError("a kernel bug")
        return run(prepared)

    monkeypatch.setattr(h.scorer, "run", fragile)
    bodies = [{"body": good_ads[0]}, {"body": {"id": "poison", "text": "x"}}, {"body": good_ads[1]}]
    responses = run_batch(h, context, bodies)
    assert [status for status, _, _ in responses] == [200, 500, 200]
    assert responses[1][1]["errors"][0]["error"].startswith("internal error while scoring")


def test_capture_writes_one_summary_per_request(
    model_dir: Path, tmp_path: Path, good_ads: list[dict[str, Any]]
) -> None:
    """model-config ``capture`` turns capture on: a record per request, never the media."""
    path = tmp_path / "capture" / "ads.jsonl"
    settings = ModelSettings(capture={"path": str(path), "max_bytes": 1 << 20})
    context = make_context(model_dir, tmp_path, settings.to_model_config())
    h = AdPolicyHandler()
    h.initialize(context)
    run_batch(h, context, [{"body": good_ads[0]}, {"body": b""}, {"body": good_ads[3]}])
    records = list(read_capture(path))
    assert [r["id"] for r in records] == ["good-0", "req-1", "good-3"]
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert records[1]["http_status"] == 400
    assert {r["model"]["name"] for r in records} == {"small"}  # failed ads are the model's too
    assert set(records[0]["scores"]) == {"offensive_language", "violence"}
    assert records[0]["presence"]["image"]
    assert not records[0]["presence"]["video"]
    assert "base64" not in path.read_text()
    run_batch(h, context, [{"body": good_ads[1]}, {"body": good_ads[2]}], explain={0})
    captured = [r["id"] for r in read_capture(path)]
    assert captured == ["good-0", "req-1", "good-3", "good-2"]  # the explanation is no traffic


def test_capture_path_from_the_environment(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``adpolicy serve --capture`` reaches the workers as $ADPOLICY_CAPTURE."""
    path = tmp_path / "env.jsonl"
    monkeypatch.setenv(CAPTURE_ENV, str(path))
    context = make_context(model_dir, tmp_path, SERVE_SETTINGS.to_model_config())
    h = AdPolicyHandler()
    h.initialize(context)
    run_batch(h, context, [{"body": {"id": "e", "text": "hello"}}])
    assert [r["id"] for r in read_capture(path)] == ["e"]


def test_initialize_refuses_a_modified_graph(serve_artifact: Path, tmp_path: Path) -> None:
    root = tmp_path / "model"
    shutil.copytree(serve_artifact, root / ARTIFACT_DIR)
    graph = root / ARTIFACT_DIR / "model.pt"
    graph.write_bytes(graph.read_bytes() + b"\0")
    context = make_context(root, tmp_path, {})
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        AdPolicyHandler().initialize(context)
