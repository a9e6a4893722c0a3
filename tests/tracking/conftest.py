from __future__ import annotations

import pytest

from .databases import fresh_postgres_url


@pytest.fixture(scope="session")
def postgres_session_url():
    """One fresh database per test session (creating one per test costs a second); emptied per test."""
    with fresh_postgres_url() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The same tests run on a SQLite file and on a real PostgreSQL server, each starting empty."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'attempts.db'}"
    url = request.getfixturevalue("postgres_session_url")
    from sqlalchemy import text

    from kshot.tracking import AttemptStore

    store = AttemptStore(url)
    with store.engine.begin() as conn:
        conn.execute(text("TRUNCATE attempts, attempt_steps, attempt_evaluations RESTART IDENTITY CASCADE"))
    store.close()
    return url


@pytest.fixture()
def store(db_url):
    from kshot.tracking import AttemptStore

    store = AttemptStore(db_url)
    yield store
    store.close()
