"""Fixtures of the fault-injection suite (tests/faults) that the shared conftest lacks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.embedded import EmbeddedPostgres


@pytest.fixture
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL cluster of this test only, which it may stop, kill and restart."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg-fault"), settings={"fsync": "off"})
    server.start()
    try:
        yield server
    finally:
        server.stop()
