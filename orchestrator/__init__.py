"""Orchestrator: command handling, the decider, the event store, the CLI."""
