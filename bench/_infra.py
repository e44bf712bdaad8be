"""What every benchmark starts from: its own PostgreSQL database and free local ports."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from migrations.runner import upgrade_database

REPO = Path(__file__).resolve().parent.parent


def server_url() -> str:
    """MKTX_BENCH_DATABASE_URL if set, else the embedded server under .mkt-x/bench-pg."""
    explicit = os.environ.get("MKTX_BENCH_DATABASE_URL")
    if explicit:
        return explicit
    import pgserver

    data = REPO / ".mkt-x" / "bench-pg"
    data.parent.mkdir(parents=True, exist_ok=True)
    uri: str = pgserver.get_server(data, cleanup_mode="stop").get_uri()
    return uri


def server(url: str | None = None) -> sa.URL:
    """The server's URL spoken through psycopg 3."""
    raw = url or server_url()
    return make_url(raw.replace("postgresql://", "postgresql+psycopg://", 1)).set(
        drivername="postgresql+psycopg"
    )


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new migrated database for one run, dropped afterwards."""
    base = server()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
