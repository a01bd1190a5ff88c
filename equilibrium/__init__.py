"""equilibrium package (see README)."""
