"""Persistence: models, sessions, migrations and the queries that matter for speed."""
