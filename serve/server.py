"""Start and stop a local TorchServe for archives built by ``adpolicy archive``.

Secure defaults: every port binds to 127.0.0.1; token authorization is on unless turned off
(TorchServe writes the keys to ``RUN_DIR/key_file.json``); the model-management API that
registers and unregisters models is off; ``max_request_size`` admits the largest ad the
archives' media limits accept, base64-inflated, and nothing much larger.

Each server lives in its own run directory: its config.properties, metrics config, log4j2.xml,
logs (``logs/``), key file, and temporary directory (TorchServe's pid file, the workers' sockets
and the unpacked archives), so several servers (tests, a demo) never collide. ``server.json``
there records the ports and the Java process for ``adpolicy serve --stop``.

Where TorchServe's defaults fall short, :class:`ServerSettings` decides (each an ``adpolicy
serve`` option): the inference key expires after ``token_expiry_min`` (TorchServe: 60) and
clients renew it through the token API (:class:`serve.client.Client` does); the JVM heap is
bounded (``-Xmx``), and a body that does not fit gets TorchServe's 507 while the frontend lives
on (it does not exit on an out-of-memory error); every log rolls over by size with a bounded
number of files, each line is written once, and nothing is appended to the console
(``torchserve.out``). Workers receive
request bodies undecoded (``decode_input_request=false``, which the frontend hands each worker as
``TS_DECODE_INPUT_REQUEST``; the launcher's own environment variable is overwritten) so that
every body is parsed by :func:`serve.payload.parse_request`, as the files are, and every parsing
failure is a 400 naming the problem.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml

from encoders.media import MediaLimits
from serve.archive import CAPTURE_ENV, read_archive_manifest, read_archive_model
from serve.metrics import default_metrics_config, metrics_config

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_RUN_DIR = Path.home() / ".adpolicy" / "serve"
DEFAULT_PORT = 8080
STATE_FILE = "server.json"
KEY_FILE = "key_file.json"
LOG_CONFIG = "log4j2.xml"
REQUEST_MARGIN = 1 << 20  # JSON syntax, the id and the multipart boundaries
LOGS = ("access_log", "model_log", "model_metrics", "ts_log", "ts_metrics")
# log4j logger -> the file it writes; each writes to one file only (additivity off)
LOGGERS = {
    "ACCESS_LOG": "access_log",
    "MODEL_LOG": "model_log",
    "MODEL_METRICS": "model_metrics",
    "TS_METRICS": "ts_metrics",
    "org.pytorch.serve": "ts_log",
}


@dataclass(frozen=True)
class ServerSettings:
    """What ``adpolicy serve`` sets beyond TorchServe's defaults.

    Attributes:
        token_expiry_min: Minutes an inference or management key lives before it must be
            renewed through the token API (TorchServe's ``token_expiration_min``).
        heap_mb: The Java frontend's heap bound (``-Xmx``), in MiB.
        log_mb: Size at which a log file rolls over, in MiB.
        log_files: Rolled-over files kept per log (older ones are deleted).
    """

    token_expiry_min: int = 60
    heap_mb: int = 1024
    log_mb: int = 20
    log_files: int = 5


def log4j_config(settings: ServerSettings) -> str:
    """The frontend's log4j2 configuration: each log a size-rolled file, no console."""
    appenders = "".join(
        f"""    <RollingFile name="{name}" fileName="${{env:LOG_LOCATION:-logs}}/{name}.log"
        filePattern="${{env:LOG_LOCATION:-logs}}/{name}.%i.log.gz">
      <PatternLayout pattern="%d{{ISO8601}} [%-5p] %t %c - %m%n"/>
      <Policies><SizeBasedTriggeringPolicy size="{settings.log_mb} MB"/></Policies>
      <DefaultRolloverStrategy max="{settings.log_files}"/>
    </RollingFile>
"""
        for name in LOGS
    )
    loggers = "".join(
        f"""    <Logger name="{logger}" level="info" additivity="false">
      <AppenderRef ref="{file}"/>
    </Logger>
"""
        for logger, file in LOGGERS.items()
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
{appenders}  </Appenders>
  <Loggers>
{loggers}    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Root level="info"><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


def base64_size(size: int) -> int:
    """Length of the base64 text of ``size`` bytes."""
    return 4 * -(-size // 3)


def max_request_size(limits: MediaLimits) -> int:
    """The largest request a valid ad can make: every medium at its limit, base64-encoded,
    and the longest text with every character JSON-escaped (``\\uXXXX``), plus a margin."""
    media = sum(base64_size(limits.max_bytes(f)) for f in ("image", "audio", "video"))
    return media + 6 * limits.max_text_chars + REQUEST_MARGIN


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


@dataclass(frozen=True)
class Ports:
    """The server's ports, all on 127.0.0.1 (gRPC is not used, but TorchServe binds it)."""

    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    @classmethod
    def pick(cls, inference: int = DEFAULT_PORT) -> Ports:
        """``inference``, the next two ports for management and metrics; gRPC on free ports.
        ``inference=0`` picks free ports for all five."""
        if inference == 0:
            return cls(*(free_port() for _ in range(5)))
        return cls(inference, inference + 1, inference + 2, free_port(), free_port())


def config_properties(
    *,
    ports: Ports,
    model_store: Path,
    archives: Sequence[str],
    metrics_config_file: Path,
    max_request_bytes: int,
    auth: bool,
    model_api: bool,
    settings: ServerSettings,
) -> str:
    """The text of TorchServe's config.properties."""
    entries = {
        "inference_address": f"http://{HOST}:{ports.inference}",
        "management_address": f"http://{HOST}:{ports.management}",
        "metrics_address": f"http://{HOST}:{ports.metrics}",
        "grpc_inference_address": HOST,
        "grpc_management_address": HOST,
        "grpc_inference_port": ports.grpc_inference,
        "grpc_management_port": ports.grpc_management,
        "model_store": model_store,
        "load_models": ",".join(archives),
        "metrics_mode": "prometheus",
        "metrics_config": metrics_config_file,
        "max_request_size": max_request_bytes,
        "disable_token_authorization": str(not auth).lower(),
        "token_expiration_min": settings.token_expiry_min,
        "vmargs": f"-Xmx{settings.heap_mb}m",
        "enable_model_api": str(model_api).lower(),
        "install_py_dep_per_model": "false",
        "enable_envvars_config": "false",
        "decode_input_request": "false",  # the frontend sets each worker's TS_DECODE_INPUT_REQUEST
    }
    return "".join(f"{key}={value}\n" for key, value in entries.items())


@dataclass
class TorchServe:
    """A TorchServe started by :meth:`start`, or found again in its run directory.

    Attributes:
        run_dir: Its run directory.
        ports: Its ports.
        models: TorchServe model names of the archives it loaded.
        auth: Whether token authorization is on.
        pid: The Java frontend's process id.
    """

    run_dir: Path
    ports: Ports
    models: list[str]
    auth: bool
    pid: int

    @property
    def inference_url(self) -> str:
        return f"http://{HOST}:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        return f"http://{HOST}:{self.ports.management}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.ports.metrics}/metrics"

    @property
    def key_file(self) -> Path:
        return self.run_dir / KEY_FILE

    def predictions_url(self, model: str | None = None, version: str | None = None) -> str:
        """``/predictions/MODEL[/VERSION]`` (default: the first model, its default version)."""
        path = f"{self.inference_url}/predictions/{model or self.models[0]}"
        return f"{path}/{version}" if version else path

    def token(self, kind: str = "inference") -> str | None:
        """The current ``inference`` / ``management`` key (None when auth is off)."""
        if not self.auth:
            return None
        return read_token(self.key_file, kind)

    def headers(self, kind: str = "inference") -> dict[str, str]:
        """The Authorization header for the ``kind`` API (empty when auth is off)."""
        token = self.token(kind)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def describe(self, model: str) -> list[dict[str, Any]]:
        """The management API's description of a model's versions (workers, batch size)."""
        response = requests.get(
            f"{self.management_url}/models/{model}/all",
            headers=self.headers("management"),
            timeout=10,
        )
        response.raise_for_status()
        described: list[dict[str, Any]] = response.json()
        return described

    def alive(self) -> bool:
        """Whether the Java frontend runs."""
        return _alive(self.pid)

    @classmethod
    def start(
        cls,
        archives: Sequence[str | Path],
        *,
        run_dir: str | Path = DEFAULT_RUN_DIR,
        port: int = DEFAULT_PORT,
        auth: bool = True,
        model_api: bool = False,
        capture: str | Path | None = None,
        python: str = sys.executable,
        timeout_s: float = 300.0,
        settings: ServerSettings | None = None,
    ) -> TorchServe:
        """Start TorchServe on 127.0.0.1 with these archives and wait until every model's
        workers are ready.

        Args:
            archives: ``.mar`` files, all in one directory (it becomes the model store).
            run_dir: The server's run directory (created, private).
            port: The inference port; management and metrics take the next two. 0: free ports.
            auth: Token authorization (keys in ``run_dir/key_file.json``).
            model_api: Enable registering / unregistering models at run time.
            capture: Capture every scored ad to this JSONL file (overrides model-config).
            python: The Python the workers run (it needs the pinned stack and TorchServe;
                this package is not needed: the archive carries its code).
            timeout_s: How long to wait for the workers.
            settings: Key expiry, heap and log bounds (:class:`ServerSettings`).

        Returns:
            The running server.

        Raises:
            RuntimeError: A server runs in ``run_dir`` already, or TorchServe did not come up
                (the error holds the end of its logs).
        """
        paths = [Path(a).resolve() for a in archives]
        stores = {p.parent for p in paths}
        if len(stores) != 1:
            raise ValueError(f"the archives must share one directory, got {sorted(stores)}")
        root = Path(run_dir).resolve()
        previous = _read_state(root)
        if previous is not None and previous.alive():
            raise RuntimeError(
                f"TorchServe already runs from {root} (pid {previous.pid}); stop it first "
                f"(adpolicy serve --stop --run-dir {root})"
            )
        tmp = root / "tmp"
        if not root.exists():
            root.mkdir(parents=True, mode=0o700)  # it will hold the API keys
        tmp.mkdir(exist_ok=True)
        (root / KEY_FILE).unlink(missing_ok=True)
        limits = [MediaLimits(**read_archive_manifest(p)["config"]["limits"]) for p in paths]
        metrics_file = root / "metrics.yaml"
        metrics_file.write_text(yaml.safe_dump(metrics_config(default_metrics_config())))
        ports = Ports.pick(port)
        busy = [p for p in asdict(ports).values() if port_in_use(p)]
        if busy:
            raise RuntimeError(f"ports already in use on {HOST}: {busy}")
        settings = settings or ServerSettings()
        (root / LOG_CONFIG).write_text(log4j_config(settings))
        config_file = root / "config.properties"
        config_file.write_text(
            config_properties(
                ports=ports,
                model_store=stores.pop(),
                archives=[p.name for p in paths],
                metrics_config_file=metrics_file,
                max_request_bytes=max(max_request_size(lim) for lim in limits),
                auth=auth,
                model_api=model_api,
                settings=settings,
            )
        )
        env = _environment(tmp, capture)
        with (root / "torchserve.out").open("ab") as out:
            launched = subprocess.run(
                [
                    python,
                    "-m",
                    "ts.model_server",
                    "--start",
                    "--ncs",
                    "--ts-config",
                    str(config_file),
                    "--log-config",
                    str(root / LOG_CONFIG),
                ],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
            )
        pid_file = tmp / ".model_server.pid"
        if launched.returncode != 0 or not pid_file.is_file():
            raise RuntimeError(f"torchserve did not start:\n{_log_tail(root)}")
        models = [read_archive_model(p)[0] for p in paths]
        server = cls(root, ports, models, auth, int(pid_file.read_text().split()[0]))
        (root / STATE_FILE).write_text(json.dumps(server.to_json(), indent=2) + "\n")
        try:
            server.wait_ready(timeout_s)
        except BaseException:
            server.stop()
            raise
        log.info(
            "TorchServe ready on %s (pid %d), models %s", server.inference_url, server.pid, models
        )
        return server

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until every model has all its minimum workers READY.

        Raises:
            RuntimeError: The frontend died, or the workers were not ready in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"TorchServe exited:\n{_log_tail(self.run_dir)}")
            if all(self._model_ready(m) for m in self.models):
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"TorchServe's workers were not ready after {timeout_s:g} s:\n{_log_tail(self.run_dir)}"
        )

    def _model_ready(self, model: str) -> bool:
        if self.auth and not self.key_file.is_file():
            return False
        try:
            versions = self.describe(model)
        except (requests.RequestException, ValueError, KeyError):
            return False
        return all(
            sum(w["status"] == "READY" for w in v["workers"]) >= v["minWorkers"] for v in versions
        )

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop TorchServe and wait until its process has exited and its ports are free."""
        env = _environment(self.run_dir / "tmp", None)
        if self.alive():
            subprocess.run(
                [sys.executable, "-m", "ts.model_server", "--stop"],
                cwd=self.run_dir,
                env=env,
                capture_output=True,
                timeout=60,
            )
        deadline = time.monotonic() + timeout_s
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.alive():
            log.warning(
                "TorchServe (pid %d) ignored SIGTERM for %g s; killing it", self.pid, timeout_s
            )
            os.kill(self.pid, signal.SIGKILL)
        while any(port_in_use(p) for p in asdict(self.ports).values()):
            if time.monotonic() > deadline + 10:
                raise RuntimeError(f"ports {asdict(self.ports)} still in use after stopping")
            time.sleep(0.2)
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)
        (self.run_dir / KEY_FILE).unlink(missing_ok=True)

    def __enter__(self) -> TorchServe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "ports": asdict(self.ports),
            "models": self.models,
            "auth": self.auth,
            "pid": self.pid,
        }

    @classmethod
    def find(cls, run_dir: str | Path = DEFAULT_RUN_DIR) -> TorchServe | None:
        """The server recorded in ``run_dir`` (None when there is none or it has exited)."""
        server = _read_state(Path(run_dir).resolve())
        return server if server is not None and server.alive() else None

    def log_lines(self, name: str = "model_log.log") -> Iterator[str]:
        """Lines of one of TorchServe's logs (``logs/ts_log.log``, ``logs/model_log.log``)."""
        path = self.run_dir / "logs" / name
        if path.is_file():
            yield from path.read_text(errors="replace").splitlines()


def read_token(key_file: Path, kind: str = "inference", attempts: int = 50) -> str:
    """The ``inference``, ``management`` or ``API`` key of a TorchServe ``key_file.json``.

    TorchServe rewrites the file in place when a key is renewed: a read landing in between
    finds it empty or cut, and is tried again (every 20 ms, ``attempts`` times).
    """
    for _ in range(attempts - 1):
        try:
            return _key(key_file, kind)
        except (json.JSONDecodeError, KeyError):
            time.sleep(0.02)
    return _key(key_file, kind)


def _key(key_file: Path, kind: str) -> str:
    return str(json.loads(Path(key_file).read_text())[kind]["key"])


def _read_state(root: Path) -> TorchServe | None:
    path = root / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return TorchServe(
        Path(state["run_dir"]),
        Ports(**state["ports"]),
        state["models"],
        state["auth"],
        state["pid"],
    )


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _environment(tmp: Path, capture: str | Path | None) -> dict[str, str]:
    """The launcher's environment: a private temporary directory (pid file, sockets, unpacked
    archives), and the capture path for the workers when given."""
    env = {k: v for k, v in os.environ.items() if k != CAPTURE_ENV}
    env.update(TMPDIR=str(tmp), TEMP=str(tmp))
    if capture is not None:
        env[CAPTURE_ENV] = str(Path(capture).resolve())
    return env


def _log_tail(root: Path, lines: int = 40) -> str:
    parts = []
    for name in ("torchserve.out", "logs/ts_log.log", "logs/model_log.log"):
        path = root / name
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path}\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no logs in {root})"
