"""The fault suite (tests/faults), on embedded PostgreSQL and Redis that this script starts
and stops itself, never on the machine's shared servers: the scenarios stop them.

    python scripts/run_faults.py [pytest arguments]     (what `make test-faults` runs)

The scenarios spend most of their time waiting (for an outage to end, a retry to fall due),
so they run in FAULT_LANES lanes at once (default 2), each lane a pytest process with
servers of its own. At the end each scenario's measured recovery times are printed, from
the report every scenario writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess  # nosec B404 - runs this project's pytest with fixed arguments
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.servers import STATE_ENV, Servers  # noqa: E402

SUITE = ROOT / "tests" / "faults"
ARTIFACTS = ROOT / "test-artifacts"
REPORT_ENV = "NEXUS_FAULT_REPORT"
# Roughly how long each scenario file takes, to balance the lanes (unknown files: 60 s).
EXPECTED_SECONDS = {
    "test_webhook_receiver_down.py": 180,
    "test_redis_down.py": 70,
    "test_postgres_down.py": 65,
    "test_worker_killed.py": 45,
    "test_etl_killed.py": 45,
    "test_retry_worker_dies.py": 30,
}


def _lanes(files: list[Path], count: int) -> list[list[Path]]:
    lanes: list[list[Path]] = [[] for _ in range(count)]
    load = [0] * count
    for path in sorted(files, key=lambda p: -EXPECTED_SECONDS.get(p.name, 60)):
        index = load.index(min(load))
        lanes[index].append(path)
        load[index] += EXPECTED_SECONDS.get(path.name, 60)
    return [lane for lane in lanes if lane]


def _print_report(report: Path) -> None:
    if not report.exists():
        return
    print("\nFault scenarios, as measured:")
    for line in report.read_text().splitlines():
        entry = json.loads(line)
        numbers = ", ".join(f"{key} {value}" for key, value in entry["numbers"].items())
        print(f"  {entry['scenario']}: {numbers}")


def main(args: list[str]) -> int:
    # Scenario files named on the command line run alone; other arguments go to pytest.
    named = [Path(arg).resolve() for arg in args if arg.endswith(".py") and Path(arg).is_file()]
    pytest_args = [arg for arg in args if not (arg.endswith(".py") and Path(arg).is_file())]
    files = named or sorted(SUITE.glob("test_*.py"))
    if not files:
        print("no fault scenarios found: failing", file=sys.stderr)
        return 1
    ARTIFACTS.mkdir(exist_ok=True)
    report = ARTIFACTS / "faults-report.jsonl"
    report.unlink(missing_ok=True)
    lanes = _lanes(files, max(1, int(os.environ.get("FAULT_LANES", "2"))))
    base = Path(tempfile.mkdtemp(prefix="nexus-faults-"))
    os.chmod(base, 0o755)  # noqa: S103  # nosec B103 - the embedded PostgreSQL runs as its own user under root
    # pgserver keeps a lock file in the runtime directory; give it one where none is set.
    runtime = base / "run"
    runtime.mkdir(mode=0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    started: list[tuple[Servers, subprocess.Popen, Path]] = []
    began = time.monotonic()
    try:
        for number, lane in enumerate(lanes, 1):
            root = base / f"lane{number}"
            root.mkdir()
            os.chmod(root, 0o755)  # noqa: S103  # nosec B103 - as above
            servers = Servers.at(root)
            servers.create()
            env = {
                **os.environ,
                STATE_ENV: str(root),
                REPORT_ENV: str(report),
                "DATABASE_URL": servers.postgres.url,
                "REDIS_URL": servers.redis.url,
            }
            env.pop("CELERY_BROKER_URL", None)
            log_path = ARTIFACTS / f"faults-lane{number}.log"
            log = open(log_path, "wb")  # noqa: SIM115 - closed when the lane ends
            command = [
                str(ROOT / ".venv" / "bin" / "pytest"),
                "-p",
                "no:xdist",
                "-v",
                "--tb=short",
                "--show-capture=no",
                *map(str, lane),
                *pytest_args,
            ]
            print(f"lane {number}: {', '.join(p.name for p in lane)} (log: {log_path.relative_to(ROOT)})")
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # nosec B603
            started.append((servers, process, log_path))
        status = 0
        for number, (_, process, log_path) in enumerate(started, 1):
            code = process.wait()
            print(f"\n===== lane {number} (exit {code}) =====")
            print(log_path.read_text(errors="replace")[-6000:] if code else _summary_line(log_path))
            if code == 5:
                print("pytest collected no tests in this lane: failing", file=sys.stderr)
            status = status or code
        _print_report(report)
        print(f"\nfault suite took {time.monotonic() - began:.0f} s")
        return status
    finally:
        for servers, process, _ in started:
            if process.poll() is None:
                process.kill()
            servers.stop()
        shutil.rmtree(base, ignore_errors=True)


def _summary_line(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    passed = [line for line in lines if " PASSED" in line or " FAILED" in line or " ERROR" in line]
    return "\n".join([*passed, lines[-1] if lines else "(no output)"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
