"""Where the test suite's own servers keep their data."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["postgres_home"]


@contextlib.contextmanager
def postgres_home(name: str) -> Iterator[Path]:
    """A directory for an embedded PostgreSQL cluster, outside pytest's temporary directory.

    As root, PostgreSQL runs as its own system user, which needs to traverse every parent of
    its data directory. Each pytest session that starts on the machine chmods
    ``/tmp/pytest-of-<user>`` to 0700 (pytest secures it so); a cluster below it then loses
    its own data directory at its next checkpoint ("PANIC: could not open file
    global/pg_control: Permission denied") and every later test is refused a connection.
    """
    home = Path(tempfile.mkdtemp(prefix=f"checkout-tests-{name}-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
