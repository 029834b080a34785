"""Alembic environment: online migrations only, on the URL the caller set.

No target metadata: the migrations are written by hand and frozen, so nothing here
imports the package (tests/store/test_tables.py compares their result with store/tables.py).
"""

from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
# Unqualified names in migrations mean public, whatever the database's default search_path
# (the embedded one puts `live` first, for analysts).
engine = create_engine(
    url, poolclass=pool.NullPool, connect_args={"options": "-c search_path=public"}
)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
