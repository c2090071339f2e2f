"""dbcrate: encrypted, streaming database backups to storage you own."""

__version__ = "0.1.0"
