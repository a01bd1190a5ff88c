"""The Attractor's three variants: what each solves, and the ``authors`` variant against the authors' own code.

Run: ``python -m pytest tests/test_attractor_variants.py -q``. The fidelity tests need a checkout of the public
repository jacobfa/Attractor, named by an environment variable, and skip without it::

    git clone https://github.com/jacobfa/Attractor /tmp/refs/Attractor
    ATTRACTOR_REFERENCE_AUTHORS=/tmp/refs/Attractor python -m pytest tests/test_attractor_variants.py -q

They build the authors' ``TRMDEQ`` (``experiments/attractor_puzzles/trm/trm_deq.py``) with its own code and
initialisation, copy its weights into our ``variant=authors`` model, and check that logits, Q logits, halting,
loss (their ``ACTLossHeadDEQ``, Jacobian term included) and every gradient agree within 1e-4 over several
supervision steps, in evaluation and in training (CPU, fp32; their code needs ``pydantic`` and ``einops``).
Verified against jacobfa/Attractor fcf045f.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_convert import B, _batches  # the same random 6x6 boards (tests/ is on sys.path under pytest)

from recursive_models import build_model
from recursive_models.convert import key_map
from recursive_models.losses import act_loss

AUTHORS_ROOT = os.environ.get("ATTRACTOR_REFERENCE_AUTHORS")


# ---- no reference needed --------------------------------------------------------------------------------------
def test_variants_and_their_sizes() -> None:
    # paper: TRM's networks, no backbone; authors: the same network, TRM's rounds; backbone: the old model.
    with torch.device("meta"):  # shapes only
        trm = {s: build_model("trm", s, task="sudoku-extreme") for s in ("7m", "27m")}
        models = {
            (s, v): build_model("attractor", s, task="sudoku-extreme", variant=v)
            for s in ("7m", "27m")
            for v in ("paper", "authors", "backbone")
        }
    for size in ("7m", "27m"):
        paper, authors = models[size, "paper"], models[size, "authors"]
        assert paper.config.variant == "paper" and not hasattr(paper, "backbone")
        assert paper.config.layers == authors.config.layers == trm[size].config.layers
        n_trm = sum(p.numel() for p in trm[size].parameters())
        assert sum(p.numel() for p in authors.parameters()) == n_trm  # fixed random initial states, as TRM
        assert sum(p.numel() for p in paper.parameters()) == n_trm + 2 * 512  # the learned step-zero (y, z)
    assert models["27m", "authors"].config.solver.method == "authors"
    assert models["27m", "backbone"].config.backbone_layers == 6
    with pytest.raises(ValueError, match="no variant 'nope'"):
        build_model("attractor", "tiny", task="sudoku6", variant="nope")
    with pytest.raises(ValueError, match="has no variants"):
        build_model("trm", "tiny", task="sudoku6", variant="paper")
    with pytest.raises(ValueError, match="variant=authors"):
        build_model("attractor", "tiny", task="sudoku6", solver={"jacobian_reg": 0.1})


PAPER_FIXTURE = Path(__file__).parent / "data" / "checkpoints" / "attractor-paper-tiny-sudoku6"
LEGACY_FIXTURE = Path(__file__).parent / "data" / "checkpoints" / "attractor-tiny-sudoku6"


def test_paper_fixed_point_satisfies_both_equations_of_the_round() -> None:
    # A trained paper model (a random post-norm net is no contraction), solved to 1e-4 at test time: where the
    # solver says it converged, the returned (y*, z*) satisfies z = net(z, y + x) and y = net(y, z) to that
    # tolerance (each part within 2x the joint criterion).
    from recursive_models import load_checkpoint

    tol = 1e-4
    model, _ = load_checkpoint(PAPER_FIXTURE, solver={"max_iter": 40, "tol": tol})
    assert model.config.variant == "paper"
    g = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randint(1, 8, (16, 36), generator=g), "labels": torch.randint(2, 8, (16, 36), generator=g),
             "puzzle_identifiers": torch.zeros(16, dtype=torch.long)}  # fmt: skip
    carry = model.initial_carry(batch)
    with torch.no_grad():
        x = model.encoder(batch["inputs"], batch["puzzle_identifiers"])
        rope = model.encoder.rope()
        for step in range(2):
            carry, out = model(carry, batch)
            y, z = carry.state
            z_next = model.net(z, y + x, rope)  # z = net(z, y + x)
            y_next = model.net(y, z_next, rope)  # y = net(y, z)
            ok = out["solver_hit_max"] == 0
            assert ok.float().mean() >= 0.75, (step, out["solver_residual"])  # random boards, not puzzles
            for new, old in ((z_next, z), (y_next, y)):
                rel = (new - old).flatten(1).norm(dim=1) / new.flatten(1).norm(dim=1)
                assert (rel[ok] <= 2 * tol).all(), (step, rel)


def test_checkpoints_from_before_variants_load_as_backbone() -> None:
    from recursive_models import load_checkpoint

    model, meta = load_checkpoint(LEGACY_FIXTURE)
    assert "variant" not in meta["model"] and model.variant == "backbone" and hasattr(model, "backbone")


def test_paper_step_zero_embedding_gets_no_gradient() -> None:
    # The README's claim: the fixed point does not depend on the solver's start, so no backward mode reaches it.
    torch.manual_seed(0)
    model = build_model("attractor", "tiny", task="sudoku6", num_puzzle_identifiers=3)
    batch = _batches(1)[0]
    carry, out = model(model.initial_carry(batch), batch)
    act_loss(out, carry.data["labels"], carry.halted)[0].backward()
    assert model.y_init.grad is None and model.z_init.grad is None
    assert model.net.blocks[0].mlp.gate_up.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["paper", "authors", "backbone"])
def test_every_variant_trains_and_reports_its_solves(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model("attractor", "tiny", task="sudoku6", variant=variant, num_puzzle_identifiers=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = _batches(3)
    carry = model.initial_carry(batches[0])
    for batch in batches:
        carry, out = model(carry, batch)
        loss, _ = act_loss(out, carry.data["labels"], carry.halted)
        loss.backward()
        opt.step()
        opt.zero_grad()
        for k in ("solver_nstep", "solver_residual", "solver_hit_max"):
            assert out[k].shape == (B,)
        assert ((out["solver_hit_max"] == 0) | (out["solver_nstep"] >= model.config.solver.min_iter)).all()
        assert torch.isfinite(loss)


def test_authors_anderson_hits_max_iter_and_says_so() -> None:
    from recursive_models.models.attractor import authors_anderson

    w = torch.randn(16, 16) * 0.9 / 4
    f = lambda z: torch.tanh(z @ w.T + 1.0)  # noqa: E731 -- a contraction
    z, info = authors_anderson(f, torch.zeros(3, 16), max_iter=40, min_iter=4, tol=1e-6, m=5, beta=1.0)
    assert info["solver_hit_max"].sum() == 0 and (f(z) - z).norm() < 1e-4
    _, info = authors_anderson(f, torch.zeros(3, 16), max_iter=3, min_iter=0, tol=1e-12, m=5, beta=1.0)
    assert (info["solver_hit_max"] == 1).all() and (info["solver_nstep"] == 3).all()


# ---- against the authors' code -------------------------------------------------------------------------------
def _authors_or_skip():
    if not AUTHORS_ROOT or not Path(AUTHORS_ROOT, "experiments", "attractor_puzzles", "trm", "trm_deq.py").is_file():
        pytest.skip("set ATTRACTOR_REFERENCE_AUTHORS to a checkout of jacobfa/Attractor")
    pytest.importorskip("pydantic", reason="their configs need pydantic")
    from recursive_models.reference import load_authors

    return load_authors(AUTHORS_ROOT)


AUTHORS_CASES = {  # our overrides of the tiny authors variant
    "default": {},  # their Anderson, max 6 / min 4, K = 2 unrolled steps
    "converges early, K=1": {"solver": {"tol": 0.3, "phantom_steps": 1, "max_iter": 8}},
    "jacobian regulariser": {"solver": {"jacobian_reg": 0.5}},  # their code fails for n_samples > 1
    "mlp mixer, their 7m solver": {"mixer": "mlp", "pos_encodings": "none", "solver": {"max_iter": 8}},
}


@pytest.mark.parametrize("case", sorted(AUTHORS_CASES))
def test_authors_variant_equals_their_trmdeq(case: str) -> None:
    from recursive_models.reference import authors_model_config

    ref = _authors_or_skip()
    ours = build_model(
        "attractor", "tiny", task="sudoku6", variant="authors", num_puzzle_identifiers=3, **AUTHORS_CASES[case]
    )
    torch.manual_seed(0)
    theirs = ref.model_cls(authors_model_config(ours.config, batch_size=B))  # their init
    with torch.no_grad():  # their Q head starts at (0, -5) and the puzzle embedding at 0: make them informative
        theirs.inner.q_head.weight.normal_(0, 0.3)
        theirs.inner.q_head.bias.normal_()
        theirs.inner.puzzle_emb.weights.normal_()
    names = key_map("trm", ours.config)
    their_state = theirs.inner.state_dict()
    ours.load_state_dict({o: their_state[r].float() for r, o in names.items()}, strict=True)
    head = ref.loss_head_cls(
        theirs, loss_type="stablemax_cross_entropy", jacobian_reg_lambda=ours.config.solver.jacobian_reg
    )
    keys = ("logits", "q_halt_logits", "q_continue_logits")

    def diff(a, b, ks=keys):
        return max((a[k].float() - b[k].float()).abs().max().item() for k in ks)

    batch = _batches(1)[0]
    theirs.eval()
    ours.eval()
    rc, oc = theirs.initial_carry(batch), ours.initial_carry(batch)
    for _ in range(ours.config.halt_max_steps):
        with torch.no_grad():
            rc, r = theirs(rc, batch)
            oc, o = ours(oc, batch)
        assert diff(r, o) <= 1e-4
        assert torch.equal(rc.halted, oc.halted) and torch.equal(rc.steps, oc.steps)
        assert int(o["solver_nstep"][0]) == theirs.inner.inner_deq._last_info["iters"]

    theirs.train()
    ours.train()
    batches = _batches(6, seed=2)
    rc, oc = head.initial_carry(batches[0]), ours.initial_carry(batches[0])
    for k, batch in enumerate(batches):
        theirs.zero_grad(set_to_none=True)
        theirs.inner.puzzle_emb.local_weights.grad = None  # a buffer their sparse optimiser clears
        ours.zero_grad(set_to_none=True)
        torch.manual_seed(100 + k)
        rc, r_loss, metrics, r, _ = head(carry=rc, batch=batch, return_keys=list(keys))
        ((1 / B) * r_loss).backward()
        torch.manual_seed(100 + k)
        oc, o = ours(oc, batch)
        o_loss, _ = act_loss(o, oc.data["labels"], oc.halted)
        o_loss.backward()
        assert diff(r, o) <= 1e-4, k
        assert torch.equal(rc.halted, oc.halted) and torch.equal(rc.steps, oc.steps), k
        assert abs(r_loss.item() / B - o_loss.item()) <= 1e-5, k
        if ours.config.solver.jacobian_reg:
            assert abs(metrics["jacobian_reg"].item() - o["jacobian_reg"].item()) <= 1e-5
        mine = dict(ours.named_parameters())
        params = dict(theirs.inner.named_parameters())
        for r_name, o_name in names.items():
            if r_name == "puzzle_emb.weights":  # their sparse embedding's gradient sits on the batch's rows
                pe = theirs.inner.puzzle_emb
                g = torch.zeros_like(pe.weights).index_add_(0, pe.local_ids.long(), pe.local_weights.grad)
            elif r_name in params:
                g = params[r_name].grad
            else:  # buffers (initial states)
                assert mine.get(o_name) is None
                continue
            assert (g - mine[o_name].grad).abs().max().item() <= 1e-4, (k, r_name)


def _authors_payload(model, ema: bool) -> dict:
    """An authors' train_trm_deq.py checkpoint of ``model`` (their names: TRMDEQ.state_dict() under ``inner.``)."""
    from recursive_models.convert import to_reference_state_dict
    from recursive_models.reference import authors_model_config

    state = to_reference_state_dict(model, prefix="inner.")
    shadow = {k: v + 1.0 for k, v in state.items() if not k.endswith("_init")} if ema else None
    return {
        "step": 7,
        "model_state": state,
        "ema_state": shadow,
        "metrics": {},
        "model_config": authors_model_config(model.config, batch_size=B),
        "train_config": {"lr": 1e-4},
    }


@pytest.mark.parametrize("ema", [False, True])
def test_convert_from_authors_checkpoint(ema: bool, tmp_path: Path) -> None:
    from recursive_models import load_checkpoint
    from recursive_models.convert import main

    torch.manual_seed(0)
    model = build_model(
        "attractor",
        "tiny",
        task="sudoku6",
        variant="authors",
        num_puzzle_identifiers=3,
        solver={"phantom_steps": 3, "max_iter": 7},
    )
    torch.save(_authors_payload(model, ema), tmp_path / "step-00000007.pt")
    assert (
        main(["--from", "authors", str(tmp_path / "step-00000007.pt"), str(tmp_path / "out"), "--task", "sudoku6"]) == 0
    )
    ours, meta = load_checkpoint(tmp_path / "out")
    assert ours.config.variant == "authors" and ours.config.solver.method == "authors"
    assert (ours.config.solver.phantom_steps, ours.config.solver.max_iter) == (3, 7)
    assert meta["step"] == 7 and meta["weights"] == ("reference (EMA)" if ema else "reference")
    for k, v in model.state_dict().items():
        want = v + 1.0 if ema and not k.endswith("_init") else v
        assert torch.equal(ours.state_dict()[k], want), k


def test_convert_from_authors_bad_checkpoint(tmp_path: Path, capsys) -> None:
    from recursive_models.convert import main

    torch.save({"model_state": {}}, tmp_path / "a.pt")
    assert main(["--from", "authors", str(tmp_path / "a.pt"), str(tmp_path / "o")]) == 2
    assert "no 'model_config'" in capsys.readouterr().err
    model = build_model("attractor", "tiny", task="sudoku6", variant="authors", num_puzzle_identifiers=3)
    payload = _authors_payload(model, ema=False)
    payload["model_config"]["deq_inner"] = False
    torch.save(payload, tmp_path / "b.pt")
    assert main(["--from", "authors", str(tmp_path / "b.pt"), str(tmp_path / "o")]) == 2
    assert "--from trm" in capsys.readouterr().err


def test_convert_their_trmdeq_checkpoint_gives_their_outputs(tmp_path: Path) -> None:
    from recursive_models import load_checkpoint
    from recursive_models.convert import main
    from recursive_models.reference import authors_model_config

    ref = _authors_or_skip()
    config = build_model("attractor", "tiny", task="sudoku6", variant="authors", num_puzzle_identifiers=3).config
    torch.manual_seed(0)
    cfg = authors_model_config(config, batch_size=B)
    theirs = ref.model_cls(cfg)
    with torch.no_grad():
        theirs.inner.q_head.weight.normal_(0, 0.3)
        theirs.inner.puzzle_emb.weights.normal_()
    # as their train_trm_deq.py saves it (its EMA helper keeps the parameters that require grad)
    payload = {
        "step": 5,
        "model_state": theirs.state_dict(),
        "model_config": cfg,
        "train_config": {},
        "metrics": {},
        "ema_state": {n: p.detach().clone() for n, p in theirs.named_parameters() if p.requires_grad},
    }
    torch.save(payload, tmp_path / "step-00000005.pt")
    assert (
        main(["--from", "authors", str(tmp_path / "step-00000005.pt"), str(tmp_path / "out"), "--task", "sudoku6"]) == 0
    )
    ours, _ = load_checkpoint(tmp_path / "out")
    theirs.eval()
    batch = _batches(1)[0]
    rc, oc = theirs.initial_carry(batch), ours.initial_carry(batch)
    with torch.no_grad():
        for _ in range(3):
            rc, r = theirs(rc, batch)
            oc, o = ours(oc, batch)
            assert (r["logits"] - o["logits"]).abs().max() <= 1e-4
