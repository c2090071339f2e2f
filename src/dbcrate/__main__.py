"""``python -m dbcrate``."""

from dbcrate.cli.main import run

run()
