"""Kong Konnect / OpenMeter billing: `client.KongProvider` (httpx) and pure `transformers`."""
