"""Real databases for the store tests: a SQLite file, or a fresh database on the PostgreSQL server
that scripts/services.sh starts (override with KSHOT_TEST_POSTGRES_URL). Importable by other test
packages (``from tests.tracking.databases import fresh_postgres_url``)."""

from __future__ import annotations

import contextlib
import os
import secrets

import pytest

POSTGRES_URL = os.environ.get("KSHOT_TEST_POSTGRES_URL", "postgresql+psycopg://kshot:kshot@127.0.0.1:5432/kshot_test")


def require_postgres() -> str:
    """The server's URL; skips only when KSHOT_SKIP_SERVICES=1, otherwise an unreachable server fails the test."""
    if os.environ.get("KSHOT_SKIP_SERVICES") == "1":
        pytest.skip("KSHOT_SKIP_SERVICES=1: PostgreSQL tests skipped")
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as err:
        pytest.fail(
            f"PostgreSQL at {engine.url.render_as_string(hide_password=True)} is unreachable ({err.orig}). "
            "Run scripts/services.sh (or set KSHOT_SKIP_SERVICES=1 to skip these tests locally).",
            pytrace=False,
        )
    finally:
        engine.dispose()
    return POSTGRES_URL


@contextlib.contextmanager
def fresh_postgres_url():
    """A new empty database on the test server, dropped afterwards: tests never see each other's rows."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(require_postgres())
    name = f"kshot_t_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
