"""The Parcae LM's ``authors`` variant against the authors' own code, and its parts without it.

Run: ``python -m pytest tests/test_lm_parcae_authors.py -q``. The fidelity tests need a checkout of the public
repository jacobfa/Attractor, named by an environment variable, and skip without it::

    git clone https://github.com/jacobfa/Attractor /tmp/refs/Attractor
    ATTRACTOR_REFERENCE_AUTHORS=/tmp/refs/Attractor python -m pytest tests/test_lm_parcae_authors.py -q

They build the authors' ``Parcae`` (``attractor/models/parcae/parcae.py``, their 140M config's settings at our
widths) with their code and initialisation, perturb the weights their init leaves at 0, 1 or the identity (norm
gains, output projections, the injection's A, Δ and B), copy them into our model
(`recursive_models.lm.authors_parcae.convert_authors_parcae`) and check on CPU, fp32, with the same seed for the
random "like-init" state on both sides: the state, the logits and the loss within 1e-4 at test-time depths 1, 4
and 8 (eval; their code fails at depth 0), and the logits, loss and every parameter gradient in training mode, at
fixed depths (their ``num_steps_pair = [r - min(r, 4), min(r, 4)]``) and at their sampled per-sequence depths
(reproduced by our `sample_depths` from their seed). Verified against jacobfa/Attractor fcf045f.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from recursive_models.lm.authors import load_converted
from recursive_models.lm.authors_parcae import convert_authors_parcae
from recursive_models.lm.models.parcae import AUTHORS_DECAY, value_embed_blocks
from recursive_models.lm.registry import build_lm, resolve_lm_config

AUTHORS_ROOT = os.environ.get("ATTRACTOR_REFERENCE_AUTHORS")
V, SEQ = 256, 64


# ---- no reference needed --------------------------------------------------------------------------------------
def test_authors_is_the_default_with_their_settings() -> None:
    model = build_lm("parcae", "tiny")
    c = model.config
    assert c.variant == "authors"
    assert (c.norm_weight, c.embed_norm, c.mlp_act_scale, c.rope_base, c.logit_softcap) == (True, False, 0.5, 5e4, None)
    assert (c.init, c.init_orthogonal) == ("scaled_zero", True)
    assert (c.mean_recurrence, c.bptt_steps, c.eval_recurrence) == (8, 4, 8)
    assert c.recurrence_sampling == "sequence"
    # their injection init: A = 1, carry sqrt(1/5) on every channel, B = I
    decay, _ = model.carry()
    torch.testing.assert_close(decay, torch.full_like(decay, AUTHORS_DECAY))
    assert torch.equal(model.B.detach(), torch.eye(c.d_model))
    # scaled-zero: every block starts as the identity; C is a scaled orthogonal matrix (singular values sqrt(2/5))
    for part in (model.prelude, model.core, model.coda):
        assert all(not b.attn.proj.weight.any() and not b.mlp.proj.weight.any() for b in part)
    s = torch.linalg.svdvals(model.C.weight.detach())
    torch.testing.assert_close(s, torch.full_like(s, math.sqrt(2 / 5)), atol=1e-4, rtol=0)
    assert float(model.value_embeds["1"].weight.detach().std()) == pytest.approx(1.0, abs=0.05)  # PyTorch's N(0, 1)


@pytest.mark.parametrize(("size", "split"), [("tiny", (1, 2, 1)), ("small", (3, 2, 3)), ("base", (5, 6, 5))])
def test_split_is_equal_thirds_and_the_diagonal_variant_keeps_quarters(size: str, split: tuple) -> None:
    c = resolve_lm_config("parcae", size)
    assert (c.n_prelude, c.n_core, c.n_coda) == split and sum(split) == c.n_layers
    d = resolve_lm_config("parcae", size, variant="diagonal")
    assert (d.n_prelude, d.n_coda) == (max(1, d.n_layers // 4),) * 2
    assert (d.norm_weight, d.init, d.logit_softcap) == (False, "lecun", 15.0)


def test_value_embedding_rule() -> None:
    # Our sizes: every other block reads one, and every table is read.
    assert value_embed_blocks(1, 2, 1, 8, 4) == {"prelude": [None], "core": ["1", None], "coda": ["3"]}
    small = value_embed_blocks(3, 2, 3, 8, 4)
    assert small == {"prelude": [None, "1", None], "core": ["3", None], "coda": ["5", None, "7"]}
    # An odd core: tables at even effective layers, gates at odd layer ids, so only coda 1 has both.
    assert value_embed_blocks(2, 1, 2, 8, 4) == {"prelude": [None, None], "core": [None], "coda": [None, "4"]}
    model = build_lm("parcae", "tiny", n_prelude=2, n_core=1, n_coda=2)
    assert sorted(model.value_embeds) == ["4"] and model.coda[1].attn.ve_gate is not None
    assert all(b.attn.ve_gate is None for b in (*model.prelude, *model.core, model.coda[0]))


def test_value_embeddings_count_as_embeddings() -> None:
    model = build_lm("parcae", "tiny", vocab_size=V)
    tables = sum(p.numel() for p in model.value_embeds.parameters())
    assert tables == 2 * V * model.config.d_model
    n = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=True) == n - model.wte.weight.numel() - tables


def test_like_init_state_and_sampled_depths() -> None:
    model = build_lm("parcae", "small", vocab_size=V)
    h = model.initial_state(torch.empty(64, 32, model.config.d_model))
    s = math.sqrt(2 / (5 * model.config.d_model))
    assert float(h.abs().max()) <= 3 * s and abs(float(h.std()) / s - 0.986) < 0.02  # std of a ±3σ-truncated normal
    r = model.sample_depths(20000, torch.device("cpu"), torch.Generator().manual_seed(0)).float()
    assert r.min() >= 1 and abs(float(r.mean()) - 8.0) < 0.1
    # backprop depth min(r, 4): sampled, mean 3.94 (E[min(max(1, Poisson(8)), 4)])
    assert abs(float(r.clamp(max=4).mean()) - 3.9408) < 0.01


def test_variant_errors() -> None:
    with pytest.raises(ValueError, match="unknown parcae variant 'nope'"):
        build_lm("parcae", "tiny", variant="nope")
    with pytest.raises(ValueError, match="integer mean_recurrence"):
        build_lm("parcae", "tiny", mean_recurrence=7.5)
    with pytest.raises(ValueError, match="variant='authors'"):
        convert_authors_parcae({}, resolve_lm_config("parcae", "tiny", variant="diagonal"))
    with pytest.raises(ValueError, match="lacks parameters"):
        convert_authors_parcae({}, resolve_lm_config("parcae", "tiny"))


# ---- against the authors' code -------------------------------------------------------------------------------
def _theirs_or_skip():
    if not AUTHORS_ROOT or not Path(AUTHORS_ROOT, "attractor", "models", "parcae", "parcae.py").is_file():
        pytest.skip("set ATTRACTOR_REFERENCE_AUTHORS to a checkout of jacobfa/Attractor")
    from recursive_models.reference import load_authors_lm

    return load_authors_lm(AUTHORS_ROOT)


CASES = {  # our overrides of the tiny authors model
    "tiny (1/2/1)": {},
    "four heads, odd core (2/1/2: unread tables and gates)": {"n_heads": 4, "n_prelude": 2, "n_core": 1, "n_coda": 2},
}


def _pair(case: dict, seed: int = 0):
    """Their model with perturbed weights, and ours loaded from it."""
    from recursive_models.reference import authors_parcae_config

    models = _theirs_or_skip()
    ours = build_lm("parcae", "tiny", vocab_size=V, seq_len=SEQ, **case)
    torch.manual_seed(seed)
    theirs = models.parcae.config.ParcaeConfig(**authors_parcae_config(ours.config)).construct_model()
    with torch.no_grad():  # their init leaves gains at 1, block outputs at 0, A = 1, one Δ and B = I
        for name, p in theirs.named_parameters():
            if name.endswith("norm_1.weight") or name.endswith("norm_2.weight") or "ln_" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith(("c_proj.weight", "mlp.proj.weight")):
                p.normal_(0.0, 0.03)
            elif name.endswith(("A_log", "dt_bias")):
                p.add_(0.3 * torch.randn_like(p))
            elif name.endswith("adapter.B"):
                p.add_(0.05 * torch.randn_like(p))
    load_converted(ours, convert_authors_parcae(theirs.state_dict(), ours.config))
    return theirs, ours


def _batch(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (3, 40), generator=torch.Generator().manual_seed(seed))


def _check_grads(theirs, ours) -> None:
    grads = convert_authors_parcae({k: p.grad for k, p in theirs.named_parameters()}, ours.config)
    for name, p in ours.named_parameters():
        g = grads[name]
        scale = max(float(g.abs().max()), 1e-6)
        assert float((p.grad - g).abs().max()) <= 1e-4 * scale + 1e-7, name


def test_like_init_state_equals_theirs() -> None:
    theirs, ours = _pair({})
    e = torch.randn(3, 40, ours.config.d_model)
    torch.manual_seed(11)
    ref = theirs.initialize_state(e)
    torch.manual_seed(11)
    assert torch.equal(ours.initial_state(e), ref)


@pytest.mark.parametrize("case", sorted(CASES))
def test_eval_logits_at_fixed_depths_equal_theirs(case: str) -> None:
    theirs, ours = _pair(CASES[case])
    theirs.eval()
    ours.eval()
    idx = _batch()
    with torch.no_grad():
        for r in (1, 4, 8):  # (theirs fails at depth 0: UnboundLocalError on xk in iterate_forward)
            torch.manual_seed(100 + r)
            ref = theirs(idx, labels=idx, return_logits=True, num_steps_pair=torch.tensor([r, 0]))
            torch.manual_seed(100 + r)
            out = ours(idx, idx, iters=r)
            torch.testing.assert_close(out["logits"], ref["logits"], atol=1e-4, rtol=1e-4, msg=f"depth {r}")
            torch.testing.assert_close(out["loss"], ref["loss"], atol=1e-5, rtol=1e-5)
        # no iters: our evaluation depth is their evaluation script's num_steps_pair=[mean_recurrence, 0]
        torch.manual_seed(7)
        ref = theirs(idx, return_logits=True, num_steps_pair=torch.tensor([8, 0]))["logits"]
        torch.manual_seed(7)
        torch.testing.assert_close(ours(idx)["logits"], ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("depth", [1, 4, 8])
def test_training_step_at_a_fixed_depth_equals_theirs(case: str, depth: int) -> None:
    theirs, ours = _pair(CASES[case])
    theirs.train()
    ours.train()
    idx = _batch(2)
    tracked = min(depth, ours.config.bptt_steps)
    torch.manual_seed(3)
    ref = theirs(idx, labels=idx, return_logits=True, num_steps_pair=torch.tensor([depth - tracked, tracked]))
    torch.manual_seed(3)
    out = ours(idx, idx, iters=depth)
    torch.testing.assert_close(out["logits"], ref["logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["loss"], ref["loss"], atol=1e-5, rtol=1e-5)
    ref["loss"].backward()
    out["loss"].backward()
    _check_grads(theirs, ours)


def test_training_step_at_their_sampled_depths_equals_theirs() -> None:
    theirs, ours = _pair({})
    theirs.train()
    ours.train()
    idx = torch.randint(0, V, (16, 40), generator=torch.Generator().manual_seed(4))
    theirs.step = 0  # their draw is seeded 514229 + step
    n, k = theirs._sample_batch_depths(16)
    r = ours.sample_depths(16, torch.device("cpu"), torch.Generator().manual_seed(514229))
    assert torch.equal(r, n + k) and torch.equal(k, r.clamp(max=4))  # backprop depth min(r, 4)
    assert len(set(r.tolist())) > 1  # the depths differ across the batch
    ours.sample_depths = lambda b, device, generator=None: r.to(device)  # the same draw on our side
    torch.manual_seed(9)
    ref = theirs(idx, labels=idx, return_logits=True)
    torch.manual_seed(9)
    out = ours(idx, idx)
    assert float(out["solver/nstep"]) == float(r.float().mean())
    torch.testing.assert_close(out["logits"], ref["logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["loss"], ref["loss"], atol=1e-5, rtol=1e-5)
    ref["loss"].backward()
    out["loss"].backward()
    _check_grads(theirs, ours)
