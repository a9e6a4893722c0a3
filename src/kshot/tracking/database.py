"""Where the attempts live: the database URL, the engine, and migrating the schema to head."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from ..errors import ConfigError

ENV_VAR = "KSHOT_DATABASE_URL"
DEFAULT_FILE = "kshot_attempts.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Alembic's default version table, alembic_version, is Optuna's: `kshot tune` keeps its studies in the
# same database, and two schemas recording their revisions in one table would each read the other's
# as unknown. kshot records its own in this table; databases from before it are moved over (upgrade).
VERSION_TABLE = "kshot_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"
KSHOT_REVISIONS_BEFORE_MOVE = ("0001", "0002")
# Any constant works; it only has to be the same for every kshot process sharing a PostgreSQL server.
_PG_MIGRATION_LOCK = 0x6B73686F74
# A PostgreSQL server that accepts the connection and then says nothing (hung, or a half-open network)
# would otherwise stall every caller, a worker's reconcile loop included, for as long as TCP waits.
# A URL's own ?connect_timeout= wins.
PG_CONNECT_TIMEOUT_SECONDS = 10


def database_url(url: str | None = None) -> str:
    """``url``, else ``$KSHOT_DATABASE_URL``, else a SQLite file ``kshot_attempts.db`` in the working directory."""
    if url:
        return url
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    return f"sqlite:///{Path.cwd() / DEFAULT_FILE}"


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"Invalid database URL {url!r} (from --db or ${ENV_VAR}). Use e.g. sqlite:///attempts.db or "
            "postgresql+psycopg://user:password@host:5432/dbname."
        ) from None
    kwargs: dict = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        if memory:
            # One shared connection, or every new connection would see its own empty database.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # The API and worker processes write concurrently: wait for the lock instead of failing.
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_SECONDS}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as err:
        raise ConfigError(f"Cannot use database {safe_url(url)}: {err}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the API) proceed while a training job writes its steps.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alembic_config(connection: Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _move_legacy_version(connection: Connection) -> None:
    """A database written before VERSION_TABLE existed holds kshot's revision in alembic_version: move it.

    Only kshot's own revision ids are moved (an alembic_version of Optuna's is left alone), and the
    table is dropped once empty, so that Optuna stamps its own there.
    """
    from sqlalchemy import inspect

    tables = set(inspect(connection).get_table_names())
    if LEGACY_VERSION_TABLE not in tables or VERSION_TABLE in tables:
        return
    rows = [r[0] for r in connection.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}"))]
    if len(rows) != 1 or rows[0] not in KSHOT_REVISIONS_BEFORE_MOVE:
        return
    connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
    connection.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": rows[0]})
    connection.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))


def upgrade(engine: Engine) -> None:
    """Migrate the schema to head; fast and idempotent when it is there already, safe under concurrent starts."""
    head = head_revision()
    # The first connection to a new SQLite file switches it to WAL, and SQLite refuses that ("database
    # is locked", without waiting) while another connection opens the file: so even the check runs
    # under the lock. Once the file is in WAL mode the pragma is a no-op.
    with migration_lock(engine):
        with engine.connect() as conn:
            if current_revision(conn) == head:
                return
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            _move_legacy_version(conn)
            if current_revision(conn) == head:
                return
            from alembic import command

            command.upgrade(alembic_config(conn), "head")


@contextlib.contextmanager
def migration_lock(engine: Engine):
    """Serialise migrations of one SQLite file between processes (PostgreSQL uses an advisory lock)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent first starts are then the user's to avoid
        yield
        return
    with open(f"{database}.migrate.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
