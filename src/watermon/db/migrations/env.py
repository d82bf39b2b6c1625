"""Alembic environment: the engine comes from watermon (never from a file with secrets)."""

from alembic import context

from watermon.db.schema import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
