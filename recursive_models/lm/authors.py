"""The authors' LM fixed-point solvers, reproduced step for step, and their checkpoints converted to ours.

Source: jacobfa/Attractor (``attractor/models/attractor/solvers.py`` and ``attractor.py``, read at ``fcf045f``);
nothing is imported from or copied out of it. Used by the ``authors`` variant of the Attractor LM
(``solver.method="authors"``) and by the fidelity tests (``tests/test_lm_authors.py``).

`authors_anderson` differs from `equilibrium`'s Anderson in ways that change iterates and step counts:

* one solver sample per *sequence* (state ``(B, T·D)``), and one stopping decision for the whole batch: the
  largest per-sequence relative residual ``‖f(x) - x‖ / ‖x‖`` (the denominator is the *input* x, not ``f(x)``)
  must be below ``tol`` after at least ``min_iter`` evaluations. So before convergence the Anderson weights of a
  sequence, fitted to the residual of all its positions, mix later tokens into earlier positions (bounded by
  the residual at which the solve stops);
* two plain steps first (``x0``, ``f(x0)``), then Anderson on a ring of ``m`` slots (slot ``k mod m``), mixing
  the first ``min(k, m)`` slots, with an absolute ridge ``1e-4`` on the Gram matrix, solved in float32
  (``solve_ex``; rows whose system is singular fall back to least squares, non-finite weights to a plain step);
* it stops early on divergence (relative residual NaN or above 1e4) and returns ``f`` of the last mixed iterate;
* with ``max_iter < 3`` it runs their fixed-point iteration (`authors_fpi`) instead.

    from recursive_models.lm.authors import authors_solve
    y_star, info = authors_solve(f, y0, max_iter=64, min_iter=6, tol=3e-4, m=5)   # under torch.no_grad()
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Map = Callable[[torch.Tensor], torch.Tensor]


def _rel_residual(new: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖new - prev‖ / max(‖prev‖, 1e-9)``, float32, ``(B,)``."""
    b = new.shape[0]
    n, p = new.float().reshape(b, -1), prev.float().reshape(b, -1)
    return (n - p).norm(dim=1) / p.norm(dim=1).clamp_min(1e-9)


def authors_fpi(f: Map, y0: torch.Tensor, *, max_iter: int, tol: float, min_iter: int = 0) -> tuple[torch.Tensor, dict]:
    """Their plain fixed-point iteration ``y ← f(y)`` (used when ``max_iter < 3``); see `authors_anderson`."""
    y, rel = y0, torch.zeros(y0.shape[0], device=y0.device)
    iters, converged = 0, False
    for k in range(max_iter):
        y_new = f(y)
        rel = _rel_residual(y_new, y)
        iters, y = k + 1, y_new
        if iters >= min_iter and float(rel.max()) < tol:
            converged = True
            break
    return y, {"iters": iters, "residual": rel, "converged": converged}


def authors_anderson(
    f: Map, y0: torch.Tensor, *, max_iter: int, tol: float, m: int = 5, beta: float = 1.0, lam: float = 1e-4,
    min_iter: int = 0,
) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """Their batched type-II Anderson for ``y = f(y)`` (see the module docstring), without autograd.

    Args:
        f: ``(B, ...) -> (B, ...)``.
        y0: the start, ``(B, ...)``; its dtype is the history's.
        max_iter: evaluations of ``f`` at most (>= 3).
        tol: tolerance on the batch's largest relative residual.
        m: history slots.
        beta: damping (1 = none).
        lam: absolute ridge on the Gram matrix.
        min_iter: no stop before this many evaluations.

    Returns:
        ``(y_star, info)``: ``y_star`` shaped like ``y0``; ``info`` has ``iters`` (int, the same for the whole
        batch), ``residual`` (``(B,)`` float32, each sample's last relative residual) and ``converged`` (bool).
    """
    b, shape = y0.shape[0], y0.shape
    n = y0.numel() // b
    dev, dt = y0.device, y0.dtype
    xs = torch.zeros(b, m, n, device=dev, dtype=dt)  # iterates
    fs = torch.zeros(b, m, n, device=dev, dtype=dt)  # f of them
    xs[:, 0] = y0.reshape(b, n)
    fs[:, 0] = f(y0).reshape(b, n)
    xs[:, 1] = fs[:, 0]
    fs[:, 1] = f(fs[:, 0].view(shape)).reshape(b, n)
    # Bordered system [[0, 1ᵀ], [1, GGᵀ + λI]] [μ; α] = [1; 0]: least-squares weights α with Σα = 1.
    h = torch.zeros(b, m + 1, m + 1, device=dev, dtype=dt)
    h[:, 0, 1:] = 1.0
    h[:, 1:, 0] = 1.0
    rhs = torch.zeros(b, m + 1, 1, device=dev, dtype=dt)
    rhs[:, 0] = 1.0
    rel = torch.zeros(b, device=dev)
    converged, last, iters = False, 1, 2
    for k in range(2, max_iter):
        w = min(k, m)
        g = fs[:, :w] - xs[:, :w]  # (B, w, n) residuals of the slots in use
        h[:, 1 : w + 1, 1 : w + 1] = torch.bmm(g, g.transpose(1, 2)) + lam * torch.eye(w, device=dev, dtype=dt)[None]
        a, r = h[:, : w + 1, : w + 1].float(), rhs[:, : w + 1].float()
        sol, status = torch.linalg.solve_ex(a, r)
        if bool((status != 0).any()):
            try:
                fallback = torch.linalg.lstsq(a, r).solution
                sol = torch.where((status != 0).view(-1, 1, 1).expand_as(sol), fallback, sol)
            except RuntimeError:
                pass
        alpha = sol.to(dt)[:, 1 : w + 1, 0]  # (B, w)
        if not bool(torch.isfinite(alpha).all()):
            plain = torch.zeros_like(alpha)
            plain[:, -1] = 1.0
            alpha = torch.where(torch.isfinite(alpha).all(dim=-1, keepdim=True), alpha, plain)
        x_new = beta * (alpha[..., None] * fs[:, :w]).sum(dim=1) + (1.0 - beta) * (alpha[..., None] * xs[:, :w]).sum(
            dim=1
        )
        if not bool(torch.isfinite(x_new).all()):
            x_new = fs[:, (k - 1) % m].clone()
        slot = k % m
        xs[:, slot] = x_new
        fs[:, slot] = f(x_new.view(shape)).reshape(b, n)
        last, iters = slot, k + 1
        rel = _rel_residual(fs[:, slot], xs[:, slot])
        worst = float(rel.max())
        if iters >= min_iter and worst < tol:
            converged = True
            break
        if worst != worst or worst > 1e4:  # diverged (NaN or exploding): stop where it is
            break
    return fs[:, last].view(shape), {"iters": iters, "residual": rel, "converged": converged}


def authors_solve(
    f: Map, y0: torch.Tensor, *, max_iter: int, tol: float, min_iter: int = 0, m: int = 5, beta: float = 1.0
) -> tuple[torch.Tensor, dict]:
    """Their solver choice: Anderson, or the plain iteration when ``max_iter < 3`` (their ``_solver_kwargs``)."""
    min_iter = min(int(min_iter), int(max_iter))
    if max_iter < 3:
        return authors_fpi(f, y0, max_iter=max_iter, tol=tol, min_iter=min_iter)
    return authors_anderson(f, y0, max_iter=max_iter, tol=tol, m=m, beta=beta, min_iter=min_iter)


# --------------------------------------------------------------------------------------------------------
# Their checkpoints -> ours
# --------------------------------------------------------------------------------------------------------


def _interleaved_to_half(w: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Reorder the output rows of a q/k projection from interleaved rotary pairs to half-split ones.

    Their rotary rotates the pairs ``(2i, 2i+1)`` of each head, ours ``(i, i + hd/2)``, with the same frequency
    ``i``. Permuting q and k alike within each head (channel ``2i`` -> ``i``, ``2i+1`` -> ``i + hd/2``) leaves
    every attention score unchanged (``q·k`` and the RMS of QK-norm are permutation invariant).
    """
    rows = w.shape[0]
    perm = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])  # (hd,)
    index = (torch.arange(rows // head_dim)[:, None] * head_dim + perm[None]).reshape(-1)
    return w[index]


def _block_state(theirs: dict[str, torch.Tensor], src: str, dst: str, head_dim: int) -> dict[str, torch.Tensor]:
    """One of their ``TransformerPreNormBlock`` / ``FixedPointBlock`` (prefix ``src``) as our `Block` (``dst``)."""
    q, k, v = (theirs[f"{src}.attn.c_{n}.weight"] for n in "qkv")
    out = {
        f"{dst}.norm_1.weight": theirs[f"{src}.norm_1.weight"],
        f"{dst}.norm_2.weight": theirs[f"{src}.norm_2.weight"],
        f"{dst}.attn.qkv.weight": torch.cat([_interleaved_to_half(q, head_dim), _interleaved_to_half(k, head_dim), v]),
        f"{dst}.attn.proj.weight": theirs[f"{src}.attn.c_proj.weight"],
        f"{dst}.mlp.fc.weight": theirs[f"{src}.mlp.fc.weight"],
        f"{dst}.mlp.proj.weight": theirs[f"{src}.mlp.proj.weight"],
    }
    for name in ("attn", "mlp"):
        if f"{src}.raw_gamma_{name}" in theirs:
            out[f"{dst}.gate_{name}"] = theirs[f"{src}.raw_gamma_{name}"]
    return out


_IGNORED = ("freqs_cis", "lm_head.weight")  # rotary tables (rebuilt) and the tied head (= wte)


def convert_authors_attractor(theirs: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Their ``Attractor`` state dict -> our ``attractor`` (``variant="authors"``) state dict, exactly.

    Args:
        theirs: ``model.state_dict()`` of their ``Attractor`` (``transformer.*`` keys).
        config: our resolved `LMConfig` (``n_prelude`` = their ``n_backbone_layers``, ``n_core`` = their
            ``n_fp_blocks``, the same width, heads and vocabulary).

    Raises:
        ValueError: a key of theirs this mapping does not place, a missing key, or a shape mismatch (e.g. a
            padded vocabulary larger than ours, untied embeddings, biases, GQA).
    """
    if config.name != "attractor" or config.variant != "authors":
        raise ValueError(f"expected an attractor config with variant='authors', got {config.name}/{config.variant}")
    t = {k.removeprefix("_orig_mod."): v for k, v in theirs.items()}
    hd = config.d_model // config.n_heads
    ours = {"wte.weight": t["transformer.wte.weight"], "ln_f.weight": t["transformer.ln_f.weight"]}
    for i in range(config.n_prelude):
        ours.update(_block_state(t, f"transformer.prelude.{i}", f"backbone.{i}", hd))
    for i in range(config.n_core):
        ours.update(_block_state(t, f"transformer.core_block.{i}", f"attractor.{i}", hd))
    used = {"transformer.wte.weight", "transformer.ln_f.weight"}
    for prefix, n in (("transformer.prelude", config.n_prelude), ("transformer.core_block", config.n_core)):
        used |= {k for k in t for i in range(n) if k.startswith(f"{prefix}.{i}.")}
    left = sorted(k for k in t if k not in used and not k.endswith(_IGNORED))
    if left:
        raise ValueError(f"their checkpoint has parameters this conversion does not place: {left[:6]}")
    return ours


def load_converted(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state, strict=True)`` with shapes checked first, naming the first mismatch."""
    mine = model.state_dict()
    for k, v in state.items():
        if k in mine and tuple(mine[k].shape) != tuple(v.shape):
            raise ValueError(f"{k}: their shape {tuple(v.shape)} does not match ours {tuple(mine[k].shape)}")
    model.load_state_dict({k: v.to(mine[k].dtype) if k in mine else v for k, v in state.items()}, strict=True)
