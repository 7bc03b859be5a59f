"""The adapter core: layer geometry, the adapter contract, the per-layer host, targeting, registry."""
