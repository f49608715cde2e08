"""The database layer: opening SQLite files safely, process locks."""
