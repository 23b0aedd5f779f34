"""lomi. (lomi.africa): pure `transformers` and the httpx `client` adapter."""
