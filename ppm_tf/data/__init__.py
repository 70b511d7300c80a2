"""Data sources and contracts: the raw record schema, the synthetic world, adapters."""
