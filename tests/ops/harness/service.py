"""The real detector-api binary with the real model, on free loopback ports.

    svc = start_detector(tmp_path, api_key="k1")
    requests.get(f"{svc.base_url}/healthz", headers=svc.auth_headers())
    svc.stop(); svc.start()          # same ports again, e.g. for a 502 test through nginx

Fails with a clear message when the release binary or the model is missing.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

import pytest

from .procs import ManagedProcess, free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[3]
API_BINARY = REPO_ROOT / "target" / "release" / "detector-api"
CTL_BINARY = REPO_ROOT / "target" / "release" / "detectorctl"
MODEL_PATH = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# A real English paragraph, long enough to be scorable (well above DETECTOR_MIN_TOKENS).
SAMPLE_TEXT = (
    "The committee met on Tuesday to review the budget for the coming year. After a long "
    "discussion about road repairs and the library's opening hours, the members agreed to "
    "postpone the vote until the auditors had finished their report, which is expected in March."
)


def require_release_binary(path: Path = API_BINARY) -> Path:
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it with `cargo build --release -p {path.name}`",
                    pytrace=False)
    return path


def require_model(path: Path = MODEL_PATH) -> Path:
    if not path.is_file():
        pytest.fail(f"the model {path} is missing: fetch it with `scripts/fetch-model`",
                    pytrace=False)
    return path


class DetectorService:
    """One detector-api process; `start()`/`stop()` may be called repeatedly on the same ports."""

    def __init__(self, log_dir: Path, *, api_key: str | None = None,
                 key_file: Path | None = None, env: Mapping[str, str] | None = None,
                 host: str = "127.0.0.1", port: int | None = None,
                 metrics_port: int | None = None, wrapper: Sequence[str] = (),
                 binary: Path | None = None, model: Path | None = None):
        binary = binary or API_BINARY
        model = model or MODEL_PATH
        self.host = host
        self.port = port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.api_key = api_key
        self.key_file = key_file
        self.wrapper = tuple(wrapper)
        self.binary = binary
        self.model = model
        self.log_path = Path(log_dir) / f"detector-api-{self.port}.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DETECTOR_BIND": f"{self._host_for_url}:{self.port}",
            "DETECTOR_METRICS_BIND": f"{self._host_for_url}:{self.metrics_port}",
            "DETECTOR_MODEL_PATH": str(model),
            "RUST_BACKTRACE": "1",
        }
        if api_key is not None:
            self.env["DETECTOR_API_KEY"] = api_key
        if key_file is not None:
            self.env["DETECTOR_KEY_FILE"] = str(key_file)
        self.env.update(env or {})
        self.process: ManagedProcess | None = None

    @property
    def _host_for_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def address(self) -> str:
        """host:port, the form nginx's upstream variable takes."""
        return f"{self._host_for_url}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._host_for_url}:{self.metrics_port}/metrics"

    def auth_headers(self, key: str | None = None) -> dict[str, str]:
        key = key if key is not None else self.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def start(self, *, ready_timeout: float = 60.0) -> "DetectorService":
        require_release_binary(self.binary)
        require_model(self.model)
        self.process = ManagedProcess([str(self.binary)], name="detector-api",
                                      log_path=self.log_path, env=self.env, cwd=REPO_ROOT,
                                      wrapper=self.wrapper)
        self.process.start()
        wait_for_port(self.port, self.host, timeout=ready_timeout, process=self.process,
                      wrapper=self.wrapper)
        if not self.wrapper:
            self._wait_answering(ready_timeout)
        return self

    def _wait_answering(self, timeout: float) -> None:
        """The port may open before the model is loaded: wait for /healthz to answer at all."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.healthz_status()
            if status is not None and status != 503:
                return
            if self.process is not None and not self.process.alive:
                pytest.fail(f"detector-api exited; its log:\n{self.process.log_tail()}",
                            pytrace=False)
            if time.monotonic() >= deadline:
                pytest.fail(f"detector-api did not answer /healthz within {timeout:.0f}s",
                            pytrace=False)
            time.sleep(0.1)

    def healthz_status(self) -> int | None:
        """Status of GET /healthz with the configured key, or None if nothing answered."""
        request = urllib.request.Request(f"{self.base_url}/healthz", headers=self.auth_headers())
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def score_direct(self, text: str = SAMPLE_TEXT) -> dict:
        """POST /score straight to the service (not through nginx); returns the JSON body."""
        request = urllib.request.Request(
            f"{self.base_url}/score", data=json.dumps({"text": text}).encode(), method="POST",
            headers={"Content-Type": "application/json", **self.auth_headers()})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    def reload_keys(self) -> None:
        """SIGHUP: the service reloads DETECTOR_KEY_FILE."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        return self.process.stop(sig, timeout=timeout) if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def __enter__(self) -> "DetectorService":
        return self if self.alive else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_detector(log_dir: Path, **kwargs) -> DetectorService:
    """Start detector-api (see DetectorService for the keyword arguments) and wait until it answers."""
    return DetectorService(log_dir, **kwargs).start()
