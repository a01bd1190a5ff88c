"""Hydra config groups of `python -m recursive_models.train` (model, size, task, experiment)."""
