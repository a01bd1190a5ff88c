"""The LM recipe's optimiser and learning-rate schedule: the paper's MuonAdamW + trapezoid, or AdamW + cosine.

    from recursive_models.lm.optim import build_optimizer, apply_schedule
    opt = build_optimizer(model, cfg.trainer)     # after check_recipe(cfg.trainer)
    for step in range(cfg.trainer.steps):
        apply_schedule(opt, step, cfg.trainer)    # sets every group's lr (and Muon's momentum / weight decay)
        ...; opt.step()

Parameter roles (the contract between a model and this module). Every trainable parameter has exactly one role:

=============  ============================================================  ======================================
role           what it is                                                    treatment (``trainer.*`` fields)
=============  ============================================================  ======================================
``embedding``  token embedding = tied unembedding, or any vocabulary table   AdamW, ``lr``, ``embedding_weight_decay``
``matrix``     a 2-D hidden weight outside the fixed-point head              ``muon_adamw``: Muon, ``muon_lr``,
                                                                             ``muon_weight_decay`` (decayed linearly
                                                                             to 0); ``adamw``: AdamW, ``lr``,
                                                                             ``weight_decay``
``vector``     everything else outside the head: gains, gates, biases and    AdamW, ``lr``, no weight decay
               any weight that must not be orthogonalised (e.g. a
               recurrence's A / Δ / B)
``fp_matrix``  a weight with ``ndim >= 2`` of the fixed-point head           AdamW, ``lr · fp_lr_scale``, ``fp_wd``
``fp_vector``  any other parameter of the fixed-point head                   AdamW, ``lr · fp_lr_scale``, no decay
=============  ============================================================  ======================================

A model states its roles with an optional method ``optimizer_groups(self) -> dict[str, str]``: a mapping from
every name of ``model.named_parameters()`` with ``requires_grad`` (shared parameters appear once, under the name
``named_parameters`` gives them) to one of the roles above; ``matrix`` parameters must be 2-D (Muon is a matrix
method). Anything else (a missing or extra name, an unknown role) fails in `parameter_roles` with a one-line
`ValueError`. Without the method the default is by name and shape: ``wte.*`` -> ``embedding``; anything under a
submodule named ``attractor`` (``attractor.*`` or ``*.attractor.*``) -> ``fp_matrix`` / ``fp_vector`` by
``ndim >= 2``; other 2-D -> ``matrix``; the rest -> ``vector``. The model, not the trainer, knows which
parameters are its fixed-point head; the default only covers today's names.

Where this follows the authors (``jacobfa/Attractor``; a re-implementation, nothing copied) and where not:

* Same split (``recpre/optim/muon_adamw.py`` ``get_muon_param_groups``): embeddings/unembedding, norms, biases,
  Parcae's recurrence and the *whole* fixed-point head (its matrices too) on AdamW; the other 2-D weights on Muon.
  The head's parameters are tagged in ``attractor/models/attractor/attractor.py`` (``Attractor.__init__``): lr
  scaled by ``fp_lr_scale``, matrices decayed by ``fp_wd``, vectors not at all.
* Muon: `torch.optim.Muon` with Nesterov momentum (the same EMA form as theirs), 5 orthogonalisation steps and
  ``adjust_lr_fn="original"``, i.e. lr · ``sqrt(max(1, rows/cols))``, their ``muon_adamw.py`` line 87. Their
  momentum warms up linearly 0.85 -> 0.95 over 300 steps and their Muon weight decay decays linearly to 0 over
  the run (``scripts/train.py`` lines 482-485 and 698-709); both are reproduced in `apply_schedule`.
* Not reproduced (torch's Muon has no such options): their Polar-Express coefficients (we use torch's quintic
  Newton-Schulz), their NorMuon-style per-row second-moment rescaling of the orthogonalised update
  (``beta2=0.95``), their *cautious* weight decay (only where update and weight agree in sign), and their decay
  applied at the shape-adjusted lr (torch decays at the unadjusted lr: ours is up to ``sqrt(rows/cols)`` = 2x
  weaker on the MLP's up-projection). Their trainer also skips the first optimiser step (a compile warm-up); ours
  does not.
* Schedule ``trapezoid`` (theirs: ``recpre/schedulers/base.py`` + ``constant.py``): optional linear warmup,
  constant, then a linear cooldown over the last ``cooldown_frac`` of the steps, ``lr · (steps - step) / cooldown``
  for ``step > steps - cooldown`` (0-based), so the last step runs at ``lr / cooldown`` and 0 is reached at
  ``step = steps``. Their warmup is ``lr · step / warmup`` (0 on the first step, which they skip); ours is
  ``lr · (step + 1) / warmup`` like the cosine schedule. ``cosine`` is this suite's earlier schedule, unchanged.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

log = logging.getLogger(__name__)

ROLES = ("embedding", "matrix", "vector", "fp_matrix", "fp_vector")
OPTIMIZERS = ("muon_adamw", "adamw")
SCHEDULES = ("trapezoid", "cosine")


def check_recipe(t: Any) -> None:
    """Raise a one-line `ValueError` for a bad optimiser / schedule field of ``trainer`` (before any work)."""
    if t.optimizer not in OPTIMIZERS:
        raise ValueError(f"trainer.optimizer={t.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if t.muon_ns_dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"trainer.muon_ns_dtype={t.muon_ns_dtype!r} is not one of auto, float32, bfloat16")
    if t.schedule not in SCHEDULES:
        raise ValueError(f"trainer.schedule={t.schedule!r} is not one of {', '.join(SCHEDULES)}")
    for key in ("warmup_frac", "cooldown_frac"):
        if not 0.0 <= getattr(t, key) <= 1.0:
            raise ValueError(f"trainer.{key}={getattr(t, key)} must be within [0, 1]")
    if t.warmup_frac + t.cooldown_frac > 1.0:
        raise ValueError(f"trainer.warmup_frac + trainer.cooldown_frac = {t.warmup_frac + t.cooldown_frac} exceeds 1")
    for key in ("lr", "muon_lr", "fp_lr_scale"):
        if not getattr(t, key) > 0:
            raise ValueError(f"trainer.{key}={getattr(t, key)} must be positive")
    for key in ("weight_decay", "muon_weight_decay", "embedding_weight_decay", "fp_wd"):
        if getattr(t, key) < 0:
            raise ValueError(f"trainer.{key}={getattr(t, key)} must be >= 0")
    if t.steps < 1:
        raise ValueError(f"trainer.steps={t.steps} must be at least 1")


# ---- schedule ------------------------------------------------------------------------------------------------
def cosine_lr(step: int, t: Any) -> float:
    """Linear warmup over ``lr_warmup_steps``, then cosine decay to ``lr · lr_min_ratio`` at ``steps``."""
    if step < t.lr_warmup_steps:
        return t.lr * (step + 1) / t.lr_warmup_steps
    frac = (step - t.lr_warmup_steps) / max(1, t.steps - t.lr_warmup_steps)
    return t.lr * (t.lr_min_ratio + (1 - t.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def trapezoid_lr(step: int, t: Any) -> float:
    """Warmup-stable-decay (trapezoid) learning rate at optimiser step ``step`` (0-based).

    ``int(warmup_frac·steps)`` linear warmup steps, then constant, then linear to 0 over the last
    ``int(cooldown_frac·steps)`` steps: ``lr · (steps - step) / cooldown`` once ``step > steps - cooldown``.
    """
    warmup, cooldown = int(t.warmup_frac * t.steps), int(t.cooldown_frac * t.steps)
    if step < warmup:
        return t.lr * (step + 1) / warmup
    if cooldown and step > t.steps - cooldown:
        return t.lr * max(t.steps - step, 0) / cooldown
    return t.lr


def lr_at(step: int, t: Any) -> float:
    """The schedule's learning rate for the base (AdamW, scale 1) groups at optimiser step ``step`` (0-based)."""
    return trapezoid_lr(step, t) if t.schedule == "trapezoid" else cosine_lr(step, t)


def muon_momentum_at(step: int, t: Any) -> float:
    """``muon_momentum_warmup_start`` -> ``muon_momentum`` linearly over ``muon_momentum_warmup_steps``."""
    if step >= t.muon_momentum_warmup_steps:
        return t.muon_momentum
    frac = step / t.muon_momentum_warmup_steps
    return t.muon_momentum_warmup_start + frac * (t.muon_momentum - t.muon_momentum_warmup_start)


def apply_schedule(opt: Any, step: int, t: Any) -> float:
    """Set every group's hyper-parameters for optimiser step ``step``; returns ``lr_at(step, t)``.

    Every group: ``lr = lr_at · lr_scale``. Muon groups: the warmed-up momentum and the weight decay decayed
    linearly from its initial value to 0 at ``steps``.
    """
    lr = lr_at(step, t)
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_scale"]  # lr_scale 1.0 leaves the base groups' lr exactly lr_at
        if g["kind"] == "muon":
            g["momentum"] = muon_momentum_at(step, t)
            g["weight_decay"] = g["base_weight_decay"] * max(0.0, 1 - step / t.steps)
    return lr


# ---- parameter groups ----------------------------------------------------------------------------------------
def default_role(name: str, p: torch.Tensor) -> str:
    """The role of a parameter of a model without ``optimizer_groups()`` (see the module docstring)."""
    parts = name.split(".")
    if "attractor" in parts[:-1]:
        return "fp_matrix" if p.ndim >= 2 else "fp_vector"
    if parts[0] == "wte":
        return "embedding"
    return "matrix" if p.ndim == 2 else "vector"


def parameter_roles(model: torch.nn.Module) -> dict[str, str]:
    """``name -> role`` for every trainable parameter of ``model``.

    The model's ``optimizer_groups()`` if it has one (checked: one known role for exactly the trainable names,
    ``matrix`` only 2-D; else a one-line `ValueError`), otherwise `default_role`.
    """
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    hook = getattr(model, "optimizer_groups", None)
    if not callable(hook):
        return {n: default_role(n, p) for n, p in named.items()}
    roles = dict(hook())
    where = f"{type(model).__name__}.optimizer_groups()"
    if missing := sorted(set(named) - set(roles)):
        raise ValueError(f"{where} gives no role to {len(missing)} parameter(s), e.g. {missing[0]!r}")
    if extra := sorted(set(roles) - set(named)):
        raise ValueError(f"{where} names {extra[0]!r}, which is not a trainable parameter")
    for n, r in roles.items():
        if r not in ROLES:
            raise ValueError(f"{where} gives {n!r} the role {r!r}, not one of {', '.join(ROLES)}")
        if r == "matrix" and named[n].ndim != 2:
            raise ValueError(f"{where} calls {n!r} of shape {tuple(named[n].shape)} a 'matrix'; it must be 2-D")
    return roles


def param_groups(model: torch.nn.Module, t: Any) -> list[dict]:
    """The optimiser groups of ``model`` under ``trainer`` fields ``t``; roles with the same treatment share one.

    Each group is ``{"params", "names", "roles", "kind": "muon" | "adamw", "lr_scale", "weight_decay"}``; its lr
    is ``lr_at(step) · lr_scale`` (`apply_schedule`).
    """
    muon = t.optimizer == "muon_adamw"
    # role -> (kind, lr relative to trainer.lr, weight decay)
    treatment = {
        "embedding": ("adamw", 1.0, t.embedding_weight_decay),
        "matrix": ("muon", t.muon_lr / t.lr, t.muon_weight_decay) if muon else ("adamw", 1.0, t.weight_decay),
        "vector": ("adamw", 1.0, 0.0),
        "fp_matrix": ("adamw", t.fp_lr_scale, t.fp_wd),
        "fp_vector": ("adamw", t.fp_lr_scale, 0.0),
    }
    params = dict(model.named_parameters())
    groups: dict[tuple, dict] = {}
    for name, role in parameter_roles(model).items():
        kind, scale, wd = treatment[role]
        g = groups.setdefault((kind, scale, wd), {"params": [], "names": [], "roles": [], "kind": kind,
                                                  "lr_scale": scale, "weight_decay": wd})  # fmt: skip
        g["params"].append(params[name])
        g["names"].append(name)
        if role not in g["roles"]:
            g["roles"].append(role)
    return list(groups.values())


class MultiOptimizer:
    """Several optimisers stepped as one (Muon for the matrices, AdamW for the rest).

    ``param_groups`` lists all of their groups; ``state_dict()`` holds one entry per optimiser.
    """

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict]:
        """Every group of every optimiser, in order."""
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every gradient."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        """One step of each optimiser."""
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> dict:
        """``{"optimizers": [state_dict, ...]}``."""
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError(f"state of {len(state['optimizers'])} optimisers, expected {len(self.optimizers)}")
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)


#: torch's Muon (``torch.optim.Muon``, in torch since 2.9); ``None`` on an older build, where `Float32Muon` stands in
_TorchMuon = getattr(torch.optim, "Muon", None)


class _MuonParams(torch.optim.Optimizer):
    """torch's Muon hyperparameters and defaults, without its update: the base of `Float32Muon` where torch has none.

    `Float32Muon.step` reads only these group keys, so on such a build it is the whole optimiser.
    """

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None):  # fmt: skip
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
                    "ns_coefficients": ns_coefficients, "eps": eps, "ns_steps": ns_steps,
                    "adjust_lr_fn": adjust_lr_fn}  # fmt: skip
        super().__init__(params, defaults)


class Float32Muon(_TorchMuon or _MuonParams):
    """`torch.optim.Muon` whose Newton-Schulz orthogonalisation runs in float32 (the CPU path).

    torch's Muon always orthogonalises in bfloat16, which is what GPUs are fast at; on a CPU without bf16 matrix
    units a bf16 product is ~8x slower than float32 (measured: 2.4 ms against 0.28 ms for 128x512 @ 512x128),
    which made the optimiser step of the tiny GPT (1.0 s) as long as its forward and backward. This class
    applies the same update as torch's ``_single_tensor_muon`` (momentum EMA, Nesterov, the same quintic
    iteration and coefficients, decoupled weight decay at the unadjusted lr, ``adjust_lr_fn``) with the
    iteration in float32; float32 only makes the orthogonalisation more exact. Selected by
    ``trainer.muon_ns_dtype`` (``auto``: float32 on CPU, torch's bf16 elsewhere).
    """

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mom = float(group["lr"]), group["weight_decay"], group["momentum"]
            a, b, c = group["ns_coefficients"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mom)
                update = p.grad.lerp(buf, mom) if group["nesterov"] else buf
                x = update.float()
                tall = x.size(0) > x.size(1)
                x = x.T if tall else x
                x = x / x.norm().clamp(min=group["eps"])  # spectral norm at most 1
                for _ in range(group["ns_steps"]):
                    gram = x @ x.T
                    x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
                x = x.T if tall else x
                rows, cols = p.shape[:2]
                fn = group["adjust_lr_fn"]
                ratio = math.sqrt(max(1, rows / cols)) if fn in (None, "original") else 0.2 * math.sqrt(max(rows, cols))
                p.mul_(1 - lr * wd)
                p.add_(x.to(p.dtype), alpha=-lr * ratio)
        return loss


def build_optimizer(model: torch.nn.Module, t: Any) -> MultiOptimizer:
    """The optimiser ``trainer.optimizer`` over `param_groups`; call `apply_schedule` before every step.

    ``muon_adamw``: `torch.optim.Muon` for the ``matrix`` groups + `torch.optim.AdamW` for the rest;
    ``adamw``: AdamW alone.
    """
    groups = param_groups(model, t)
    adamw = [g for g in groups if g["kind"] == "adamw"]
    muon = [{**g, "base_weight_decay": g["weight_decay"]} for g in groups if g["kind"] == "muon"]
    opts = []
    if muon:
        on_cpu = all(p.device.type == "cpu" for g in muon for p in g["params"])
        fp32 = t.muon_ns_dtype == "float32" or (t.muon_ns_dtype == "auto" and on_cpu)
        cls = Float32Muon if fp32 or _TorchMuon is None else _TorchMuon  # the same update either way
        opts.append(cls(muon, lr=t.muon_lr, momentum=t.muon_momentum, nesterov=True, ns_steps=t.muon_ns_steps,
                        adjust_lr_fn="original"))  # fmt: skip
    if adamw:
        opts.append(torch.optim.AdamW(adamw, lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps, fused=False))
    for g in groups:
        n = sum(p.numel() for p in g["params"])
        log.info("%s %s: %d tensors, %.3fM parameters, lr x%.3g, weight decay %g", g["kind"], "+".join(g["roles"]),
                 len(g["params"]), n / 1e6, g["lr_scale"], g["weight_decay"])  # fmt: skip
    return MultiOptimizer(*opts)
