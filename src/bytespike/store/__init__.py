"""Persistence: tables, migrations and the repositories that hold all SQL."""
