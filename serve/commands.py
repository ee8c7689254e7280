"""``adpolicy archive``, ``adpolicy serve`` and ``adpolicy predict``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble.cli.score import EXIT_AD_ERRORS, EXIT_FATAL
from serve.archive import ModelSettings, build_archive
from serve.server import ServerSettings

if TYPE_CHECKING:
    from serve.server import TorchServe

DEFAULTS = ModelSettings()
SERVER_DEFAULTS = ServerSettings()
# Prints the inference key of a key_file.json (TorchServe's layout), with Python only.
TOKEN_COMMAND = (
    "python3 -c \"import json, sys; print(json.load(open(sys.argv[1]))['inference']['key'])\""
)


def register(sub: Any) -> None:
    a = sub.add_parser(
        "archive", help="build ONE TorchServe archive (.mar) from an export artifact"
    )
    a.add_argument("artifact", help="artifact directory written by `adpolicy export`")
    a.add_argument("-o", "--output", required=True, help="model store directory for the .mar")
    a.add_argument("--model-name", help="TorchServe model name (default: the model's name)")
    a.add_argument("--version", help="archive version (default: the model's version)")
    a.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help="most requests per graph run (%(default)s)",
    )
    a.add_argument(
        "--max-batch-delay",
        type=int,
        default=DEFAULTS.max_batch_delay_ms,
        help="ms TorchServe waits to fill a batch (%(default)s)",
    )
    a.add_argument(
        "--workers", type=int, default=DEFAULTS.workers, help="worker processes (%(default)s)"
    )
    a.add_argument(
        "--response-timeout",
        type=int,
        default=DEFAULTS.response_timeout_s,
        help="seconds per batch before the worker is restarted (%(default)s)",
    )
    a.add_argument(
        "--startup-timeout",
        type=int,
        default=DEFAULTS.startup_timeout_s,
        help="seconds a worker may take to load the graph (%(default)s)",
    )
    a.add_argument(
        "--preparation-threads",
        type=int,
        default=DEFAULTS.preparation_threads,
        help="threads preparing the ads of a batch (%(default)s)",
    )
    a.add_argument(
        "--torch-threads",
        type=int,
        default=DEFAULTS.torch_threads,
        help="intra-op threads per worker (%(default)s; on dedicated cores: cores / workers)",
    )
    a.add_argument("--capture", help="capture scored ads to this JSONL file (default: off)")
    a.add_argument("--force", action="store_true", help="replace an existing archive")
    a.set_defaults(func=_archive)

    s = sub.add_parser("serve", help="serve archives with TorchServe on 127.0.0.1")
    s.add_argument("archives", nargs="*", help="the .mar file(s) to serve, in one directory")
    s.add_argument("--stop", action="store_true", help="stop the server of --run-dir")
    s.add_argument(
        "--port",
        type=int,
        default=8080,
        help="inference port; management and metrics take the next two (0: free ports)",
    )
    s.add_argument("--no-auth", action="store_true", help="turn token authorization off")
    s.add_argument("--capture", help="capture scored ads to this JSONL file")
    s.add_argument("--run-dir", help="config, logs and keys of the server (~/.adpolicy/serve)")
    s.add_argument("--python", help="the workers' Python (default: this one)")
    s.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for workers")
    s.add_argument(
        "--token-expiry-min",
        type=int,
        default=SERVER_DEFAULTS.token_expiry_min,
        help="minutes before a key must be renewed through the token API (%(default)s)",
    )
    s.add_argument(
        "--heap-mb",
        type=int,
        default=SERVER_DEFAULTS.heap_mb,
        help="the Java frontend's heap bound, -Xmx (%(default)s MiB)",
    )
    s.add_argument(
        "--log-mb",
        type=int,
        default=SERVER_DEFAULTS.log_mb,
        help="size at which each log file rolls over (%(default)s MiB)",
    )
    s.add_argument(
        "--log-files",
        type=int,
        default=SERVER_DEFAULTS.log_files,
        help="rolled-over files kept per log (%(default)s)",
    )
    s.set_defaults(func=_serve)

    p = sub.add_parser("predict", help="score ads with a running endpoint")
    p.add_argument("ads", help="a JSON ad, a JSON array of ads, or a JSONL file; media as paths")
    p.add_argument("--url", required=True, help="http://127.0.0.1:8080/predictions/MODEL")
    p.add_argument("--token", help="the inference key")
    p.add_argument(
        "--key-file", help="TorchServe's key_file.json (default: the one in ~/.adpolicy/serve)"
    )
    p.add_argument("--multipart", action="store_true", help="send multipart/form-data")
    p.add_argument(
        "--allow-any-path",
        action="store_true",
        help="send media files outside the folder of the ads file too",
    )
    p.set_defaults(func=_predict)


def _archive(args: argparse.Namespace) -> int:
    settings = ModelSettings(
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay,
        workers=args.workers,
        response_timeout_s=args.response_timeout,
        startup_timeout_s=args.startup_timeout,
        preparation_threads=args.preparation_threads,
        torch_threads=args.torch_threads,
        capture={"path": str(Path(args.capture).resolve())} if args.capture else None,
    )
    path = build_archive(
        args.artifact,
        args.output,
        settings,
        model_name=args.model_name,
        version=args.version,
        force=args.force,
    )
    print(f"{path}: {json.dumps(settings.to_model_config())}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from serve.server import DEFAULT_RUN_DIR, TorchServe

    run_dir = Path(args.run_dir or DEFAULT_RUN_DIR)
    if args.stop:
        server = TorchServe.find(run_dir)
        if server is None:
            print(f"no TorchServe runs from {run_dir}")
            return 0
        server.stop()
        print(f"TorchServe (pid {server.pid}) stopped; its ports are free")
        return 0
    if not args.archives:
        raise SystemExit("adpolicy serve: give MODEL.mar, or --stop")
    missing = [a for a in args.archives if not Path(a).is_file()]
    try:
        if missing:
            raise FileNotFoundError(f"no archive at {', '.join(missing)}")
        server = TorchServe.start(
            args.archives,
            run_dir=run_dir,
            port=args.port,
            auth=not args.no_auth,
            capture=args.capture,
            python=args.python or sys.executable,
            timeout_s=args.timeout,
            settings=ServerSettings(
                token_expiry_min=args.token_expiry_min,
                heap_mb=args.heap_mb,
                log_mb=args.log_mb,
                log_files=args.log_files,
            ),
        )
    except (OSError, RuntimeError, ValueError) as err:  # already running, ports taken, no .mar
        print(f"adpolicy serve: {err}", file=sys.stderr)
        return EXIT_FATAL
    print(how_to_call(server))
    return 0


def how_to_call(server: TorchServe) -> str:
    """What ``adpolicy serve`` prints: the URLs, the token and a first request."""
    url = server.predictions_url()
    auth = ""
    lines = [
        f"TorchServe (pid {server.pid}) serves {', '.join(server.models)} on 127.0.0.1",
        *(f"  predictions  {server.predictions_url(model)}" for model in server.models),
        f"  metrics      {server.metrics_url}",
        f"  logs         {server.run_dir / 'logs'}",
    ]
    if server.auth:
        auth = ' -H "Authorization: Bearer $TOKEN"'
        lines += [
            f"  token        the inference key in {server.key_file}:",
            f"               TOKEN=$({TOKEN_COMMAND} {server.key_file})",
        ]
    else:
        lines.append("  token        none: authorization is OFF (--no-auth)")
    lines += [
        "",
        f"curl{auth} -H 'Content-Type: application/json' \\",
        f'     -d \'{{"id": "ad-1", "text": "Limited offer!"}}\' {url}',
        f"adpolicy predict --url {url} ads.jsonl",
        f"adpolicy serve --stop --run-dir {server.run_dir}",
    ]
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    import requests

    from ensemble.reader import check_ads_file, read_ads
    from ensemble.rows import error_row
    from serve.client import Client
    from serve.server import DEFAULT_RUN_DIR, KEY_FILE

    key_file = args.key_file
    if key_file is None and args.token is None and (DEFAULT_RUN_DIR / KEY_FILE).is_file():
        key_file = DEFAULT_RUN_DIR / KEY_FILE
    path = Path(args.ads)
    failed = 0
    try:
        check_ads_file(path)
        client = Client(args.url, token=args.token, key_file=key_file)
        for record in read_ads(path):
            if record.error is not None:
                failed += 1
                print(json.dumps(error_row(record.id, record.error, client.model)))
                continue
            prediction = client.predict(
                record.ad,
                base_dir=path.parent,
                multipart=args.multipart,
                confine=not args.allow_any_path,
            )
            failed += prediction.status != 200
            print(json.dumps({"http_status": prediction.status, **_as_dict(prediction.body)}))
    except (OSError, RuntimeError, ValueError, requests.RequestException) as err:
        print(f"adpolicy predict: {err}", file=sys.stderr)  # no server, no key, no ads file
        return EXIT_FATAL
    return EXIT_AD_ERRORS if failed else 0


def _as_dict(body: Any) -> dict[str, Any]:
    return body if isinstance(body, dict) else {"body": body}
