"""Unit tests of recursive_models, driven by the registry: every model and size is covered without editing here.

Run: ``python -m pytest tests/test_models.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_module

from recursive_models import MODELS, build_model, load_checkpoint
from recursive_models.base import ModelConfig
from recursive_models.checkpoint import save_checkpoint
from recursive_models.config import model_overrides, register_configs
from recursive_models.layers import swiglu_width, trunc_normal_
from recursive_models.losses import act_loss, log_stablemax, token_cross_entropy
from recursive_models.registry import resolve_config, sizes_of

register_configs()
SIZE_RANGES = {"7m": (6.3e6, 7.5e6), "27m": (25.5e6, 28.5e6), "tiny": (1e5, 2e6)}
#: (model, variant) pairs: every variant of a model with variants, "" for the others
VARIANTS = [(m, v) for m in sorted(MODELS) for v in (sorted(getattr(MODELS[m], "VARIANTS", {})) or [""])]
ALL = [(m, s, v) for m, v in VARIANTS for s in sizes_of(m)]


def _kw(variant: str) -> dict:
    return {"variant": variant} if variant else {}


def _batch(b: int = 4, seq: int = 36, vocab: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "inputs": torch.randint(1, vocab, (b, seq), generator=g),
        "labels": torch.randint(2, vocab, (b, seq), generator=g),
        "puzzle_identifiers": torch.zeros(b, dtype=torch.long),
    }


@pytest.mark.parametrize(("model", "size", "variant"), ALL)
def test_composed_config_parameter_count(model: str, size: str, variant: str) -> None:
    # Compose through hydra exactly as the CLI does, then build on the meta device (no memory, no init cost).
    extra = [f"model.variant={variant}"] if variant else []
    with initialize_config_module("recursive_models.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", f"size={size}", "task=sudoku-extreme", *extra])
    with torch.device("meta"):
        net = build_model(cfg.model.name, cfg.model.size, cfg.task.name, **model_overrides(cfg.model))
    n = sum(p.numel() for p in net.parameters())
    lo, hi = SIZE_RANGES[size]
    assert lo <= n <= hi, f"{model}-{size}: {n / 1e6:.3f}M parameters outside [{lo / 1e6}, {hi / 1e6}]M"


# Options that change the parameter count besides the widths: the arithmetic must follow each of them.
_COUNT_OPTIONS = [
    {},
    {"mixer": "mlp", "pos_encodings": "none"},
    {"pos_encodings": "learned", "puzzle_emb_len": 4, "puzzle_emb_ndim": 24, "num_puzzle_identifiers": 7},
    {"puzzle_emb_len": 0, "expansion": 2.5, "layers": 3, "norm": "pre"},
]


@pytest.mark.parametrize(("model", "size", "variant"), ALL)
@pytest.mark.parametrize("options", range(len(_COUNT_OPTIONS)))
def test_parameter_count_arithmetic_equals_the_built_model(model: str, size: str, variant: str, options: int) -> None:
    # The leaderboard sizes untrusted configs with parameter_count before building anything: it must be exact.
    for task in ("sudoku6", "maze-hard"):
        config = resolve_config(model, size, task, **_kw(variant), **_COUNT_OPTIONS[options])
        with torch.device("meta"):
            net = MODELS[model](config)
        assert MODELS[model].parameter_count(config) == sum(p.numel() for p in net.parameters())


def test_reference_parameter_counts() -> None:
    # The references count 6.83M (TRM 7M) and 27.28M (HRM 27M) on Sudoku-Extreme; widths must match theirs.
    with torch.device("meta"):
        trm = build_model("trm", "7m")
        hrm = build_model("hrm", "27m")
    assert round(sum(p.numel() for p in trm.parameters()) / 1e4) == 683
    assert round(sum(p.numel() for p in hrm.parameters()) / 1e4) == 2728


@pytest.mark.parametrize(("model", "variant"), VARIANTS)
def test_forward_backward_and_halting(model: str, variant: str) -> None:
    torch.manual_seed(0)
    net = build_model(model, "tiny", task="sudoku6", **_kw(variant))
    net.train()
    batch = _batch()
    carry = net.initial_carry(batch)
    n_sup = net.config.halt_max_steps
    for k in range(n_sup):
        carry, out = net(carry, batch)
        assert out["logits"].shape == (4, 36, 8)
        loss, _sums = act_loss(out, carry.data["labels"], carry.halted)
        assert torch.isfinite(loss)
        net.zero_grad()
        loss.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert all(not s.requires_grad for s in carry.state), "the carry must be detached between steps"
        assert (carry.steps <= k + 1).all()
        if carry.halted.all():
            break
    # Whatever the Q head says, every example halts by N_sup.
    assert carry.halted.all() and (carry.steps <= n_sup).all()


@pytest.mark.parametrize(("model", "variant"), VARIANTS)
def test_eval_runs_all_steps_and_checkpoint_roundtrip(model: str, variant: str, tmp_path) -> None:
    torch.manual_seed(1)
    net = build_model(model, "tiny", task="sudoku6", **_kw(variant)).eval()
    batch = _batch(seed=3)
    with torch.no_grad():
        carry = net.initial_carry(batch)
        outs = []
        for _ in range(net.config.halt_max_steps):
            assert not carry.halted.any() or len(outs) == 0
            carry, out = net(carry, batch)
            outs.append(out["logits"])
        assert carry.halted.all()
    from dataclasses import asdict

    ckpt = save_checkpoint(tmp_path, 7, net.state_dict(), {"model": asdict(net.config), "task": {"name": "sudoku6"}})
    loaded, meta = load_checkpoint(tmp_path)
    assert meta["step"] == 7 and ckpt.name == "step_0000007"
    with torch.no_grad():
        carry = loaded.initial_carry(batch)
        for ref in outs:
            carry, out = loaded(carry, batch)
            torch.testing.assert_close(out["logits"], ref, rtol=0, atol=0)


def test_checkpoint_keeps_latest_and_rejects_mismatch(tmp_path) -> None:
    from dataclasses import asdict

    net = build_model("trm", "tiny", task="sudoku6")
    meta = {"model": asdict(net.config), "task": {"name": "sudoku6"}}
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, net.state_dict(), meta, keep=2)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert kept == ["step_0000002", "step_0000003"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_0000003"
    bad = {"model": {**asdict(net.config), "hidden_size": 32}, "task": {"name": "sudoku6"}}
    save_checkpoint(tmp_path / "bad", 1, net.state_dict(), bad)
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="no such run"):
        load_checkpoint(tmp_path / "missing")


def test_attractor_solver_stats_and_internalization_mode() -> None:
    torch.manual_seed(0)
    net = build_model("attractor", "tiny", task="sudoku6", variant="backbone").eval()
    batch = _batch()
    with torch.no_grad():
        _carry, out = net(net.initial_carry(batch), batch)
        assert (out["solver_nstep"] >= 1).all() and (out["solver_nstep"] <= net.config.solver.max_iter).all()
        assert torch.isfinite(out["solver_residual"]).all()
        # max_iter=0 decodes the backbone's proposal: logits are lm_head(backbone(x)).
        net.config.solver.max_iter = 0
        _, out0 = net(net.initial_carry(batch), batch)
        x = net.encoder(batch["inputs"], batch["puzzle_identifiers"])
        p = net.backbone(x, None, net.encoder.rope())
        torch.testing.assert_close(out0["logits"], net.heads(p)[0])


@pytest.mark.parametrize("backward", ["onestep", "phantom", "ift"])
def test_attractor_backward_modes_reach_backbone(backward: str) -> None:
    torch.manual_seed(0)
    net = build_model(
        "attractor", "tiny", task="sudoku6", variant="backbone", solver={"backward": backward, "max_iter": 4}
    )
    net.train()
    batch = _batch()
    carry, out = net(net.initial_carry(batch), batch)
    loss, _ = act_loss(out, carry.data["labels"], carry.halted)
    loss.backward()
    g = net.backbone.blocks[0].mlp.down.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_stablemax_loss_matches_definition() -> None:
    x = torch.tensor([[2.0, -1.0, 0.0]], dtype=torch.float64)
    s = torch.tensor([3.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(log_stablemax(x)[0], torch.log(s / s.sum()))
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[0, 0] = -100
    ce = token_cross_entropy(logits, labels, "softmax")
    ref = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(2, 5)
    torch.testing.assert_close(ce, ref)
    assert token_cross_entropy(logits, labels, "stablemax")[0, 0] == 0
    with pytest.raises(ValueError, match="loss_type"):
        token_cross_entropy(logits, labels, "hinge")


def test_act_loss_metrics_count_only_halted() -> None:
    labels = torch.tensor([[2, 3], [2, 3], [2, 3]])
    logits = torch.full((3, 2, 4), -5.0)
    logits[0, 0, 2] = logits[0, 1, 3] = 5  # example 0 right
    logits[1, 0, 2] = 5  # example 1 half right
    out = {"logits": logits, "q_halt_logits": torch.tensor([1.0, -1.0, 0.5]), "q_continue_logits": torch.zeros(3)}
    loss, sums = act_loss(out, labels, torch.tensor([True, True, False]))
    assert sums["count"] == 2 and sums["exact_accuracy"] == 1 and math.isclose(float(sums["accuracy"]), 1.5)
    assert sums["q_halt_accuracy"] == 2  # halt predicted for the right one, continue for the wrong one
    assert torch.isfinite(loss)


def test_resolve_config_errors_and_task_arch() -> None:
    with pytest.raises(ValueError, match="registered models"):
        resolve_config("gpt", "7m")
    with pytest.raises(ValueError, match=r"has no size .3m.; its sizes are .*7m"):
        resolve_config("hrm", "3m")
    with pytest.raises(ValueError, match="unknown model option"):
        resolve_config("trm", "7m", hiden_size=3)
    with pytest.raises(ValueError, match="unknown task"):
        resolve_config("trm", "7m", task="chess")
    assert resolve_config("trm", "7m", task="sudoku-extreme").l_cycles == 6
    assert resolve_config("trm", "7m", task="maze-hard").l_cycles == 4
    c = resolve_config("attractor", "27m", solver={"max_iter": 3})
    assert c.solver.max_iter == 3 and c.solver.method == "anderson"
    with pytest.raises(ValueError, match="unknown solver config"):
        ModelConfig.from_dict({"solver": {"maxiter": 3}})


def test_layers_init_and_widths() -> None:
    assert swiglu_width(512, 4) == 1536
    t = trunc_normal_(torch.empty(200_000), std=0.5)
    assert abs(t.std().item() - 0.5) < 0.01 and t.abs().max() <= 1.14  # cut at 2 std of the underlying normal
