"""Dataset builders and loaders: Severson Qdlin folders, capacity-per-cycle CSVs (NASA, the agent's store)."""
