"""A throw-away PostgreSQL server for tests: `postgres_url` yields the SQLAlchemy URL of an empty database.

The cluster lives in a temp dir (initdb), listens on 127.0.0.1 on a free port with its unix socket in
that dir, and is stopped and deleted afterwards. Without the server binaries the tests skip locally
and fail in CI (CI=true), so a CI image that lost PostgreSQL cannot pass by skipping.
Use it with `from pg import postgres_url  # noqa: F401` in a test module.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from conftest import free_port

PG_USER = "archsearch"
PG_DB = "optuna"


def pg_bin() -> Path | None:
    """The directory of initdb/pg_ctl: $PG_BIN, then PATH, then the newest /usr/lib/postgresql/*/bin."""
    candidates = [os.environ.get("PG_BIN", ""), os.path.dirname(shutil.which("initdb") or "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))[::-1]
    return next((Path(c) for c in candidates if c and (Path(c) / "initdb").is_file()), None)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """postgresql+psycopg2://... of a fresh database on a private server, for one test module."""
    bin_dir = pg_bin()
    if bin_dir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; set PG_BIN or install postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres account
        if shutil.which("runuser") is None or subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode:
            _unavailable("running as root, and there is no 'postgres' account (or runuser) to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not pytest's tmp_path: its parent is 0700 root, which the postgres account cannot enter.
    home = Path(tempfile.mkdtemp(prefix="archsearch-pg-"))
    if as_user:
        shutil.chown(home, "postgres")
    data, log, port = home / "data", home / "server.log", free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, str(bin_dir / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                              timeout=120)
        if done.returncode:
            tail = (log.read_text()[-2000:] if log.exists() else "") + done.stdout[-1000:] + done.stderr[-1000:]
            pytest.fail(f"{cmd[0]} failed ({done.returncode}): {tail}")

    try:
        run("initdb", "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "start", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off -c max_connections=50")
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {PG_DB}")
        conn.close()
        yield f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{port}/{PG_DB}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)
