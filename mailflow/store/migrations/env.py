"""Alembic environment: runs with the engine mailflow hands it (never a URL in an ini)."""

from alembic import context

from mailflow.store.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite needs batch mode to alter tables
    )
    context.run_migrations()
