"""Alembic environment of the attempt store.

kshot runs it programmatically (``kshot.tracking.database.upgrade``) with an open connection in
``config.attributes["connection"]``; from the command line (``alembic -c alembic.ini ...`` at the
repository root, to write a new revision) it connects to ``kshot.tracking.database_url()``.
"""

from __future__ import annotations

from alembic import context

from kshot.tracking.database import VERSION_TABLE, database_url, make_engine
from kshot.tracking.models import Base

target_metadata = Base.metadata


def include_name(name, type_, parent_names) -> bool:
    """Only kshot's tables: Optuna's (``kshot tune`` keeps them in the same database) are none of ours."""
    return type_ != "table" or name in target_metadata.tables


def run(connection) -> None:
    # Batch mode lets later revisions alter columns on SQLite, which has no ALTER COLUMN.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        version_table=VERSION_TABLE,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    run(connection)
else:
    engine = make_engine(database_url())
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
