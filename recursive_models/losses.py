"""Losses of deep supervision with ACT: stablemax (or softmax) cross-entropy plus the halting BCE.

Stablemax (Prieto et al. 2025, used by HRM/TRM on puzzles) replaces ``exp`` by ``s(x) = x + 1`` for ``x >= 0``
and ``1 / (1 - x)`` otherwise, which avoids the numerical "softmax collapse" late in training; it is computed
in float64 as the references do.

Per supervision step (as TRM's ACT loss head): ``lm`` is the per-example mean token loss summed over the batch,
``q_halt`` the BCE of the halt logit against "the whole answer is right", ``q_continue`` (HRM only) the BCE
against the bootstrapped Q target; ``total = lm + 0.5 * (q_halt + q_continue)``, divided by the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from puzzles.data import IGNORE_LABEL_ID

LOSS_TYPES = ("stablemax", "softmax")


def _s(x: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    return torch.where(x < 0, 1 / (1 - x + eps), x + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(s(x) / sum s(x))`` along ``dim``."""
    s_x = _s(x)
    return torch.log(s_x / s_x.sum(dim=dim, keepdim=True))


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, loss_type: str = "stablemax") -> torch.Tensor:
    """Per-token loss ``(B, L)`` (zero where ``labels == IGNORE_LABEL_ID``)."""
    mask = labels != IGNORE_LABEL_ID
    safe = torch.where(mask, labels, 0)
    if loss_type == "stablemax":
        logp = log_stablemax(logits.to(torch.float64), dim=-1)
        nll = -torch.gather(logp, -1, safe.unsqueeze(-1)).squeeze(-1)
        return torch.where(mask, nll, 0).float()
    if loss_type == "softmax":
        flat = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_LABEL_ID, reduction="none"
        )
        return flat.view(labels.shape)
    raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {LOSS_TYPES}")


def act_loss(
    outputs: dict[str, torch.Tensor], labels: torch.Tensor, halted: torch.Tensor, loss_type: str = "stablemax"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one supervision step and its metrics (sums over the examples that halted at this step).

    Args:
        outputs: the model's step outputs (``logits``, ``q_halt_logits``, optionally ``target_q_continue`` and
            ``aux_loss``, a scalar added to the batch sum before it is divided by the batch size, as the
            authors' ``ACTLossHeadDEQ`` adds its Jacobian term).
        labels: ``(B, L)`` targets with ``IGNORE_LABEL_ID`` where not scored.
        halted: ``(B,)`` bool, the slots that halted at this step (their answers are the final ones).
        loss_type: ``"stablemax"`` or ``"softmax"``.

    Returns:
        ``(loss, sums)``: the scalar loss divided by the batch size, and detached metric sums: ``count``
        (halted examples), ``accuracy`` (sum of per-example cell accuracy), ``exact_accuracy``,
        ``q_halt_accuracy``, ``steps``, ``lm_loss``, ``q_halt_loss``, ``q_continue_loss`` (batch sums).
    """
    logits = outputs["logits"]
    mask = labels != IGNORE_LABEL_ID
    counts = mask.sum(-1)
    divisor = counts.clamp_min(1).unsqueeze(-1)
    with torch.no_grad():
        correct = mask & (logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == counts
    lm = (token_cross_entropy(logits, labels, loss_type) / divisor).sum()
    q_halt_logits = outputs["q_halt_logits"]
    q_halt = F.binary_cross_entropy_with_logits(q_halt_logits, seq_correct.to(q_halt_logits.dtype), reduction="sum")
    total = lm + 0.5 * q_halt
    q_cont = torch.zeros((), device=logits.device)
    if "target_q_continue" in outputs:
        q_cont = F.binary_cross_entropy_with_logits(
            outputs["q_continue_logits"], outputs["target_q_continue"], reduction="sum"
        )
        total = total + 0.5 * q_cont
    if "aux_loss" in outputs:  # a model's own weighted regulariser (the authors' Jacobian term), per batch
        total = total + outputs["aux_loss"]
    with torch.no_grad():
        valid = halted & (counts > 0)
        sums = {
            "count": valid.sum(),
            "accuracy": torch.where(valid, correct.sum(-1) / counts.clamp_min(1), 0).sum(),
            "exact_accuracy": (valid & seq_correct).sum(),
            "q_halt_accuracy": (valid & ((q_halt_logits >= 0) == seq_correct)).sum(),
            "lm_loss": lm.detach(),
            "q_halt_loss": q_halt.detach(),
            "q_continue_loss": q_cont.detach(),
        }
    return total / logits.shape[0], sums
