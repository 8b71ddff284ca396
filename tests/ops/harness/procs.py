"""Processes and ports for the ops tests.

- `free_port()` picks a free loopback port (never the same one twice in one test run).
- `wait_for_port()` waits until something accepts connections, failing early if the process that
  should listen has died (its log tail is in the message).
- `ManagedProcess` runs a program in its own process group with its output in a log file and is
  always torn down: by `stop()`, as a context manager, or at interpreter exit.
- `run()` runs a short command and fails the test with its output when it fails.
- `require_tool()` fails the test with a message naming a missing program.

`wrapper` arguments (for example `["ip", "netns", "exec", "ns1"]`) prefix a command so that it runs
inside a network namespace; the wrapper must `exec` the command so the pid stays the same.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import pytest

_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_HANDED_OUT_PORTS: set[int] = set()
_LIVE_PROCESSES: list["ManagedProcess"] = []


def require_tool(name: str) -> str:
    """Absolute path of the program `name`, or fail the test naming it."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))
    if not found:
        pytest.fail(
            f"required tool `{name}` is not installed (CI installs it from .ci/apt-packages.txt)",
            pytrace=False,
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (on `host` if it exists in this namespace), not
    handed out before in this run."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, 0))
            except OSError:
                # An address that exists only inside a network namespace: a port free on the
                # host's loopback is as good a guess as any for a namespace that starts empty.
                s.bind(("::1" if ":" in host else "127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT_PORTS:
            _HANDED_OUT_PORTS.add(port)
            return port
    raise RuntimeError("no free port found in 50 attempts")


def port_open(host: str, port: int, *, wrapper: Sequence[str] = (), timeout: float = 1.0) -> bool:
    """True when a TCP connection to host:port succeeds (from inside `wrapper` if given)."""
    if wrapper:
        probe = (
            "import socket,sys\n"
            "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
            "except OSError:\n sys.exit(1)\n"
        )
        argv = [*wrapper, sys.executable, "-c", probe, host, str(port), str(timeout)]
        return subprocess.run(argv, capture_output=True, timeout=timeout + 10).returncode == 0
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05,
               what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(interval)


def wait_for_port(port: int, host: str = "127.0.0.1", *, timeout: float = 30.0,
                  process: "ManagedProcess | None" = None, wrapper: Sequence[str] = ()) -> None:
    """Wait until host:port accepts connections; fail early if `process` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if port_open(host, port, wrapper=wrapper, timeout=0.5):
            return
        if process is not None and not process.alive:
            pytest.fail(
                f"{process.name} exited with status {process.returncode} before listening on "
                f"{host}:{port}; its log ({process.log_path}):\n{process.log_tail()}",
                pytrace=False,
            )
        if time.monotonic() >= deadline:
            tail = f"; its log:\n{process.log_tail()}" if process else ""
            pytest.fail(f"nothing listens on {host}:{port} after {timeout:.0f}s{tail}", pytrace=False)
        time.sleep(0.05)


def run(argv: Sequence[str], *, timeout: float = 60.0, check: bool = True,
        env: Mapping[str, str] | None = None, input: str | None = None,
        cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command; with `check`, fail the test with its output when it exits non-zero."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None, input=input, cwd=cwd)
    except FileNotFoundError:
        require_tool(argv[0])
        raise
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s: {e.output!r}",
                    pytrace=False)
    if check and done.returncode != 0:
        pytest.fail(
            f"`{' '.join(argv)}` exited with {done.returncode}\nstdout:\n{done.stdout}\n"
            f"stderr:\n{done.stderr}",
            pytrace=False,
        )
    return done


class ManagedProcess:
    """A long-running program in its own process group, its output appended to `log_path`."""

    def __init__(self, argv: Sequence[str], *, name: str, log_path: Path | str,
                 env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                 wrapper: Sequence[str] = ()):
        self.argv = [*wrapper, *argv]
        self.name = name
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> "ManagedProcess":
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self._popen = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self.env, cwd=self.cwd, start_new_session=True,
                )
            except FileNotFoundError:
                require_tool(self.argv[0])
                raise
        _LIVE_PROCESSES.append(self)
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def send_signal(self, sig: int) -> None:
        """Signal the process itself (not its group), e.g. SIGHUP to reload."""
        if self.alive:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self._popen is not None
        return self._popen.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send `sig` to the whole process group, wait, then SIGKILL what is left."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self._signal_group(sig)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._popen.wait(timeout=10)
        # Children that outlived the leader (e.g. nginx workers) go with the group.
        self._signal_group(signal.SIGKILL)
        if self in _LIVE_PROCESSES:
            _LIVE_PROCESSES.remove(self)
        return self._popen.returncode

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> "ManagedProcess":
        return self if self.alive else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.alive else "stopped"
        return f"<ManagedProcess {self.name} {state}>"


def stop_all(processes: Iterable[ManagedProcess] | None = None) -> None:
    """Stop the given processes (default: every process still alive), newest first."""
    for process in reversed(list(processes if processes is not None else _LIVE_PROCESSES)):
        process.stop(timeout=5)


atexit.register(stop_all)
