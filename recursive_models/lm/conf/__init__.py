"""Hydra config groups of `python -m recursive_models.lm.train` (model/, size/), shipped inside the package."""
