"""Point-in-time recovery for PostgreSQL (docs/pitr.md): base backups (``base``), the WAL
archive (``archive``: listing and ``archive.json``; ``push``; ``fetch``), continuity
(``continuity``, pure) and the restore (``restore``, ``spool``).

``wal-push`` imports only ``push`` and what it needs: PostgreSQL starts it once per segment.
"""
