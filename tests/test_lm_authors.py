"""The Attractor LM's ``authors`` variant against the authors' own code, and the parts it is built from.

Run: ``python -m pytest tests/test_lm_authors.py -q``. The fidelity tests need a checkout of the public
repository jacobfa/Attractor, named by an environment variable, and skip without it::

    git clone https://github.com/jacobfa/Attractor /tmp/refs/Attractor
    ATTRACTOR_REFERENCE_AUTHORS=/tmp/refs/Attractor python -m pytest tests/test_lm_authors.py -q

They build the authors' ``Attractor`` LM (``attractor/models/attractor/attractor.py``) with their code and their
initialisation, perturb the weights their init leaves at 0 or 1 (norm gains, output projections, gates), copy
them into our model (`recursive_models.lm.authors.convert_authors_attractor`) and check on CPU, fp32, that the
proposal, every solver iterate, the fixed point, the logits, the loss and every parameter gradient agree within
1e-4. Verified against jacobfa/Attractor fcf045f.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from recursive_models.lm.authors import authors_anderson, authors_solve, convert_authors_attractor, load_converted
from recursive_models.lm.layers import solve_sequence
from recursive_models.lm.registry import LMSolverConfig, build_lm

AUTHORS_ROOT = os.environ.get("ATTRACTOR_REFERENCE_AUTHORS")
V, SEQ = 256, 64


# ---- no reference needed --------------------------------------------------------------------------------------
def test_authors_is_the_default_and_projected_keeps_the_first_version() -> None:
    authors = build_lm("attractor", "tiny")
    c = authors.config
    assert (c.variant, c.solver.backward, c.solver.neumann_terms) == ("authors", "neumann", 1)
    assert (c.solver.method, c.solver.mixing) == ("anderson", "token")  # exactly causal; theirs is an option
    assert (c.n_prelude, c.n_core, c.gamma_max, c.layer_scale_init, c.logit_softcap) == (3, 1, 0.75, 0.75, None)
    assert not hasattr(authors, "project")
    gate = torch.sigmoid(authors.attractor[0].gate_attn) * c.gamma_max
    torch.testing.assert_close(gate, torch.full_like(gate, 0.75 * (1 - 1e-6)))
    # scaled-zero: the backbone blocks start as the identity, the Attractor module does not
    assert float(authors.backbone[0].attn.proj.weight.detach().abs().max()) == 0.0
    assert float(authors.attractor[0].attn.proj.weight.detach().abs().max()) > 0.0
    projected = build_lm("attractor", "small", variant="projected")
    assert (projected.config.n_prelude, projected.config.n_core) == (6, 2)  # a quarter, as before
    assert projected.config.solver.method == "anderson" and hasattr(projected, "project")
    assert (build_lm("attractor", "small").config.n_core, build_lm("attractor", "base").config.n_core) == (1, 2)
    with pytest.raises(ValueError, match="variant"):
        build_lm("attractor", "tiny", variant="nope")
    # the ablation options apply to the authors' map too: concat starts as their additive injection
    concat = build_lm("attractor", "tiny", injection="concat")
    y, c0 = torch.randn(2, 2, 8, concat.config.d_model)
    torch.testing.assert_close(concat.attract(y, c0), concat.attractor(y + c0, concat.rope()) - y)
    with pytest.raises(ValueError, match="variant=authors"):
        build_lm("attractor", "tiny", variant="projected", solver={"method": "authors"})
    with pytest.raises(ValueError, match="no variants"):
        build_lm("gpt", "tiny", variant="authors")


def test_authors_anderson_finds_the_fixed_point_and_falls_back_to_plain_steps() -> None:
    torch.manual_seed(0)
    a = 0.5 * torch.randn(6, 6) / 6**0.5
    b = torch.randn(3, 6)

    def f(z):
        return torch.tanh(z @ a.T + b)

    z, info = authors_anderson(f, torch.zeros(3, 6), max_iter=50, tol=1e-6, min_iter=3)
    assert info["converged"] and float((f(z) - z).abs().max()) < 1e-5
    z2, info2 = authors_solve(f, torch.zeros(3, 6), max_iter=2, tol=0.0)  # their fpi below 3 iterations
    assert info2["iters"] == 2 and not info2["converged"]
    torch.testing.assert_close(z2, f(f(torch.zeros(3, 6))))


def test_authors_solve_keeps_their_value_and_takes_the_neumann_gradient() -> None:
    model = build_lm("attractor", "tiny", vocab_size=V, seq_len=SEQ, solver={"method": "authors"})
    idx = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(0))
    c = model.proposal(idx)
    y, _ = model.solve(c, 8)
    with torch.no_grad():
        y_free, _ = authors_solve(lambda y: model.attract(y, c), c, max_iter=8, tol=3e-4, min_iter=6)
    assert torch.equal(y.detach(), y_free)  # their forward value, bit for bit
    y.square().sum().backward()
    assert all(p.grad is not None for p in model.attractor.parameters())
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_token_mixing_never_freezes_a_position_before_its_prefix() -> None:
    """Position 1 copies 10·relu(position 0 − 1.9): its residual is 0 until position 0 passes 1.9 (step 5)."""

    def f(z):  # (B, 2, D) causal: position t reads positions <= t
        return torch.stack([0.5 * z[:, 0] + 1.0, 10.0 * torch.relu(z[:, 0] - 1.9)], dim=1)

    cfg = LMSolverConfig(method="picard", max_iter=200, min_iter=2, tol=1e-6, stop_mode="abs", mixing="token")
    z, stats, _ = solve_sequence(f, torch.zeros(3, 2, 4), cfg, max_iter=200)
    torch.testing.assert_close(z, torch.tensor([2.0, 1.0])[None, :, None].expand(3, 2, 4), atol=1e-4, rtol=0)
    assert float(stats["solver/converged_frac"]) == 1.0


# ---- against the authors' code -------------------------------------------------------------------------------
def _theirs_or_skip():
    if not AUTHORS_ROOT or not Path(AUTHORS_ROOT, "attractor", "models", "attractor", "attractor.py").is_file():
        pytest.skip("set ATTRACTOR_REFERENCE_AUTHORS to a checkout of jacobfa/Attractor")
    from recursive_models.reference import load_authors_lm

    return load_authors_lm(AUTHORS_ROOT)


CASES = {  # our overrides of the tiny authors model
    "default (max 24, min 6)": {},
    "converges early": {"solver": {"tol": 3e-2, "min_iter": 3}},
    "two heads, two Attractor blocks": {"n_heads": 4, "n_core": 2, "n_prelude": 2},
    "plain iteration (max_iter 2)": {"solver": {"max_iter": 2, "min_iter": 0}},
}


def _pair(case: dict, seed: int = 0):
    """Their model with perturbed weights, and ours loaded from it."""
    from recursive_models.reference import authors_lm_config

    models = _theirs_or_skip()
    solver = {"method": "authors", **case.get("solver", {})}
    ours = build_lm("attractor", "tiny", vocab_size=V, seq_len=SEQ, **{**case, "solver": solver})
    torch.manual_seed(seed)
    theirs = models.attractor.config.AttractorConfig(**authors_lm_config(ours.config)).construct_model()
    with torch.no_grad():  # their init leaves gains at 1, backbone outputs at 0 and all gates equal
        for name, p in theirs.named_parameters():
            if name.endswith("norm_1.weight") or name.endswith("norm_2.weight") or "ln_f" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith(("c_proj.weight", "mlp.proj.weight")) and "prelude" in name:
                p.normal_(0.0, 0.03)
            elif "raw_gamma" in name:
                p.normal_(-1.0, 0.5)
    load_converted(ours, convert_authors_attractor(theirs.state_dict(), ours.config))
    return theirs, ours


def _batch(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (3, 40), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_attractor_lm_equals_theirs(case: str, train: bool) -> None:
    theirs, ours = _pair(CASES[case])
    theirs.train(train)
    ours.train(train)
    idx = _batch()
    ref = theirs(idx, labels=idx)
    ref_logits = theirs(idx, return_logits=True)["logits"]
    out = ours(idx, idx)
    info = theirs._last_solver_info
    assert int(out["solver/nstep"]) == info["iters"]
    torch.testing.assert_close(out["logits"], ref_logits.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["loss"], ref["loss"], atol=1e-5, rtol=1e-5)
    # gradients: their one-step (u = v + Jᵀv) against our neumann backward, mapped to our parameters
    ref["loss"].backward()
    out["loss"].backward()
    grads = convert_authors_attractor({k: p.grad for k, p in theirs.named_parameters()}, ours.config)
    for name, p in ours.named_parameters():
        g = grads[name]
        scale = max(float(g.abs().max()), 1e-6)
        assert float((p.grad - g).abs().max()) <= 1e-4 * scale + 1e-7, name


def test_every_solver_iterate_equals_theirs() -> None:
    theirs, ours = _pair({"solver": {"tol": 0.0, "min_iter": 0}})  # tol 0: every budget runs to its end
    theirs.eval()
    ours.eval()
    idx = _batch(2)
    freqs = theirs.freqs_cis[:, : idx.shape[1]]
    with torch.no_grad():
        c_ref = theirs._encode(idx, freqs, None)
        c = ours.proposal(idx)
        torch.testing.assert_close(c, c_ref, atol=1e-4, rtol=1e-4)
        for k in range(1, 13):  # 1-2: their plain iteration; 3+: Anderson, the ring wrapping at 5
            y_ref = theirs._refine(c_ref, freqs, None, max_iter_override=k)[0]
            y, stats = ours.solve(c, k)
            assert int(stats["solver/nstep"]) == k
            torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4, msg=f"iterate {k}")


def test_test_time_iterations_match_theirs() -> None:
    theirs, ours = _pair({})
    theirs.eval()
    ours.eval()
    idx = _batch(3)
    for k in (1, 4, 8, 24):
        ref = theirs(idx, return_logits=True, num_steps_pair=torch.tensor([k, 0]))["logits"]
        torch.testing.assert_close(ours(idx, iters=k)["logits"], ref.float(), atol=1e-4, rtol=1e-4)
