"""recursive_models package (see README)."""
