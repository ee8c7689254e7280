"""The generated server configuration: loopback, auth, request size, metrics declarations."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from encoders.media import MediaLimits
from serve.metrics import METRICS, default_metrics_config, metrics_config
from serve.server import (
    HOST,
    LOGGERS,
    Ports,
    ServerSettings,
    config_properties,
    log4j_config,
    max_request_size,
)


def test_max_request_size_admits_the_largest_valid_ad_and_little_more() -> None:
    limits = MediaLimits(
        max_image_bytes=3_000, max_audio_bytes=5_000, max_video_bytes=10_000, max_text_chars=100
    )
    largest = json.dumps(
        {
            "id": "x" * 64,
            "text": "\u2028" * limits.max_text_chars,  # escaped as \\u2028: 6 characters each
            **{
                field: {"base64": base64.b64encode(b"\0" * limits.max_bytes(field)).decode()}
                for field in ("image", "audio", "video")
            },
        }
    )
    size = max_request_size(limits)
    assert len(largest) <= size <= len(largest) + (2 << 20)
    default = max_request_size(MediaLimits())
    assert default >= 4 * MediaLimits().max_video_bytes // 3  # the longest video, base64
    assert default < 240 * 1024 * 1024


def test_config_binds_loopback_with_auth_on_and_the_model_api_off(tmp_path: Path) -> None:
    ports = Ports(8080, 8081, 8082, 7070, 7071)
    text = config_properties(
        ports=ports,
        model_store=tmp_path,
        archives=["a.mar"],
        metrics_config_file=tmp_path / "metrics.yaml",
        max_request_bytes=123,
        auth=True,
        model_api=False,
        settings=ServerSettings(token_expiry_min=5, heap_mb=512),
    )
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["token_expiration_min"] == "5"
    # bounded, and no -XX:+ExitOnOutOfMemoryError: too many large bodies at once get 507s,
    # never the end of the endpoint (benchmarks/big_bodies.py)
    assert props["vmargs"] == "-Xmx512m"
    assert props["inference_address"] == f"http://{HOST}:8080"
    assert props["management_address"] == f"http://{HOST}:8081"
    assert props["metrics_address"] == f"http://{HOST}:8082"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == HOST
    assert props["disable_token_authorization"] == "false"
    assert props["enable_model_api"] == "false"
    assert props["metrics_mode"] == "prometheus"
    assert props["max_request_size"] == "123"
    assert props["load_models"] == "a.mar"
    free = Ports.pick(0)
    assert len(set(vars(free).values())) == 5


def test_metrics_config_declares_every_custom_metric() -> None:
    base = default_metrics_config()
    config = metrics_config(base)
    assert config["ts_metrics"] == base["ts_metrics"]
    declared = {
        (kind, spec["name"]): spec["dimensions"]
        for kind, specs in config["model_metrics"].items()
        for spec in specs
    }
    assert ("gauge", "HandlerTime") in declared  # TorchServe's own are kept
    for spec in METRICS:
        assert declared[(spec.kind, spec.name)] == [*spec.dimensions, "ModelName", "Level"]


def test_logs_roll_over_by_size_and_each_line_is_written_once() -> None:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(log4j_config(ServerSettings(log_mb=7, log_files=3)))
    files = root.findall("./Appenders/RollingFile")
    assert not root.findall("./Appenders/Console")  # nothing grows torchserve.out
    for appender in files:
        assert [p.tag for p in appender.findall("./Policies/*")] == ["SizeBasedTriggeringPolicy"]
        assert appender.find("./Policies/SizeBasedTriggeringPolicy").get("size") == "7 MB"  # type: ignore[union-attr]
        assert appender.find("./DefaultRolloverStrategy").get("max") == "3"  # type: ignore[union-attr]
        assert "%i" in appender.get("filePattern", "")
    loggers = {lg.get("name"): lg for lg in root.findall("./Loggers/Logger")}
    for name in LOGGERS:  # a logger with a file of its own does not pass its lines to the root
        assert loggers[name].get("additivity") == "false"
