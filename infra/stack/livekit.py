"""The LiveKit server on loopback, in dev mode, built once from the Go module proxy.

A `livekit-server` on PATH is used as it is. Otherwise the pinned release is built with
`go install github.com/livekit/livekit-server/cmd/server@<version>` into the cache
(`<cache>/livekit-<version>/server`, about two minutes the first time) and reused after.
The server gets a config file that keeps every listener on loopback: signalling on
`host:livekit_port`, media on one muxed UDP port of the loopback interface, no TCP media
port (LiveKit binds that one on every interface), and `host` announced as the node IP.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Final

from turnlog.infra.stack.components import ComponentStatus
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.errors import PrerequisiteError
from turnlog.infra.stack.process import (
    PidFile,
    ensure_port_free,
    pid_alive,
    port_open,
    spawn_detached,
    stop_pid,
    wait_until,
)

logger = logging.getLogger("turnlog.stack.livekit")

MODULE: Final = "github.com/livekit/livekit-server/cmd/server"
GO_FIX: Final = (
    "install Go 1.26 or newer from https://go.dev/dl/ (Debian's golang package is too old) "
    "and put its bin folder on PATH, or put a `livekit-server` binary on PATH"
)
_MIN_GO: Final = (1, 21)  # older toolchains cannot fetch the Go release the server needs
_BUILD_TIMEOUT: Final = 1800.0


def go_version(go: str) -> tuple[int, int]:
    """(major, minor) of a Go toolchain."""
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    match = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if match is None:
        raise PrerequisiteError(f"cannot read the Go version from `{go} env GOVERSION`", GO_FIX)
    return int(match.group(1)), int(match.group(2))


def config_yaml(settings: StackSettings) -> str:
    """The server's configuration: loopback only, dev keys from the settings."""
    s = settings
    return (
        f"port: {s.livekit_port}\n"
        f"bind_addresses: [{s.host}]\n"
        "rtc:\n"
        "  tcp_port: 0\n"
        f"  udp_port: {s.livekit_udp_port}\n"
        "  use_external_ip: false\n"
        f"  node_ip: {s.host}\n"
        "  enable_loopback_candidate: true\n"
        "  interfaces:\n"
        "    includes: [lo]\n"
        "logging:\n"
        "  level: info\n"
        "keys:\n"
        f"  {s.livekit_api_key}: {s.livekit_api_secret}\n"
    )


class LiveKit:
    """A LiveKit server whose config and pid live in the state folder."""

    name = "livekit"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.home = settings.state_dir / "livekit"
        self.log_path = settings.logs_dir / "livekit.log"
        self.pidfile = PidFile(settings.run_dir / "livekit.pid")
        self.build_dir = settings.cache_dir / f"livekit-{settings.livekit_version}"

    @property
    def address(self) -> str:
        return self.settings.livekit_url

    # -- binary -----------------------------------------------------------------------
    def ensure_binary(self) -> Path:
        """`livekit-server` from PATH, else the cached build, else build it now."""
        on_path = shutil.which("livekit-server")
        if on_path is not None:
            return Path(on_path)
        built = self.build_dir / "server"
        if built.is_file() and os.access(built, os.X_OK):
            return built
        go = shutil.which("go")
        if go is None:
            raise PrerequisiteError(
                "Go is not installed (it builds the LiveKit server "
                f"{self.settings.livekit_version} once, from the Go module proxy)",
                GO_FIX,
            )
        if go_version(go) < _MIN_GO:
            raise PrerequisiteError(
                f"Go {'.'.join(map(str, go_version(go)))} is too old to build the LiveKit server",
                GO_FIX,
            )
        return self._build(go, built)

    def _build(self, go: str, built: Path) -> Path:
        version = self.settings.livekit_version
        self.build_dir.mkdir(parents=True, exist_ok=True)
        logger.info("building the LiveKit server %s with go install (once, ~2 min)", version)
        env = {**os.environ, "GOBIN": str(self.build_dir), "CGO_ENABLED": "0"}
        try:
            result = subprocess.run(
                [go, "install", f"{MODULE}@{version}"], capture_output=True, text=True,
                env=env, check=False, timeout=_BUILD_TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise PrerequisiteError(
                f"`go install {MODULE}@{version}` did not finish in {_BUILD_TIMEOUT:.0f} s",
                "check access to the Go module proxy (GOPROXY), then run it by hand",
            ) from None
        if result.returncode != 0 or not built.is_file():
            raise PrerequisiteError(
                f"`go install {MODULE}@{version}` failed:\n{result.stderr[-1500:]}",
                "check access to the Go module proxy (GOPROXY, default proxy.golang.org), "
                "or put a `livekit-server` binary on PATH",
            )
        return built

    # -- lifecycle --------------------------------------------------------------------
    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "livekit.yaml"
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(config_yaml(self.settings))
        return path

    def start(self) -> str:
        s = self.settings
        if (pid := self.pidfile.alive_pid()) is not None and self._serving():
            return f"already running (pid {pid})"
        binary = self.ensure_binary()
        ensure_port_free(s.host, s.livekit_port, owner="LiveKit", setting="TURNLOG_LIVEKIT_PORT")
        config = self._write_config()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        pid = spawn_detached(
            [str(binary), "--dev", "--config", str(config)], log_path=self.log_path
        )
        self.pidfile.write(pid)
        waited = wait_until(
            self._serving, timeout=s.start_timeout, what="LiveKit server",
            log_path=self.log_path, alive=lambda: pid_alive(pid),
        )  # fmt: skip
        return f"started (pid {pid}, {binary}) in {waited:.1f} s"

    def _serving(self) -> bool:
        s = self.settings
        if not port_open(s.host, s.livekit_port):
            return False
        try:
            url = f"http://{s.host}:{s.livekit_port}/"
            with urllib.request.urlopen(url, timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> str:
        pid = self.pidfile.alive_pid()
        if pid is None:
            self.pidfile.remove()
            return "not running"
        clean = stop_pid(pid, timeout=20)
        self.pidfile.remove()
        return "stopped" if clean else "killed after 20 s (it did not stop on SIGTERM)"

    def status(self) -> ComponentStatus:
        pid = self.pidfile.alive_pid()
        serving = pid is not None and self._serving()
        detail = f"LiveKit server (dev keys), media udp {self.settings.livekit_udp_port}"
        return ComponentStatus(self.name, serving, self.address, pid, detail)
