"""Test support shared by every level of the suite."""
