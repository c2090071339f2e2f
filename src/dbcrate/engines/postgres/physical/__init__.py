"""PostgreSQL physical mode (docs/pitr.md): base backups with ``pg_basebackup -D - -Ft -X
none`` (``engine``), what the tar stream says about itself (``tarscan``), WAL page headers
(``walpage``) and a recovery server on a private socket (``recovery``).

Imported by operations/pitr only (the CLI never imports it).
"""
