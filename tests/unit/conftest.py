"""Shared setup of the pure unit tests (no servers, no network)."""

from __future__ import annotations

import sys
from pathlib import Path

# The dev venv does not install the project itself; make the repository root
# importable so `events` and `orchestrator` resolve from the working tree.
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
