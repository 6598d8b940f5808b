"""PostgreSQL from Debian's packages: a private cluster in the state folder, on its own port."""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from turnlog.infra.stack.components import ComponentStatus
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.errors import ComponentFailedError, PrerequisiteError
from turnlog.infra.stack.process import ensure_port_free, pid_alive, port_open

logger = logging.getLogger("turnlog.stack.postgres")

_DEBIAN_BIN = Path("/usr/lib/postgresql")
_SERVER_USER = "postgres"  # initdb refuses root; Debian's package creates this user
_FALLBACK_ROOT = Path("/var/lib/turnlog")


def find_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server's bin folder, if one is installed."""
    candidates = [p.parent for p in _DEBIAN_BIN.glob("*/bin/initdb")]
    if not candidates:
        return None
    return max(candidates, key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0))


def install_server() -> Path:
    """Install Debian's PostgreSQL server package (as root), or say how to."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PrerequisiteError(
            "the PostgreSQL server is not installed",
            "sudo apt-get update && sudo apt-get install -y postgresql",
        )
    logger.info("installing Debian's postgresql package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise PrerequisiteError(
                f"`{' '.join(argv)}` failed:\n{result.stderr[-1500:]}",
                "check access to Debian's package mirror, then run it by hand",
            )
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PrerequisiteError(
            f"postgresql installed but no initdb found under {_DEBIAN_BIN}",
            "apt-get install -y postgresql",
        )
    return bin_dir


class Postgres:
    """A cluster owned by the ``postgres`` user when we are root, else by us."""

    name = "postgres"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.link = settings.state_dir / "postgres"

    # The server only ever sees resolved paths: the state folder may be a link target.
    @property
    def home(self) -> Path:
        return self.link.resolve()

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_path(self) -> Path:
        return self.home / "postgres.log"

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.postgres_port}"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", _SERVER_USER, "--", *argv]

    def _run(self, argv: list[str], what: str) -> str:
        result = subprocess.run(
            self._as_server_user(argv), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ComponentFailedError(
                f"PostgreSQL: {what} failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-2000:]}"
            )
        return result.stdout

    def _prepare_dirs(self) -> None:
        if os.geteuid() != 0:
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            return
        try:
            owner = pwd.getpwnam(_SERVER_USER)
        except KeyError:
            raise PrerequisiteError(
                f"user '{_SERVER_USER}' does not exist (Debian's postgresql package makes it)",
                "apt-get install -y postgresql",
            ) from None
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.link.exists() and not self._server_user_reaches(self.settings.state_dir):
            # e.g. a checkout under /root: keep the cluster where the server user can reach
            # it, and link it from the state folder so status, stop and cleanup find it.
            digest = hashlib.sha256(str(self.settings.state_dir).encode()).hexdigest()[:12]
            outside = _FALLBACK_ROOT / f"turnlog-postgres-{digest}"
            outside.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.link.symlink_to(outside, target_is_directory=True)
            logger.info(
                "%s is closed to '%s'; the cluster lives in %s",
                self.settings.state_dir,
                _SERVER_USER,
                outside,
            )
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.home, self.socket_dir, *self.home.rglob("*")):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        if not self._server_user_reaches(self.home):
            raise PrerequisiteError(
                f"the '{_SERVER_USER}' user cannot reach {self.home}",
                "set TURNLOG_STATE_DIR to a folder every user can traverse, "
                "e.g. TURNLOG_STATE_DIR=/var/lib/turnlog/state",
            )

    def _server_user_reaches(self, path: Path) -> bool:
        probe = ["test", "-x", str(path), "-a", "-w", str(path)]
        return subprocess.run(self._as_server_user(probe), check=False).returncode == 0

    def _initdb(self, bin_dir: Path) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            "initdb",
        )
        tuning = {
            "shared_buffers": "256MB",
            "max_connections": "200",
            "wal_level": "replica",
            "max_wal_size": "2GB",
            "log_min_duration_statement": "1000",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Turnlog local stack\n")
            conf.writelines(f"{key} = '{value}'\n" for key, value in tuning.items())

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def start(self) -> str:
        bin_dir = find_bin_dir() or install_server()
        s = self.settings
        if (pid := self._postmaster_pid()) is not None and port_open(s.host, s.postgres_port):
            self._ensure_database()
            return f"already running (pid {pid})"
        ensure_port_free(
            s.host, s.postgres_port, owner="PostgreSQL", setting="TURNLOG_POSTGRES_PORT"
        )
        self._prepare_dirs()
        self._initdb(bin_dir)
        options = f"-c listen_addresses={s.host} -p {s.postgres_port} -k {self.socket_dir}"
        self._run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(s.start_timeout)),
                "-o",
                options,
                "start",
            ],
            f"start (log: {self.log_path})",
        )
        self._ensure_database()
        return f"started (pid {self._postmaster_pid()})"

    def _superuser_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.settings.postgres_port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def _ensure_database(self) -> None:
        """Our role and database, made once; the password follows the settings."""
        s = self.settings
        with self._superuser_connection() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (s.postgres_user,)
            ).fetchone()
            verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    verb, sql.Identifier(s.postgres_user), sql.Literal(s.postgres_password)
                )
            )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (s.postgres_db,)
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(s.postgres_db), sql.Identifier(s.postgres_user)
                    )
                )

    def stop(self) -> str:
        bin_dir = find_bin_dir()
        if self._postmaster_pid() is None or bin_dir is None:
            return "not running"
        self._run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            "stop",
        )
        return "stopped"

    def status(self) -> ComponentStatus:
        pid = self._postmaster_pid()
        serving = pid is not None and port_open(self.settings.host, self.settings.postgres_port)
        return ComponentStatus(self.name, serving, self.address, pid, f"data {self.data_dir}")
