"""PostgreSQL persistence: schema and migrations, batch writes, state and inbox reads."""
