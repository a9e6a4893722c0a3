"""Alembic migrations: they build the schema on an empty database, are idempotent, match the models,
survive concurrent first starts, and ship inside the installed package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import inspect

from kshot.errors import ConfigError
from kshot.tracking import AttemptStore
from kshot.tracking.database import VERSION_TABLE, current_revision, head_revision, upgrade

from .databases import fresh_postgres_url

REPO = Path(__file__).resolve().parents[2]
TABLES = {"attempts", "attempt_steps", "attempt_evaluations", VERSION_TABLE}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'new.db'}"  # the folder does not exist yet either
    else:
        with fresh_postgres_url() as url:
            yield url


def test_store_creates_the_schema_on_an_empty_database(empty_url):
    store = AttemptStore(empty_url)
    inspector = inspect(store.engine)
    assert TABLES <= set(inspector.get_table_names())
    assert {c["name"] for c in inspector.get_columns("attempt_steps")} >= {"attempt_id", "step", "loss", "metrics"}
    assert inspector.get_pk_constraint("attempt_steps")["constrained_columns"] == ["attempt_id", "step"]
    with store.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    store.close()


def test_migrations_are_idempotent_and_keep_data(empty_url):
    first = AttemptStore(empty_url)
    attempt = first.create_attempt("kept", "train", {"config": {}, "params": {}})
    first.add_step(attempt.id, 1, {"loss": 0.5})
    upgrade(first.engine)  # again, on an up-to-date schema: nothing happens
    first.close()
    second = AttemptStore(empty_url)
    assert second.get_attempt("kept").id == attempt.id and len(second.steps(attempt.id)) == 1
    second.close()


def test_models_and_migrations_agree(empty_url):
    """A model change without a new revision fails here (alembic autogenerate would find a difference)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from kshot.tracking.models import Base

    store = AttemptStore(empty_url)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
        diff = compare_metadata(context, Base.metadata)
    store.close()
    assert diff == []


def test_concurrent_first_starts_all_succeed(empty_url):
    """The API and workers opening a new database at the same moment must not race on the migration.

    Separate stores (engines, connections, lock-file handles) in threads take the same locks as
    separate processes would, without each paying for importing torch.
    """
    barrier = threading.Barrier(4)
    errors, stores = [], []

    def start():
        barrier.wait()
        try:
            stores.append(AttemptStore(empty_url))
            stores[-1].list_attempts()
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 4
    with stores[0].engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    for store in stores:
        store.close()


def test_create_false_does_not_migrate(tmp_path):
    store = AttemptStore(f"sqlite:///{tmp_path / 'x.db'}", create=False)
    assert "attempts" not in inspect(store.engine).get_table_names()
    store.close()


def test_database_url_precedence(monkeypatch, tmp_path):
    from kshot.tracking import database_url

    monkeypatch.delenv("KSHOT_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert database_url() == f"sqlite:///{tmp_path / 'kshot_attempts.db'}"
    monkeypatch.setenv("KSHOT_DATABASE_URL", "sqlite:///from-env.db")
    assert database_url() == "sqlite:///from-env.db"
    assert database_url("sqlite:///given.db") == "sqlite:///given.db"


def test_bad_urls_give_clear_errors():
    with pytest.raises(ConfigError, match="Invalid database URL 'not a url'.*KSHOT_DATABASE_URL"):
        AttemptStore("not a url")
    # nothing listens on port 1: the message names the server (without the password) and what to check
    with pytest.raises(
        ConfigError, match=r"Cannot open the attempt database postgresql\+psycopg://kshot:\*\*\*@127.0.0.1:1/x"
    ) as err:
        AttemptStore("postgresql+psycopg://kshot:secret@127.0.0.1:1/x")
    assert "secret" not in str(err.value)


def test_the_wheel_carries_the_migrations(tmp_path):
    """An installed kshot (not this checkout) must find env.py, the template and every revision."""
    source = tmp_path / "src-copy"  # setuptools writes build/ next to the sources: not into the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("kshot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {
        f"kshot/tracking/migrations/versions/{p.name}"
        for p in (REPO / "src/kshot/tracking/migrations/versions").glob("*.py")
    }
    assert revisions and revisions <= names
    assert {"kshot/tracking/migrations/env.py", "kshot/tracking/migrations/script.py.mako"} <= names


def test_upgrade_from_0001_adds_the_lease_and_keeps_rows(empty_url):
    """A database written before leases (revision 0001) gains heartbeat_at and lease_expires_at, rows intact."""
    from alembic import command
    from sqlalchemy import text

    from kshot.tracking.database import alembic_config, make_engine

    engine = make_engine(empty_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(
            text(
                "INSERT INTO attempts (name, kind, status, command, n_steps, metrics, artefacts, cancel_requested, "
                "created_at, updated_at) VALUES ('old', 'train', 'running', '{}', 0, '{}', '{}', false, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    store = AttemptStore(empty_url)
    columns = {c["name"] for c in inspect(store.engine).get_columns("attempts")}
    assert {"heartbeat_at", "lease_expires_at"} <= columns
    assert store.get_attempt("old").status == "running"
    assert store.reap_expired() == []  # a row without a lease is never reaped by lease
    store.close()


def _as_before_version_table(url: str, revision: str = "0002") -> None:
    """A database as kshot wrote it before VERSION_TABLE: its revision in alembic_version, Optuna's table."""
    from alembic import command
    from sqlalchemy import text

    from kshot.tracking.database import alembic_config, make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": revision})
        conn.execute(
            text(
                "INSERT INTO attempts (name, kind, status, command, n_steps, metrics, artefacts, cancel_requested, "
                "created_at, updated_at) VALUES ('old', 'train', 'completed', '{}', 0, '{}', '{}', false, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()


def test_a_database_from_before_the_version_table_moves_to_it(empty_url):
    """kshot's revision leaves alembic_version (Optuna's) for kshot_alembic_version; rows and study columns follow."""
    _as_before_version_table(empty_url)
    store = AttemptStore(empty_url)
    inspector = inspect(store.engine)
    assert "alembic_version" not in inspector.get_table_names()
    assert {"study", "trial"} <= {c["name"] for c in inspector.get_columns("attempts")}
    assert store.get_attempt("old").status == "completed"
    with store.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    store.close()


@pytest.mark.parametrize("optuna_first", [True, False])
def test_optuna_and_the_store_share_one_database(empty_url, optuna_first):
    """`kshot tune` keeps Optuna's study tables beside the attempts: each schema opens, in either order."""
    import optuna

    from kshot.tuning.storage import optuna_storage

    def open_optuna():
        storage = optuna_storage(empty_url)
        optuna.create_study(storage=storage, study_name="s", load_if_exists=True)
        return storage

    storage = open_optuna() if optuna_first else None
    store = AttemptStore(empty_url)
    store.create_attempt("beside-optuna", "train", {"config": {}, "params": {}})
    storage = open_optuna() if storage is None else storage
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["s"]
    store.close()
    again = AttemptStore(empty_url)  # an up-to-date store on a database Optuna also uses: nothing to do
    assert again.get_attempt("beside-optuna") is not None
    with again.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    again.close()
    storage.engine.dispose()
