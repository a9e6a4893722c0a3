"""Alembic environment of the attempt store.

kshot runs it programmatically (``kshot.tracking.database.upgrade``) with an open connection in
``config.attributes["connection"]``; from the command line (``alembic -c alembic.ini ...`` at the
repository root, to write a new revision) it connects to ``kshot.tracking.database_url()``.
"""

from __future__ import annotations

from alembic import context

from kshot.tracking.database import database_url, make_engine
from kshot.tracking.models import Base

target_metadata = Base.metadata


def run(connection) -> None:
    # Batch mode lets later revisions alter columns on SQLite, which has no ALTER COLUMN.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    run(connection)
else:
    engine = make_engine(database_url())
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
