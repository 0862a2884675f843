"""Alembic migrations of the catalog's schema, applied at start by ``reelvault_catalog.migrate``."""
