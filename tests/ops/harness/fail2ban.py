"""fail2ban with the repo's jails, filters and ban action, private to one test.

    f2b = Fail2ban(tmp_path / "f2b", log_path=edge.access_log, wrapper=topo.server.prefix())
    f2b.start(jails=["detector-auth"])
    f2b.client("status", "detector-auth"); f2b.unban("198.51.100.2"); f2b.stop()

The configuration directory is the system's /etc/fail2ban (stock filters, paths, jail.conf) with
host/fail2ban/ copied over it, exactly as the installer lays it out, plus a `jail.local` that only
points the detector jails at the test's log and enables the jails the test asks for. Socket, pid
file, database and fail2ban's own log live in the test's directory, so a fail2ban on the machine
(if any) is never touched. Run it inside a network namespace (`wrapper`): its ban action changes
nftables rules in whatever namespace it runs in.

`regex()` runs `fail2ban-regex` with one of the repo's filters and returns the lines it matched.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pytest

from .procs import ManagedProcess, require_tool, run, wait_until
from .service import REPO_ROOT

HOST_FAIL2BAN = REPO_ROOT / "host" / "fail2ban"
SYSTEM_CONF = Path("/etc/fail2ban")
DETECTOR_JAILS = ("detector-auth", "detector-botsearch")


def filter_path(name: str) -> Path:
    return HOST_FAIL2BAN / "filter.d" / f"{name}.conf"


def regex(log_file: Path, filter_name: str) -> list[str]:
    """Lines of `log_file` that the repo's filter `filter_name` matches, per `fail2ban-regex`."""
    tool = require_tool("fail2ban-regex")
    done = run([tool, "--print-all-matched", "--print-no-missed", "--raw",
                str(log_file), str(filter_path(filter_name))], timeout=60)
    # The matched lines are printed indented under "Lines: ... matched" blocks, each prefixed
    # with "| " (see fail2ban-regex's output); keep the log lines themselves.
    matched: list[str] = []
    in_block = False
    for line in done.stdout.splitlines():
        if line.startswith("|- Matched line(s):"):
            in_block = True
            continue
        if in_block:
            if line.startswith("|  "):
                matched.append(line[3:])
                continue
            in_block = False
    summary = [l for l in done.stdout.splitlines() if l.startswith("Lines:")]
    if not summary:
        pytest.fail(f"unexpected fail2ban-regex output:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return matched


class Fail2ban:
    """fail2ban-server in the foreground, configured from host/fail2ban/ plus test overrides."""

    def __init__(self, workdir: Path, *, log_path: Path, wrapper: Sequence[str] = (),
                 jail_settings: Mapping[str, str] | None = None):
        self.client_bin = require_tool("fail2ban-client")
        self.server_bin = require_tool("fail2ban-server")
        require_tool("nft")
        self.workdir = Path(workdir)
        self.conf = self.workdir / "conf"
        self.socket = self.workdir / "fail2ban.sock"
        self.pidfile = self.workdir / "fail2ban.pid"
        self.db = self.workdir / "fail2ban.sqlite3"
        self.own_log = self.workdir / "fail2ban.log"
        self.log_path = Path(log_path)
        self.wrapper = tuple(wrapper)
        # Extra settings for the detector jails (e.g. ignoreip for a client on loopback).
        self.jail_settings = dict(jail_settings or {})
        self.process: ManagedProcess | None = None

    def write_config(self, jails: Iterable[str]) -> None:
        if self.conf.exists():
            shutil.rmtree(self.conf)
        shutil.copytree(SYSTEM_CONF, self.conf, symlinks=True)
        for sub in ("jail.d", "filter.d", "action.d"):
            src = HOST_FAIL2BAN / sub
            if src.is_dir():
                for f in src.iterdir():
                    shutil.copy(f, self.conf / sub / f.name)
        # Only what the test needs differs from production: where the log is, which jails run.
        self.conf.joinpath("fail2ban.local").write_text(
            "[Definition]\n"
            f"dbfile = {self.db}\n"
            "loglevel = INFO\n")
        jails = set(jails)
        sections = []
        for jail in (*DETECTOR_JAILS, "sshd"):
            lines = [f"[{jail}]", f"enabled = {'true' if jail in jails else 'false'}"]
            if jail in DETECTOR_JAILS:
                lines.append(f"logpath = {self.log_path}")
                lines += [f"{k} = {v}" for k, v in self.jail_settings.items()]
            sections.append("\n".join(lines))
        self.conf.joinpath("jail.local").write_text("\n\n".join(sections) + "\n")

    def _client_argv(self, *args: str) -> list[str]:
        return [*self.wrapper, self.client_bin, "-c", str(self.conf), "-s", str(self.socket),
                "-p", str(self.pidfile), *args]

    def start(self, jails: Iterable[str] = DETECTOR_JAILS, *, timeout: float = 30.0) -> "Fail2ban":
        jails = list(jails)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config(jails)
        # The log must exist before the jail starts (fail2ban refuses a jail without its file).
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        run(self._client_argv("-t"), timeout=60)
        # As Debian's fail2ban.service runs it: `fail2ban-server -xf start`.
        self.process = ManagedProcess(
            [*self.wrapper, self.server_bin, "-c", str(self.conf), "-s", str(self.socket),
             "-p", str(self.pidfile), "-x", "-f", "--logtarget", str(self.own_log), "start"],
            name="fail2ban", log_path=self.workdir / "fail2ban.stdout")
        self.process.start()

        def jails_up() -> bool:
            if not self.process.alive:
                pytest.fail(f"fail2ban exited; its log:\n{self.log_tail()}", pytrace=False)
            done = subprocess.run(self._client_argv("status"), capture_output=True, text=True,
                                  timeout=20)
            return done.returncode == 0 and all(j in done.stdout for j in jails)

        wait_until(jails_up, timeout=timeout, interval=0.2, what="fail2ban jails to start")
        return self

    def client(self, *args: str, check: bool = True) -> str:
        return run(self._client_argv(*args), timeout=30, check=check).stdout

    def banned(self, jail: str) -> list[str]:
        out = self.client("get", jail, "banned")
        return [ip.strip(" '\"[]") for ip in out.replace(",", " ").split() if ip.strip(" '\"[]")]

    def status(self, jail: str) -> dict[str, str]:
        """`fail2ban-client status JAIL` as {"Currently failed": "3", "File list": "...", ...}."""
        fields = {}
        for line in self.client("status", jail).splitlines():
            key, sep, value = line.lstrip("|`- ").partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        return fields

    def reload_argv(self) -> list[str]:
        """The `fail2ban-client reload` command for this instance (e.g. for logrotate)."""
        return self._client_argv("reload")

    def unban(self, ip: str) -> None:
        self.client("unban", ip)

    def ban(self, jail: str, ip: str) -> None:
        self.client("set", jail, "banip", ip)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.own_log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process is None or not self.process.alive:
            return
        # A clean stop runs every actionstop, which removes the nftables table.
        subprocess.run(self._client_argv("stop"), capture_output=True, timeout=30)
        deadline = time.monotonic() + 15
        while self.process.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        self.process.stop(signal.SIGTERM, timeout=5)

    def __enter__(self) -> "Fail2ban":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
