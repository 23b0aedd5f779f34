"""Polar (polar.sh): pure `transformers` and the httpx `client` adapter."""
