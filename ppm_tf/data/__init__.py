"""Data sources and contracts: the raw record schema and raw-dir layout, the synthetic world,
the MovieLens adapter, and the readers of what preprocessing writes (TFRecords, count tables)."""
