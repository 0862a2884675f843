"""Backups of the catalog: ``reelvault backup create|list|verify|restore``.

A backup is one folder, named by its UTC time, in ``REELVAULT_BACKUP_DIR`` (default
``<data dir>/backups``, i.e. ``.reelvault/backups`` beside ``make run``'s data):

- ``tables/<table>.copy``: every table of the catalog's schema, as PostgreSQL ``COPY`` text,
  all read in one repeatable-read snapshot;
- ``objects.jsonl``: every stored object the catalog refers to (videos, thumbnails, reference
  images) with its bucket, key, size and sha256, as storage describes it;
- ``backup.json``: the time, the schema revision, each table's columns and row count, the
  sequences, and the size and sha256 of every file above. It is written last (a temp file
  renamed into place), so a folder without it is an unfinished backup and never used.

The database is dumped at the Python level (asyncpg ``COPY``), not with ``pg_dump``: nothing
beyond the installed packages is needed (no client binaries of the server's major version in
the image), and a restore rebuilds the schema with the catalog's own migrations at the
recorded revision (its row-level security policies and the cluster-wide ``reelvault_tenant``
role included, whether that role exists already or not) before it copies the rows back. The
objects themselves stay where they are: a backup records what must be there, and
``verify`` checks that it is.

Modules: ``rules`` and ``manifest`` (pure decisions and ``backup.json``), ``folder`` (the
backup folder on disk), ``database`` (dump and restore), ``objects`` (the storage manifest),
``state`` (the last success and failure in NATS KV), ``environment`` (where things are) and
``command`` (the command line).
"""
