"""Tests of the LM recipe's optimiser groups and schedules (`recursive_models.lm.optim`).

Every registered family is split into groups with no parameter missing or repeated; the embedding, Muon and
fixed-point-head groups get the settings of their role; the trapezoid schedule has the authors' shape; the cosine
schedule is the suite's earlier one, value for value; bad fields fail with one line before any work.
"""

from __future__ import annotations

import copy
import itertools
import math
import subprocess
import sys
from dataclasses import dataclass, replace

import pytest
import torch
from hydra import compose, initialize_config_module

from recursive_models.lm.config import LMTrainerSection, register_lm_configs
from recursive_models.lm.optim import (
    MultiOptimizer,
    apply_schedule,
    build_optimizer,
    check_recipe,
    cosine_lr,
    lr_at,
    param_groups,
    parameter_roles,
    trapezoid_lr,
)
from recursive_models.lm.registry import LM_MODELS, build_lm

register_lm_configs()
DEFAULT = LMTrainerSection()


def _trainer(*overrides: str):
    """The composed ``trainer`` section of the shipped config (size tiny) with ``overrides``."""
    with initialize_config_module("recursive_models.lm.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides)).trainer


def _old_lr_at(step: int, t) -> float:
    """The suite's warmup + cosine schedule as it was before this module (frozen here as the reference)."""
    if step < t.lr_warmup_steps:
        return t.lr * (step + 1) / t.lr_warmup_steps
    frac = (step - t.lr_warmup_steps) / max(1, t.steps - t.lr_warmup_steps)
    return t.lr * (t.lr_min_ratio + (1 - t.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


@pytest.mark.parametrize("optimizer", ["muon_adamw", "adamw"])
@pytest.mark.parametrize("family", sorted(LM_MODELS))
def test_every_parameter_in_exactly_one_group(family: str, optimizer: str) -> None:
    model = build_lm(family, "tiny")
    t = replace(DEFAULT, optimizer=optimizer)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    for groups in (param_groups(model, t), build_optimizer(model, t).param_groups):
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids)), "a parameter is in two groups"
        assert set(ids) == trainable, "a parameter is in no group"
    opt = build_optimizer(model, t)
    muon = [o for o in opt.optimizers if isinstance(o, torch.optim.Muon)]
    assert len(muon) == (optimizer == "muon_adamw")
    if muon:  # exactly the 2-D hidden matrices are on Muon
        on_muon = {id(p) for g in muon[0].param_groups for p in g["params"]}
        roles = parameter_roles(model)
        assert on_muon == {id(p) for n, p in model.named_parameters() if roles[n] == "matrix"}
        assert on_muon and all(p.ndim == 2 for g in muon[0].param_groups for p in g["params"])


@pytest.mark.parametrize("family", sorted(LM_MODELS))
def test_embedding_has_no_weight_decay(family: str) -> None:
    model = build_lm(family, "tiny")
    for optimizer in ("muon_adamw", "adamw"):
        opt = build_optimizer(model, replace(DEFAULT, optimizer=optimizer))
        (group,) = [g for g in opt.param_groups if any(p is model.wte.weight for p in g["params"])]
        assert group["weight_decay"] == 0.0 and group["kind"] == "adamw"
        apply_schedule(opt, 0, DEFAULT)
        assert group["lr"] == DEFAULT.lr
    # the earlier recipe decayed it like every matrix
    opt = build_optimizer(model, _trainer("optim=adamw_cosine"))
    (group,) = [g for g in opt.param_groups if any(p is model.wte.weight for p in g["params"])]
    assert group["weight_decay"] == 0.1


@pytest.mark.parametrize("optimizer", ["muon_adamw", "adamw"])
def test_fixed_point_head_group(optimizer: str) -> None:
    model = build_lm("attractor", "tiny")
    t = replace(DEFAULT, optimizer=optimizer, lr=2e-3, fp_lr_scale=0.25, fp_wd=0.05)
    opt = build_optimizer(model, t)
    apply_schedule(opt, 0, t)
    head = {id(p): n for n, p in model.named_parameters() if n.startswith("attractor.")}
    assert head and any(model.get_parameter(n).ndim == 2 for n in head.values())
    seen = set()
    for g in opt.param_groups:
        inside = [p for p in g["params"] if id(p) in head]
        if not inside:
            continue
        assert len(inside) == len(g["params"]), "a fixed-point group holds other parameters"
        assert g["kind"] == "adamw" and g["lr"] == pytest.approx(2e-3 * 0.25, rel=1e-12)
        for p in inside:
            assert g["weight_decay"] == (0.05 if p.ndim >= 2 else 0.0)
            seen.add(id(p))
    assert seen == set(head)
    # the backbone's matrices are not in the head's groups and keep the base lr (or Muon's)
    backbone = model.backbone[0].attn.qkv.weight
    (proj,) = [g for g in opt.param_groups if any(p is backbone for p in g["params"])]
    assert proj["lr"] == pytest.approx(t.muon_lr if optimizer == "muon_adamw" else t.lr, rel=1e-12)


def test_muon_group_settings_follow_the_schedule() -> None:
    model = build_lm("gpt", "tiny")
    t = replace(DEFAULT, steps=600, muon_lr=0.02, muon_momentum_warmup_steps=300)
    opt = build_optimizer(model, t)
    (muon,) = [o for o in opt.optimizers if isinstance(o, torch.optim.Muon)]
    g = muon.param_groups[0]
    assert g["nesterov"] and g["ns_steps"] == 5 and g["adjust_lr_fn"] == "original"
    apply_schedule(opt, 0, t)
    assert (g["lr"], g["momentum"], g["weight_decay"]) == pytest.approx((0.02, 0.85, 0.2))
    apply_schedule(opt, 150, t)
    assert (g["lr"], g["momentum"], g["weight_decay"]) == pytest.approx((0.02, 0.90, 0.15))
    apply_schedule(opt, 450, t)  # mid-cooldown: half the lr; momentum warmed up
    assert (g["lr"], g["momentum"], g["weight_decay"]) == pytest.approx((0.01, 0.95, 0.05))


def test_trapezoid_schedule() -> None:
    t = replace(DEFAULT, lr=1.0, steps=100, warmup_frac=0.0, cooldown_frac=0.5)
    assert trapezoid_lr(0, t) == 1.0  # no warmup
    assert trapezoid_lr(50, t) == 1.0  # the last step at the peak: cooldown starts after steps - cooldown
    assert trapezoid_lr(51, t) == pytest.approx(49 / 50)
    assert trapezoid_lr(75, t) == pytest.approx(0.5)  # mid-cooldown
    assert trapezoid_lr(99, t) == pytest.approx(1 / 50)  # the last step; 0 would be step 100
    lrs = [trapezoid_lr(s, t) for s in range(100)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    warm = replace(t, warmup_frac=0.1)
    assert trapezoid_lr(0, warm) == pytest.approx(0.1) and trapezoid_lr(9, warm) == 1.0
    assert trapezoid_lr(60, warm) == pytest.approx(0.8)
    assert [trapezoid_lr(s, replace(t, cooldown_frac=0.0)) for s in range(100)] == [1.0] * 100
    assert lr_at(75, t) == trapezoid_lr(75, t) and lr_at(75, replace(t, schedule="cosine")) == cosine_lr(75, t)


def test_cosine_schedule_is_the_earlier_one() -> None:
    t = _trainer("optim=adamw_cosine", "trainer.steps=600")
    assert t.schedule == "cosine" and t.optimizer == "adamw"
    model = build_lm("attractor", "tiny")
    opt = build_optimizer(model, t)
    for step in range(t.steps + 1):
        ref = _old_lr_at(step, t)
        assert lr_at(step, t) == ref  # exactly, not approximately
        apply_schedule(opt, step, t)
        assert all(g["lr"] == ref for g in opt.param_groups)  # the earlier recipe: one lr for every parameter
    assert lr_at(0, t) == pytest.approx(3e-3 / 50) and lr_at(600, t) == pytest.approx(3e-4)


def test_model_hook_decides_the_roles() -> None:
    model = build_lm("gpt", "tiny")
    roles = {n: ("fp_matrix" if n.startswith("blocks.0.") else r) for n, r in parameter_roles(model).items()}
    model.optimizer_groups = lambda: roles  # what a family overriding the default would return
    assert parameter_roles(model) == roles
    groups = param_groups(model, DEFAULT)
    (fp,) = [g for g in groups if "fp_matrix" in g["roles"]]
    assert {n for n in fp["names"]} == {n for n in roles if n.startswith("blocks.0.")}
    assert fp["lr_scale"] == DEFAULT.fp_lr_scale and fp["weight_decay"] == DEFAULT.fp_wd

    bad = dict(roles)
    bad.pop("wte.weight")
    model.optimizer_groups = lambda: bad
    with pytest.raises(ValueError, match=r"gives no role to 1 parameter\(s\), e.g. 'wte.weight'"):
        parameter_roles(model)
    model.optimizer_groups = lambda: {**roles, "wte.weight": "embeding"}
    with pytest.raises(ValueError, match=r"role 'embeding', not one of"):
        parameter_roles(model)
    model.optimizer_groups = lambda: {**roles, "ghost.weight": "matrix"}
    with pytest.raises(ValueError, match=r"'ghost\.weight', which is not a trainable parameter"):
        parameter_roles(model)
    parcae = build_lm("parcae", "tiny", variant="diagonal")
    diagonal_roles = parameter_roles(build_lm("parcae", "tiny", variant="diagonal"))
    parcae.optimizer_groups = lambda: {**diagonal_roles, "a_log": "matrix"}
    with pytest.raises(ValueError, match=r"'a_log' of shape \(128,\) a 'matrix'; it must be 2-D"):
        parameter_roles(parcae)


@dataclass
class _Bad:
    field: str
    value: object
    message: str


@pytest.mark.parametrize(
    "bad",
    [
        _Bad("optimizer", "sgd", "trainer.optimizer='sgd' is not one of muon_adamw, adamw"),
        _Bad("schedule", "wsd", "trainer.schedule='wsd' is not one of trapezoid, cosine"),
        _Bad("cooldown_frac", 1.5, r"trainer.cooldown_frac=1.5 must be within \[0, 1\]"),
        _Bad("warmup_frac", -0.1, r"trainer.warmup_frac=-0.1 must be within \[0, 1\]"),
        _Bad("muon_lr", 0.0, "trainer.muon_lr=0.0 must be positive"),
        _Bad("fp_wd", -1.0, "trainer.fp_wd=-1.0 must be >= 0"),
    ],
    ids=lambda b: b.field,
)
def test_bad_fields_fail_in_one_line(bad: _Bad) -> None:
    t = replace(DEFAULT, **{bad.field: bad.value})
    with pytest.raises(ValueError, match=bad.message) as info:
        check_recipe(t)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="exceeds 1"):
        check_recipe(replace(DEFAULT, warmup_frac=0.6, cooldown_frac=0.5))
    check_recipe(DEFAULT)  # the defaults are valid


def test_multi_optimizer_state_round_trip() -> None:
    torch.manual_seed(0)
    model = build_lm("gpt", "tiny", n_layers=1)
    x = torch.randint(0, model.config.vocab_size, (2, 16))

    def step(opt: MultiOptimizer, i: int) -> None:
        apply_schedule(opt, i, DEFAULT)
        opt.zero_grad()
        model(x, x)["loss"].backward()
        opt.step()

    opt = build_optimizer(model, DEFAULT)
    step(opt, 0)
    saved = ({k: v.clone() for k, v in model.state_dict().items()}, copy.deepcopy(opt.state_dict()))
    step(opt, 1)
    after = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(saved[0])
    again = build_optimizer(model, DEFAULT)
    again.load_state_dict(saved[1])
    step(again, 1)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, after[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="state of 1 optimisers, expected 2"):
        again.load_state_dict({"optimizers": saved[1]["optimizers"][:1]})


def test_cli_shows_the_fields_and_rejects_bad_ones(tmp_path) -> None:
    cmd = [sys.executable, "-m", "recursive_models.lm.train"]
    job = subprocess.run([*cmd, "--cfg", "job"], capture_output=True, text=True, check=True).stdout
    for line in ("optimizer: muon_adamw", "schedule: trapezoid", "muon_lr: 0.02", "cooldown_frac: 0.5",
                 "fp_lr_scale: 0.5", "fp_wd: 0.1", "embedding_weight_decay: 0.0"):  # fmt: skip
        assert line in job, line
    old = subprocess.run([*cmd, "optim=adamw_cosine", "--cfg", "job"], capture_output=True, text=True, check=True)
    assert "optimizer: adamw\n" in old.stdout and "schedule: cosine" in old.stdout
    over = ["trainer.optimizer=sgd", f"data.cache_dir={tmp_path / 'cache'}", f"trainer.out_dir={tmp_path / 'run'}"]
    bad = subprocess.run([*cmd, *over], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == "error: trainer.optimizer='sgd' is not one of muon_adamw, adamw"
    assert not (tmp_path / "cache").exists()  # failed before the corpus was prepared


def test_float32_muon_is_torch_muon_up_to_the_iteration_dtype() -> None:
    """The CPU Muon applies torch's update; only its Newton-Schulz runs in float32 instead of bfloat16."""
    from recursive_models.lm.optim import Float32Muon

    torch.manual_seed(0)
    w = [torch.randn(48, 16), torch.randn(16, 64)]
    grads = [[torch.randn_like(x) for x in w] for _ in range(3)]
    params = {name: [x.clone().requires_grad_() for x in w] for name in ("torch", "fp32")}
    opts = {"torch": torch.optim.Muon(params["torch"], lr=0.02, weight_decay=0.1, adjust_lr_fn="original"),
            "fp32": Float32Muon(params["fp32"], lr=0.02, weight_decay=0.1, adjust_lr_fn="original")}  # fmt: skip
    for g in grads:
        for name, opt in opts.items():
            for p, gi in zip(params[name], g, strict=True):
                p.grad = gi.clone()
            opt.step()
    for a, b, x in zip(params["torch"], params["fp32"], w, strict=True):
        moved = (a.detach() - x).abs().max()
        assert float((a - b).abs().max()) < 0.05 * float(moved)  # bf16 vs fp32 orthogonalisation, same update
        assert float((b - x).abs().max()) > 0  # it moved


def test_muon_fallback_without_torch_muon(monkeypatch) -> None:
    """On a torch without ``torch.optim.Muon`` (before 2.9) `Float32Muon` on its stand-in base is the same optimiser."""
    from recursive_models.lm import optim
    from recursive_models.lm.registry import build_lm

    standalone = type("StandaloneMuon", (optim._MuonParams,), {"step": optim.Float32Muon.step})
    torch.manual_seed(0)
    w = [torch.randn(48, 16), torch.randn(16, 64)]
    grads = [[torch.randn_like(x) for x in w] for _ in range(3)]
    params = {name: [x.clone().requires_grad_() for x in w] for name in ("torch_base", "standalone")}
    kw = {"lr": 0.02, "weight_decay": 0.1, "adjust_lr_fn": "original"}
    opts = {
        "torch_base": optim.Float32Muon(params["torch_base"], **kw),
        "standalone": standalone(params["standalone"], **kw),
    }
    assert opts["standalone"].defaults == opts["torch_base"].defaults  # the same hyperparameters and defaults
    for g in grads:
        for name, opt in opts.items():
            for p, gi in zip(params[name], g, strict=True):
                p.grad = gi.clone()
            opt.step()
    for a, b in zip(params["torch_base"], params["standalone"], strict=True):
        assert torch.equal(a, b)
    # build_optimizer picks the stand-in where torch has no Muon, even where it would use torch's bf16 one
    monkeypatch.setattr(optim, "_TorchMuon", None)
    model = build_lm("gpt", "tiny", vocab_size=64, seq_len=16)
    opt = build_optimizer(model, replace(LMTrainerSection(), muon_ns_dtype="bfloat16"))
    assert any(isinstance(o, optim.Float32Muon) for o in opt.optimizers)
