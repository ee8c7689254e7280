"""The TorchServe handler: one graph, dynamic batching, one status per request.

TorchServe hands :meth:`AdPolicyHandler.handle` up to ``batchSize`` requests at once. Each is
parsed (:func:`serve.payload.parse_request`) and prepared by the SAME
:class:`~ensemble.batch.AdPreparer` as offline scoring; a request that fails either step
becomes its own 4xx response (``context.set_response_status(code, phrase, idx)``) with a JSON
body naming the field and the problem, and never fails its batch. The graph runs once on the
good items; :class:`~ensemble.postprocess.ResultFormatter` turns its outputs into the same
result rows as offline scoring. Every response is JSON and carries the archive's model name and
version in the ``X-Adpolicy-Model`` / ``X-Adpolicy-Model-Version`` headers.

The same handler answers TorchServe's ``/explanations`` endpoint: TorchServe marks such a
request with the header ``explain: True``, and its row gains an ``explanation``
(:class:`~ensemble.explain.Explainer`: word attributions and an image occlusion map through the
same graph, the analyzers' per-second curves, the per-modality breakdown). The header is read
per request, so a batch mixing predictions and explanations gives each what it asked for (the
base handler looks at the first request only).

Settings come from the export manifest (policies, thresholds, calibrations and decision bands,
preparation, media limits) and
from ``model-config.yaml`` (:class:`serve.archive.ModelSettings`: preparation threads, capture).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from ensemble.batch import PreparedAd
from ensemble.explain import Explainer
from ensemble.rows import AdError, ModelInfo, Record, Row
from ensemble.scoring import Scored
from export.artifact import load_artifact
from serve.archive import ARTIFACT_DIR, ModelSettings
from serve.capture import CaptureWriter, capture_record
from serve.metrics import HandlerMetrics
from serve.payload import parse_request

log = logging.getLogger(__name__)

Item = PreparedAd | Row  # a prepared ad, or the error row of a failed request
Inferred = tuple[list[Item], list[Scored]]

EXPLAIN_HEADER = "explain"  # what TorchServe sets on a request to /explanations
MODEL_HEADER = "X-Adpolicy-Model"
VERSION_HEADER = "X-Adpolicy-Model-Version"


class AdPolicyHandler(BaseHandler):
    """Scores ads with the archive's traced ensemble; see the module docstring."""

    def initialize(self, context: Any) -> None:
        """Load the artifact (checksum verified), its preparation, thresholds and settings.

        Args:
            context: TorchServe's context (``system_properties["model_dir"]`` is the unpacked
                archive; ``model_yaml_config`` its ``model-config.yaml``).
        """
        properties = context.system_properties
        gpu = properties.get("gpu_id")
        self.device = torch.device(
            f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu"
        )
        self.settings = ModelSettings.from_model_config(
            context.model_yaml_config or {}
        ).with_capture_from(os.environ)
        torch.set_num_threads(self.settings.torch_threads)
        self.artifact = load_artifact(
            Path(properties["model_dir"]) / ARTIFACT_DIR, device=str(self.device)
        )
        self.scorer = self.artifact.scorer(allow_paths=False, device=str(self.device))
        self.preparer = self.scorer.preparer
        self.explainer = Explainer(self.scorer)
        self.records: list[Record] = []
        self.capture = CaptureWriter.from_config(self.settings.capture)
        self.metrics = HandlerMetrics(context.metrics)
        self.pool = ThreadPoolExecutor(self.settings.preparation_threads, "adpolicy-prepare")
        model = context.manifest["model"]
        self.headers = {MODEL_HEADER: model["modelName"], VERSION_HEADER: model["modelVersion"]}
        self.context = context
        self.initialized = True
        log.info(
            "adpolicy handler ready: %s %s on %s, decisions %s, capture %s",
            model["modelName"],
            model["modelVersion"],
            self.device,
            self.scorer.formatter.model["decisions"],
            self.capture.path if self.capture else "off",
        )

    def describe_handle(self) -> ModelInfo:
        """The model info of every row (name, version, each policy's decision method and
        guarantee), answered to TorchServe's customized describe request."""
        return self.scorer.formatter.model

    def preprocess(self, data: Sequence[Mapping[str, Any]]) -> list[Item]:
        """Parse and prepare each request; a failure becomes that request's error row.

        Args:
            data: One mapping per request, as TorchServe passes them.

        Returns:
            Per request, in order, a :class:`PreparedAd` or an error row.
        """
        start = time.perf_counter()
        self.records = list(self.pool.map(self._read, range(len(data)), data))
        items = list(self.pool.map(self.preparer.prepare_record, self.records))
        self.metrics.batch(len(data), time.perf_counter() - start)
        return items

    def _read(self, index: int, request: Mapping[str, Any]) -> Record:
        request_id = str(self.context.get_request_id(index))
        try:
            ad = parse_request(request, self.preparer.limits, self._content_type(index))
            return Record(ad, request_id)
        except AdError as err:
            return Record(err.ad, request_id, err)
        except Exception:  # a bug must cost one request, not its batch
            log.exception("request %s: reading the body failed unexpectedly", request_id)
            problem = "internal error while reading the request; see the server log"
            return Record(None, request_id, AdError.of("body", problem, 500))

    def _content_type(self, index: int) -> str:
        """Request ``index``'s Content-Type header as the client sent it (TorchServe's worker
        keeps the headers under the names the client wrote; the one it stores with the body
        has lost its parameters, ``boundary`` among them)."""
        headers = self.context.get_all_request_header(index)
        sent = next((str(v) for k, v in headers.items() if k.lower() == "content-type"), None)
        body = headers.get("body")
        kept = body.get("content-type", "") if isinstance(body, dict) else ""
        return sent if sent is not None else str(kept)

    def inference(self, data: list[Item], *args: Any, **kwargs: Any) -> Inferred:
        """Run the graph on the prepared ads of the batch, once per length bucket, shortest
        first (the offline scorer's :meth:`~ensemble.scoring.Scorer.score_by_bucket`: 31
        short texts are never padded to one long text's length; ads with audio or video go
        :data:`~export.artifact.ANALYZER_ROWS` minutes of input a pass; should the graph fail
        on a part, its ads are scored one by one, and only an ad the graph fails on gets a 500).

        Returns:
            The items and the scored rows of the prepared ones, in order.
        """
        good = [item for item in data if isinstance(item, PreparedAd)]
        start = time.perf_counter()
        scored = self.scorer.score_by_bucket(good)
        if good:
            self.metrics.inference(time.perf_counter() - start)
        return data, scored

    def postprocess(self, data: Inferred) -> list[Row]:
        """One JSON response per request, in order; failed ones get their own 4xx/5xx status.

        Returns:
            Result rows (``ensemble.postprocess``): scores, flags, breakdown, measurements for
            a good ad, and its ``explanation`` when the request came to ``/explanations``;
            ``{"status": "error", "http_status", "errors": [{field, error}]}`` otherwise.
        """
        items, scored = data
        good = iter(scored)
        results: list[Row] = []
        for idx, item in enumerate(items):
            result = self._result(idx, next(good)) if isinstance(item, PreparedAd) else item
            if result["status"] != "ok":
                code = result["http_status"]
                self.context.set_response_status(code, HTTPStatus(code).phrase, idx)
            self.context.set_response_content_type(idx, "application/json")
            for name, value in self.headers.items():
                self.context.set_response_header(idx, name, value)
            results.append(result)
        self.metrics.results(results, self.artifact.policy_names)
        failed = sum(r["status"] != "ok" for r in results)
        log.info("batch of %d: %d scored, %d failed", len(results), len(results) - failed, failed)
        if self.capture is not None:  # traffic only: an explanation re-reads an ad to show why
            now = time.time()
            self.capture.write(
                capture_record(r, i.stats if isinstance(i, PreparedAd) else {}, timestamp=now)
                for idx, (r, i) in enumerate(zip(results, items, strict=True))
                if not self._explained(idx)
            )
        return results

    def explain_handle(self, data_preprocess: list[Item], raw_data: Any) -> list[Row]:
        """TorchServe's entry for a batch whose first request came to ``/explanations``: the
        same scoring as a prediction; :meth:`postprocess` explains each request marked so.

        Args:
            data_preprocess: :meth:`preprocess`'s items.
            raw_data: The requests (already read by :meth:`preprocess`).
        """
        return self.postprocess(self.inference(data_preprocess))

    def _explained(self, idx: int) -> bool:
        """Whether request ``idx`` came to ``/explanations`` (TorchServe's ``explain`` header)."""
        return self.context.get_request_header(idx, EXPLAIN_HEADER) == "True"

    def _result(self, idx: int, scored: Scored) -> Row:
        """The row of request ``idx``, explained when it came to ``/explanations``."""
        if not self._explained(idx):
            return scored.row
        start = time.perf_counter()
        row = self.explainer.explain_scored(self.records[idx], scored).row
        log.info("request %s explained in %.0f ms", row["id"], 1000 * (time.perf_counter() - start))
        return row
