"""Projections of the event stream into Postgres read models."""
