"""The authors' Parcae checkpoints converted to our ``parcae`` LM (``variant="authors"``).

Source: jacobfa/Attractor ``attractor/models/parcae/parcae.py`` (read at fcf045f); nothing is imported from or
copied out of it. Their state dict, key by key:

* ``transformer.wte``, ``transformer.ln_f``, ``transformer.ln_prelude`` -> ``wte``, ``ln_f``, ``ln_prelude``;
* ``transformer.{prelude,core_block,coda}.{i}.*`` -> ``{prelude,core,coda}.{i}.*`` (their separate ``c_q/c_k/c_v``
  concatenated into our ``qkv``, q and k rows moved from interleaved to half-split rotary pairs, as for the
  Attractor: `recursive_models.lm.authors._block_state`), plus ``attn.ve_gate`` where the block reads a value
  embedding;
* ``transformer.adapter.{A_log,dt_bias,B}`` (their ``DiagonalInjection``) -> ``A_log``, ``dt_bias``, ``B``;
  ``transformer.C`` -> ``C``; ``value_embeds.{j}`` -> ``value_embeds.{j}``.

Their rule creates some value-embedding tables and gates that their forward never reads (a table whose block has
no gate, a gate whose block has no table; see `recursive_models.lm.models.parcae.value_embed_blocks`). Our model
does not have them, and they are left out; any other key of theirs that is not placed is an error.

    from recursive_models.lm.authors_parcae import convert_authors_parcae
    from recursive_models.lm.authors import load_converted
    load_converted(ours, convert_authors_parcae(theirs.state_dict(), ours.config))
"""

from __future__ import annotations

import torch

from recursive_models.lm.authors import _block_state
from recursive_models.lm.models.parcae import value_embed_blocks

#: ours -> theirs block prefixes
_PARTS = {"prelude": "prelude", "core": "core_block", "coda": "coda"}
#: rotary tables (rebuilt from the config) and the tied head (= wte)
_IGNORED = ("freqs_cis", "lm_head.weight")


def convert_authors_parcae(theirs: dict[str, torch.Tensor | None], config) -> dict[str, torch.Tensor | None]:
    """Their ``Parcae`` state dict (or a dict of its gradients) -> our ``parcae`` (``variant="authors"``) state dict.

    Args:
        theirs: ``model.state_dict()`` of their ``Parcae`` (``transformer.*`` and ``value_embeds.*`` keys), or
            ``{name: p.grad}`` of its parameters.
        config: our resolved `LMConfig` (``n_prelude``/``n_core``/``n_coda`` = their ``n_layers_in_prelude`` /
            ``n_layers_in_recurrent_block`` / ``n_layers_in_coda``, ``mean_recurrence`` and ``bptt_steps`` = their
            ``mean_recurrence`` and ``mean_backprop_depth``; the same width, heads and vocabulary).

    Raises:
        ValueError: not an authors-variant Parcae config, a key of ours missing from theirs (e.g. their
            ``prelude_norm=False`` has no ``ln_prelude``), or a key of theirs this mapping does not place.
    """
    if config.name != "parcae" or config.variant != "authors":
        raise ValueError(f"expected a parcae config with variant='authors', got {config.name}/{config.variant}")
    t = {k.removeprefix("_orig_mod."): v for k, v in theirs.items()}
    keys = value_embed_blocks(config.n_prelude, config.n_core, config.n_coda, int(config.mean_recurrence),
                              config.bptt_steps)  # fmt: skip
    names = {
        "wte.weight": "transformer.wte.weight",
        "ln_f.weight": "transformer.ln_f.weight",
        "ln_prelude.weight": "transformer.ln_prelude.weight",
        "A_log": "transformer.adapter.A_log",
        "dt_bias": "transformer.adapter.dt_bias",
        "B": "transformer.adapter.B",
        "C.weight": "transformer.C.weight",
    }
    for part, tables in keys.items():
        for i, j in enumerate(tables):
            if j is not None:
                names[f"{part}.{i}.attn.ve_gate.weight"] = f"transformer.{_PARTS[part]}.{i}.attn.ve_gate.weight"
                names[f"value_embeds.{j}.weight"] = f"value_embeds.{j}.weight"
    missing = sorted(v for v in names.values() if v not in t)
    if missing:
        raise ValueError(f"their checkpoint lacks parameters our Parcae has: {missing[:6]}")
    ours = {mine: t[src] for mine, src in names.items()}
    hd = config.d_model // config.n_heads
    used = set(names.values())
    counts = {"prelude": config.n_prelude, "core": config.n_core, "coda": config.n_coda}
    for part, n in counts.items():
        for i in range(n):
            src = f"transformer.{_PARTS[part]}.{i}"
            ours.update(_block_state(t, src, f"{part}.{i}", hd))
            used |= {k for k in t if k.startswith(f"{src}.") and not k.endswith("ve_gate.weight")}
    # Their tables and gates that their forward never reads (see the module docstring).
    unread = {k for k in t if k.startswith("value_embeds.") or k.endswith("attn.ve_gate.weight")} - used
    left = sorted(k for k in t if k not in used and k not in unread and not k.endswith(_IGNORED))
    if left:
        raise ValueError(f"their checkpoint has parameters this conversion does not place: {left[:6]}")
    return ours
