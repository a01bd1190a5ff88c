"""Built-in models, one per file; importing this package registers them in `recursive_models.MODELS`."""

from recursive_models.models import attractor, hrm, transformer, trm  # noqa: F401
