"""The benchmark: every hot path of the orchestrator beside a raw baseline and a peer.

Run from the repository root: ``python -m bench run`` (see docs/performance.md).
"""
