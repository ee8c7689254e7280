"""Integration: a REAL TorchServe on 127.0.0.1 (see the ``served`` fixture), driven over HTTP.

Offline reference: the eager model the archive's graph was traced from, scored by
``ensemble.scoring.Scorer`` (the small model), and ``ensemble.load()`` (the default model).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from ensemble import samples
from ensemble.cli import main
from ensemble.explain import Explainer
from ensemble.scoring import Scorer, load
from serve.archive import build_archive
from serve.capture import read_capture
from serve.client import Client, Prediction
from serve.commands import TOKEN_COMMAND, how_to_call
from serve.metrics import METRICS
from serve.server import TorchServe, free_port, read_token

from .conftest import b64
from .helpers import (
    assert_results_close,
    max_score_diff,
    metric_value,
    prometheus,
    without_timings,
)

pytestmark = pytest.mark.serve

BATCH_LINE = re.compile(r"batch of (\d+): (\d+) scored, (\d+) failed")


def client(served: TorchServe, model: str = "small", version: str | None = None) -> Client:
    return Client(served.predictions_url(model, version), key_file=served.key_file)


def concurrently(
    jobs: list[Callable[[Client], Prediction]], served: TorchServe
) -> list[Prediction]:
    """Run each job with its own client (connection), all at once."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: job(client(served)), jobs))


def metrics(served: TorchServe) -> list[tuple[str, dict[str, str], float]]:
    return prometheus(requests.get(served.metrics_url, timeout=10).text)


def worker_pids(served: TorchServe, model: str = "small") -> list[int]:
    [version] = served.describe(model)
    assert all(w["status"] == "READY" for w in version["workers"])
    return [int(w["pid"]) for w in version["workers"]]


def batches(served: TorchServe) -> list[tuple[int, int, int]]:
    """(requests, scored, failed) of every batch the workers logged."""
    return [
        tuple(int(g) for g in match.groups())  # type: ignore[misc]
        for line in served.log_lines()
        if (match := BATCH_LINE.search(line))
    ]


def test_the_workers_run_the_archive_code_on_a_python_without_the_package(
    served: TorchServe, bare_python: str, tmp_path: Path
) -> None:
    probe = subprocess.run(
        [bare_python, "-c", "import ensemble"], cwd=tmp_path, capture_output=True, text=True
    )
    assert probe.returncode != 0
    assert "No module named 'ensemble'" in probe.stderr
    workers = psutil.Process(served.pid).children(recursive=True)
    pythons = {
        Path(p.cmdline()[0]) for p in workers if "model_service_worker" in " ".join(p.cmdline())
    }
    assert pythons == {Path(bare_python)}
    ready = [line for line in served.log_lines() if "adpolicy handler ready" in line]
    assert any("small 1.0" in line for line in ready)
    assert any("adpolicy-default 0.1.0" in line for line in ready)


def test_concurrent_requests_are_batched_and_score_as_offline(
    served: TorchServe, good_ads: list[dict[str, Any]], offline: Scorer
) -> None:
    before = metrics(served)
    jobs: list[Callable[[Client], Prediction]] = [partial(Client.predict, ad=ad) for ad in good_ads]
    predictions = concurrently(jobs, served)
    after = metrics(served)
    assert [p.status for p in predictions] == [200] * len(good_ads)
    assert {p.model_version for p in predictions} == {"1.0"}
    want = offline.score(good_ads)
    for got, expected in zip(predictions, want, strict=True):
        assert_results_close(got.body, expected, atol=1e-5)
    worst = max(max_score_diff(p.body, w) for p, w in zip(predictions, want, strict=True))
    assert worst <= 1e-5

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    calls = delta("adpolicy_batch_size_count", ModelName="small")
    served_requests = delta("adpolicy_batch_size_sum", ModelName="small")
    singles = delta("adpolicy_batch_size_bucket", ModelName="small", le="1.0")
    assert served_requests == len(good_ads)
    assert calls < len(good_ads)
    assert singles < calls
    assert max(size for size, _, _ in batches(served)) > 1
    print(f"{len(good_ads)} ads in {calls:g} handler calls, max |served - eager| {worst:.2g}")


def test_bad_ads_in_a_batch_get_their_own_4xx_and_the_good_ones_their_scores(
    served: TorchServe, media: dict[str, bytes], good_ads: list[dict[str, Any]], offline: Scorer
) -> None:
    pids = worker_pids(served)
    seen = len(batches(served))
    jobs: list[Callable[[Client], Prediction]] = [
        lambda c: c.predict(good_ads[4]),
        lambda c: c.predict({"id": "corrupt", "image": media["corrupt"]}),
        lambda c: c.predict(good_ads[5]),
        lambda c: c.predict({"id": "bad-b64", "text": "hi", "image": {"base64": "%%%"}}),
        lambda c: c.post_raw(b"", content_type=None),
        lambda c: c.predict({"id": "oversized", "image": media["oversized"]}),
        lambda c: c.predict(good_ads[6]),
        lambda c: c.post_raw(b'{"id": "broken", "text": ', content_type="application/json"),
        lambda c: c.post_raw(b'{"id": "twice", "text": "hi", "text": "vermin"}'),
    ]
    results = concurrently(jobs, served)
    assert [r.status for r in results] == [200, 400, 200, 400, 400, 413, 200, 400, 400]
    for r, ad in zip([results[0], results[2], results[6]], good_ads[4:7], strict=True):
        assert_results_close(r.body, offline.score([ad])[0], atol=1e-5)
    errors = {r.body["id"]: r.body["errors"] for r in results if r.status != 200}
    assert errors["corrupt"][0]["field"] == "image"
    assert errors["corrupt"][0]["error"].startswith("cannot decode image")
    assert errors["bad-b64"] == [{"field": "image", "error": errors["bad-b64"][0]["error"]}]
    assert "invalid base64" in errors["bad-b64"][0]["error"]
    assert errors["oversized"][0]["error"] == "payload exceeds the limit of 300000 bytes"
    assert any(e[0]["error"].startswith("empty request body") for e in errors.values())
    assert any(e[0]["error"].startswith("the body: not valid JSON") for e in errors.values())
    # parsed by the handler, not by TorchServe's worker (which keeps the last of two keys)
    assert any("the key 'text' is given twice" in e[0]["error"] for e in errors.values())
    mixed = [b for b in batches(served)[seen:] if b[1] and b[2]]
    assert mixed, "no batch held good and bad ads together"
    assert worker_pids(served) == pids  # no worker restart
    print(f"batches (requests, scored, failed): {batches(served)[seen:]}, worker pids {pids}")


def test_a_request_without_the_token_is_rejected(served: TorchServe) -> None:
    url = served.predictions_url()
    ad = {"id": "auth", "text": "hello"}
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        response = requests.post(url, json=ad, headers=headers, timeout=30)
        assert response.status_code == 400
        assert response.json()["type"] == "InvalidKeyException"
    management = requests.get(f"{served.management_url}/models", timeout=30)
    assert management.status_code == 400
    token = read_token(served.key_file)
    response = requests.post(url, json=ad, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200
    assert response.json()["id"] == "auth"


def test_the_model_api_is_off(served: TorchServe, small_mar: Path) -> None:
    response = requests.post(
        f"{served.management_url}/models",
        params={"url": small_mar.name},
        headers=served.headers("management"),
        timeout=30,
    )
    assert response.status_code == 405
    assert response.json()["type"] == "MethodNotAllowedException"


def test_the_metrics_endpoint_shows_the_custom_metrics(
    served: TorchServe, good_ads: list[dict[str, Any]]
) -> None:
    concurrently([lambda c: c.predict(good_ads[1]), lambda c: c.post_raw(b"[1]")], served)
    samples = metrics(served)
    names = {name for name, labels, _ in samples if labels.get("ModelName") == "small"}
    for spec in METRICS:
        suffixes = ("_count", "_sum") if spec.kind == "histogram" else ("",)
        assert {spec.name + s for s in suffixes} <= names, spec.name
    for policy in ("offensive_language", "violence"):
        assert metric_value(samples, "adpolicy_score_count", Policy=policy) >= 1
        assert any(
            n == "adpolicy_flags_total" and labels.get("Policy") == policy
            for n, labels, _ in samples
        )
    assert metric_value(samples, "adpolicy_score_count", Policy="adult") == 0
    assert metric_value(samples, "adpolicy_ads_failed_total", Status="400", Field="body") >= 1
    assert metric_value(samples, "adpolicy_ads_scored_total", ModelName="small") >= 1


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        (
            "multipart/form-data",
            "form-data body that could not be split into fields: its Content-Type has no boundary;",
        ),
        (
            "multipart/mixed; boundary=xyz",
            "multipart/mixed body that could not be split into fields; let",
        ),
        ("multipart/form-data; boundary=other", "its parts do not match the boundary"),
        ("text/plain", "not valid JSON: Expecting value at line 1 column 1 (sent as text/plain;"),
    ],
)
def test_a_form_the_server_cannot_split_is_named_as_a_form(
    served: TorchServe, content_type: str, fragment: str
) -> None:
    """A hand-written multipart body whose Content-Type lacks its boundary, or names another,
    is answered as a form that could not be read, not as broken JSON."""
    form = b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nhello\r\n--xyz--\r\n'
    answer = client(served).post_raw(form, content_type=content_type)
    assert answer.status == 400
    [error] = answer.body["errors"]
    assert error["field"] == "body"
    assert fragment in error["error"]


def test_torchserves_own_error_becomes_the_ads_error_row(served: TorchServe) -> None:
    """A model TorchServe does not serve is answered with TorchServe's own JSON, not a row:
    the client answers it as the ad's error row, so `adpolicy predict` still says which ad
    failed and why."""
    unknown = client(served, model="no-such-model").predict({"id": "lost", "text": "hi"})
    assert (unknown.status, unknown.body["id"], unknown.body["status"]) == (404, "lost", "error")
    [error] = unknown.body["errors"]
    assert error["field"] == "body"
    assert (
        error["error"] == "the server answered 404 without a result: Model not found: no-such-model"
    )


def test_multipart_scores_as_json_does(
    served: TorchServe, media: dict[str, bytes], offline: Scorer
) -> None:
    ad = {"id": "mp", "text": "you idiot", "image": media["image2"], "audio": media["audio"]}
    c = client(served)
    as_json, as_form = c.predict(ad), c.predict(ad, multipart=True)
    assert (as_json.status, as_form.status) == (200, 200)
    assert as_form.body == as_json.body
    assert_results_close(as_form.body, offline.score([ad])[0], atol=1e-5)
    form: dict[str, Any] = {
        "id": (None, "curl"),
        "image": ("banner.png", media["image0"], "image/png"),
    }
    curl_like = requests.post(
        served.predictions_url(),
        files=form,
        headers=served.headers(),
        timeout=30,
    )
    assert curl_like.status_code == 200
    assert curl_like.json()["id"] == "curl"
    assert set(curl_like.json()["modalities"]) == {"image"}


def test_the_default_archive_scores_as_offline(served: TorchServe) -> None:
    ads = [
        {"id": "d1", "text": "Fresh coffee, delivered weekly."},
        {"id": "d2", "text": "you idiot, buy this now"},
        {"id": "d3", "text": "Limited offer " * 40},
        {  # past max_length: served on windows over all of it, as offline
            "id": "d4",
            "text": "Visit our showroom for the best deals on sofas and beds, free delivery. " * 12
            + "Muslims are disgusting vermin and should be wiped out.",
        },
    ]
    c = client(served, "adpolicy-default")
    predictions = [c.predict(ad) for ad in ads]
    assert [p.status for p in predictions] == [200, 200, 200, 200]
    assert predictions[3].body["policies"]["hate_speech"]["flag"]
    for got, want in zip(predictions, load().score(ads), strict=True):
        assert_results_close(got.body, want, atol=1e-5)  # decisions and calibration included
    # the default's stored decisions, applied by the served handler
    body = predictions[1].body
    assert body["decision"] in ("review", "block")  # no text is approved automatically
    assert body["policies"]["offensive_language"]["decision"] in ("review", "block")
    assert "raw_score" in body["policies"]["offensive_language"]
    assert body["model"]["decisions"]["offensive_language"]["method"] == "learn_then_test"
    assert body["model"]["decisions"]["loudness"]["method"] == "margin"


def test_the_explanations_endpoint_explains_a_text_and_an_image_ad(served: TorchServe) -> None:
    """TorchServe's ``/explanations`` reaches the same handler: the rows gain the explanation
    the offline explainer gives with the eager default model (word attributions; the
    low_quality_image map of a partly blurred scene), and ``/predictions`` stays plain."""
    image, _ = samples.partly_blurred(640, 480, (0, 0, 460, 340), seed=2)
    ads: list[dict[str, Any]] = [
        {"id": "why-text", "text": "this shit is insane, grab it before these bitches sell out"},
        {"id": "why-image", "image": b64(samples.png_bytes(image))},
    ]
    url = f"{served.inference_url}/explanations/adpolicy-default"
    answers = [requests.post(url, json=ad, headers=served.headers(), timeout=120) for ad in ads]
    assert [a.status_code for a in answers] == [200, 200], [a.text[:300] for a in answers]
    want = Explainer(load()).explain(ads)
    for answer, expected in zip(answers, want, strict=True):
        assert_results_close(without_timings(answer.json()), without_timings(expected), atol=1e-4)
    text = answers[0].json()["explanation"]["text"]
    attribution = text["attribution"]["offensive_language"]
    assert text["words"][attribution.index(max(attribution))] == "bitches"
    image_map = answers[1].json()["explanation"]["image"]["attribution"]["low_quality_image"]
    assert len(image_map) == 7
    assert answers[1].json()["flags"] == ["low_quality_image"]
    assert "explanation" not in client(served, "adpolicy-default").predict(ads[0]).body


def test_capture_records_served_ads_without_media(
    served: TorchServe, capture_file: Path, good_ads: list[dict[str, Any]]
) -> None:
    c = client(served)
    assert c.predict(good_ads[7]).status == 200
    assert c.post_raw(b"").status == 400
    records = list(read_capture(capture_file))
    ok = [r for r in records if r["id"] == good_ads[7]["id"]]
    assert ok
    assert ok[-1]["status"] == "ok"
    assert ok[-1]["model"]["name"] == "small"
    assert any(r["status"] == "error" and r["http_status"] == 400 for r in records)
    assert good_ads[7]["video"]["base64"][:64] not in capture_file.read_text()


def test_predict_cli_reads_media_paths_on_the_client(
    served: TorchServe, media: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "banner.png").write_bytes(media["image0"])
    ads = tmp_path / "ads.jsonl"
    ads.write_text(
        json.dumps({"id": "cli-1", "text": "hello", "image": "media/banner.png"})
        + "\n"
        + json.dumps({"id": "cli-2", "image": b64(b"not an image")})
        + "\n"
    )
    url = served.predictions_url()
    for extra in ([], ["--multipart"]):
        capsys.readouterr()
        code = main(["predict", "--url", url, "--key-file", str(served.key_file), str(ads), *extra])
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert code == 3  # one ad failed: EXIT_AD_ERRORS, as score's
        assert [(r["id"], r["http_status"]) for r in lines] == [("cli-1", 200), ("cli-2", 400)]
        assert set(lines[0]["modalities"]) == {"text", "image"}


def test_predict_with_a_refused_key_is_fatal_not_an_error_row_per_ad(
    served: TorchServe, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong token fails every ad alike: `adpolicy predict` stops with exit 4 and says the
    key was refused (it wrote a 400 row per ad and exited 3, as if the ads were bad)."""
    ads = tmp_path / "ads.jsonl"
    ads.write_text('{"id": "a", "text": "fresh coffee"}\n{"id": "b", "text": "tea"}\n')
    url = served.predictions_url()
    assert main(["predict", "--url", url, "--token", "not-the-key", str(ads)]) == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert f"adpolicy predict: {url} refused the key (" in err
    assert "Token Authorization failed" in err


def test_predict_and_serve_say_what_is_wrong_without_a_traceback(tmp_path, capsys) -> None:
    ads = tmp_path / "ads.jsonl"
    ads.write_text('{"id": "a", "text": "fresh coffee"}\n')
    closed = f"http://127.0.0.1:{free_port()}/predictions/m"  # nothing listens there
    assert main(["predict", "--url", closed, "--token", "t", str(tmp_path / "none.jsonl")]) == 4
    assert "none.jsonl" in capsys.readouterr().err
    assert main(["predict", "--url", closed, "--token", "t", str(ads)]) == 4
    assert "adpolicy predict:" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "none.mar"), "--run-dir", str(tmp_path / "run")]) == 4
    assert "no archive at" in capsys.readouterr().err


def test_serve_prints_how_to_call_it(served: TorchServe) -> None:
    printed = how_to_call(served)
    assert served.predictions_url() in printed
    assert f"TOKEN=$({TOKEN_COMMAND} {served.key_file})" in printed
    assert 'curl -H "Authorization: Bearer $TOKEN"' in printed
    assert f"adpolicy serve --stop --run-dir {served.run_dir}" in printed


def test_a_second_version_registered_and_made_default(
    small_mar: Path, serve_artifact: Path, tmp_path: Path
) -> None:
    """Through the management API, enabled for this server only. This server holds only the
    small archive, so its max_request_size is small enough to test: TorchServe itself
    refuses a larger request, and keeps serving."""
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy2(small_mar, store / "small.mar")
    v2 = build_archive(serve_artifact, tmp_path / "v2", version="2.0")
    shutil.copy2(v2, store / "small-v2.mar")
    with TorchServe.start(
        [store / "small.mar"], run_dir=tmp_path / "run", port=0, model_api=True
    ) as server:
        manage = server.management_url
        headers = server.headers("management")
        ad = {"id": "v", "text": "hello"}
        assert client(server).predict(ad).model_version == "1.0"
        registered = requests.post(
            f"{manage}/models",
            params={"url": "small-v2.mar", "initial_workers": "1", "synchronous": "true"},
            headers=headers,
            timeout=120,
        )
        assert registered.status_code == 200, registered.text
        assert client(server).predict(ad).model_version == "1.0"  # registered, not default
        made_default = requests.put(
            f"{manage}/models/small/2.0/set-default", headers=headers, timeout=30
        )
        assert made_default.status_code == 200, made_default.text
        assert client(server).predict(ad).model_version == "2.0"
        assert client(server, version="1.0").predict(ad).model_version == "1.0"
        versions = {v["modelVersion"] for v in server.describe("small")}
        assert versions == {"1.0", "2.0"}
        url = server.predictions_url()
        huge = requests.post(
            url, json={"text": "x" * (5 << 20)}, headers=server.headers(), timeout=60
        )
        assert huge.status_code == 413
        assert client(server).predict(ad).status == 200
