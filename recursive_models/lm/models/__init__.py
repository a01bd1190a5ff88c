"""Built-in LM families, one per file; importing this package registers them in `LM_MODELS`.

``gpt`` (decoder-only baseline), ``parcae`` (looped prelude/core/coda LM: the authors' Parcae, or our first with a
stable diagonal injection), ``deq`` (equilibrium LM with a separate or tied head) and ``attractor`` (backbone
proposal refined to a fixed point).
"""

from recursive_models.lm.models import attractor, deq, gpt, parcae  # noqa: F401
