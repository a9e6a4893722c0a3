"""Optuna's storage on the attempt store's own database: its tables sit beside kshot's."""

from __future__ import annotations

import contextlib

from sqlalchemy import text

from ..errors import ConfigError
from ..tracking.database import database_url, make_engine, migration_lock, safe_url

# Optuna creates its tables on first use, and two processes doing it at once on PostgreSQL collide
# (a unique violation in the catalogue): creation is serialised under this advisory lock.
_PG_OPTUNA_LOCK = 0x6B73686F75


def optuna_storage(url: str | None = None):
    """An ``optuna.storages.RDBStorage`` on ``url`` (else $KSHOT_DATABASE_URL, else ./kshot_attempts.db).

    The engine settings are the store's (``make_engine``): a SQLite file's folder is created and
    concurrent writers wait for the lock instead of failing, which several `kshot tune` processes on
    one study need. kshot's migrations keep their revision in their own table, so the two schemas
    never read each other's.
    """
    import optuna
    from sqlalchemy.exc import OperationalError

    url = database_url(url)
    engine = make_engine(url)  # the same validation and folder creation as the store's
    kwargs = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    try:
        with _creation_lock(engine):
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except OperationalError as err:
        raise ConfigError(
            f"Cannot open the study database {safe_url(url)}: {err.orig}. Check --db or $KSHOT_DATABASE_URL."
        ) from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def _creation_lock(engine):
    if engine.dialect.name != "postgresql":
        with migration_lock(engine):  # SQLite: the store's lock file
            yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_OPTUNA_LOCK})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_OPTUNA_LOCK})
