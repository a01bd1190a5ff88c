"""The common model interface: `ModelConfig`, the `Carry` of deep supervision, and `RecursiveModel` (ACT).

Every model in the suite is a `RecursiveModel`: it embeds the puzzle, advances a model-specific latent state
by one *supervision step* and decodes token logits plus the Q (halting) logits. The ACT wrapper here is
written once for all models (as HRM/TRM):

* ``carry = model.initial_carry(batch)`` starts with every slot *halted*;
* ``carry, out = model(carry, batch)`` runs one supervision step. Halted slots first take the new batch's
  example in that slot and a fresh initial state; the new state is detached (no gradient crosses steps);
* a slot halts at ``halt_max_steps`` or, in training, when ``q_halt > 0`` (``q_halt > q_continue`` with the
  Q-learning continue head of HRM), except that with probability ``halt_exploration_prob`` a minimum number
  of steps drawn from ``[2, halt_max_steps]`` is enforced first. In evaluation every slot runs all steps.

Subclasses implement `init_state` and `step` (and may override `reset_state`); see ``models/trm.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import nn

from recursive_models.layers import (
    Block,
    InputEncoder,
    OutputHeads,
    ReasoningModule,
    block_parameters,
    encoder_parameters,
    heads_parameters,
    trunc_normal_,
)

State = tuple[torch.Tensor, ...]


def check_keys(cls: type, d: dict, what: str) -> dict:
    """A copy of ``d`` after checking every key is a field of dataclass ``cls`` (``ValueError`` naming the rest).

    Configs read from checkpoints or written by users go through this, so a typo or a file from another version
    fails loudly instead of being ignored.
    """
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {what} key(s) {sorted(unknown)}; known: {sorted(known)}")
    return dict(d)


@dataclass
class SolverConfig:
    """Fixed-point solve of Attractor models (passed to `equilibrium.fixed_point`).

    ``max_iter=0`` skips the solve and decodes the warm start (at step zero: the backbone's proposal), which
    is the paper's equilibrium-internalization test. Under 16-bit autocast the stopping tolerance is
    ``max(tol, autocast_tol)``: ``f``'s own rounding floors the relative residual there. ``jacobian_reg`` (the
    loss weight) and ``jacobian_reg_samples`` are the authors' Jacobian regulariser (``variant=authors``);
    ``method="authors"`` is their Anderson (same variant).
    """

    method: str = "anderson"
    max_iter: int = 8
    min_iter: int = 0
    tol: float = 1e-3
    stop_mode: str = "rel"
    m: int = 5
    beta: float = 1.0
    backward: str = "phantom"
    phantom_steps: int = 2
    phantom_tau: float = 0.5
    ift_max_iter: int = 12
    ift_tol: float = 1e-4
    autocast_tol: float = 1e-2
    jacobian_reg: float = 0.0
    jacobian_reg_samples: int = 1


@dataclass
class ModelConfig:
    """Architecture of one model (the builder arguments saved next to every checkpoint).

    Attributes:
        name: registry name (``trm``, ``hrm``, ``attractor``, ``transformer``).
        variant: which source a model with variants follows (``attractor``: ``paper``, ``authors``,
            ``backbone``); empty for models without variants.
        size: size name the widths came from (``tiny``, ``7m``, ``27m``), for the record.
        vocab_size, seq_len, num_puzzle_identifiers: from the task's dataset.
        hidden_size, num_heads, expansion: block widths (SwiGLU inner = 2/3 * expansion * hidden, to 256).
        layers: blocks in the recurrent net (TRM), in the low-level module (HRM), in the attractor module
            (Attractor), or in the whole network (Transformer).
        h_layers: blocks in HRM's high-level module.
        backbone_layers: blocks in the Attractor's non-recurrent proposal backbone (``variant=backbone``).
        h_cycles: outer rounds ``T`` (TRM, Attractor ``variant=authors``) / HRM high-level cycles.
        l_cycles: latent updates ``n`` per round (TRM) / HRM low-level cycles.
        mixer: ``attention`` or ``mlp`` (TRM's MLP-T token mixing).
        pos_encodings: ``rope``, ``learned`` or ``none``.
        norm: ``post`` (HRM/TRM) or ``pre``.
        puzzle_emb_len: positions given to the puzzle-identifier embedding (0 for none).
        puzzle_emb_ndim: width of the learned puzzle-identifier embedding, zero-padded to ``puzzle_emb_len``
            positions; 0 means all ``puzzle_emb_len * hidden_size`` (TRM: 16 positions, ``hidden_size`` wide).
            Unused when ``puzzle_emb_len`` is 0.
        halt_max_steps: supervision steps ``N_sup``.
        halt_exploration_prob: probability of enforcing a random minimum number of steps in training.
        act_continue: HRM's Q-learning continue head (halt when ``q_halt > q_continue``); otherwise TRM's
            halt-when-``q_halt > 0``.
        solver: the fixed-point solve of Attractor models.
    """

    name: str = "trm"
    variant: str = ""
    size: str = "custom"
    vocab_size: int = 11
    seq_len: int = 81
    num_puzzle_identifiers: int = 1
    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    layers: int = 2
    h_layers: int = 0
    backbone_layers: int = 0
    h_cycles: int = 3
    l_cycles: int = 6
    mixer: str = "attention"
    pos_encodings: str = "rope"
    norm: str = "post"
    puzzle_emb_len: int = 1
    puzzle_emb_ndim: int = 0
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    act_continue: bool = False
    solver: SolverConfig = field(default_factory=SolverConfig)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of `dataclasses.asdict`; unknown keys are an error (a checkpoint from another version)."""
        d = check_keys(cls, d, "model config")
        if isinstance(d.get("solver"), dict):
            d["solver"] = SolverConfig(**check_keys(SolverConfig, d["solver"], "solver config"))
        return cls(**d)


@dataclass
class Carry:
    """What one supervision step hands to the next (all tensors have batch dim ``B`` first).

    Attributes:
        state: the model's latent state, e.g. ``(y, z)`` for TRM, each ``(B, S, D)``; detached.
        steps: ``(B,)`` int32 supervision steps taken by the example in each slot.
        halted: ``(B,)`` bool; a halted slot takes a new example at the next step.
        data: the batch tensors of the example currently in each slot.
    """

    state: State
    steps: torch.Tensor
    halted: torch.Tensor
    data: dict[str, torch.Tensor]


def _where_rows(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where ``mask`` (per batch row) else ``b``."""
    return torch.where(mask.view((-1,) + (1,) * (b.ndim - 1)), a, b)


class RecursiveModel(nn.Module):
    """Base class: input encoder, output heads, and the ACT supervision step (see the module docstring)."""

    #: registry name, set by `recursive_models.registry.register_model`
    name: str = ""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = InputEncoder(
            c.vocab_size,
            c.seq_len,
            c.hidden_size,
            num_puzzle_identifiers=c.num_puzzle_identifiers,
            puzzle_emb_len=c.puzzle_emb_len,
            puzzle_emb_ndim=c.puzzle_emb_ndim,
            pos_encodings=c.pos_encodings,
            num_heads=c.num_heads,
        )
        self.heads = OutputHeads(c.hidden_size, c.vocab_size, c.puzzle_emb_len)

    # ---- helpers for subclasses --------------------------------------------------------------------------
    @property
    def positions(self) -> int:
        """Sequence positions ``S`` (puzzle cells plus puzzle-embedding positions)."""
        return self.config.seq_len + self.config.puzzle_emb_len

    def make_module(self, n_blocks: int) -> ReasoningModule:
        """A stack of ``n_blocks`` blocks with this model's widths, mixer and norm placement."""
        c = self.config
        return ReasoningModule(
            [
                Block(
                    c.hidden_size,
                    c.num_heads,
                    c.expansion,
                    mixer=c.mixer,
                    seq_positions=self.positions,
                    norm=c.norm,
                )
                for _ in range(n_blocks)
            ]
        )

    def make_init(self, name: str, learned: bool = False) -> None:
        """Register a ``(D,)`` initial state vector (truncated normal, std 1), as a buffer or a parameter."""
        init = trunc_normal_(torch.empty(self.config.hidden_size), std=1.0)
        if learned:
            self.register_parameter(name, nn.Parameter(init))
        else:
            self.register_buffer(name, init, persistent=True)

    # ---- size from the config alone (no module built) ------------------------------------------------------
    @classmethod
    def num_blocks(cls, config: ModelConfig) -> int:
        """Blocks this model builds with `make_module` for ``config`` (all its modules together)."""
        raise NotImplementedError

    @classmethod
    def num_learned_inits(cls, config: ModelConfig) -> int:
        """Initial-state vectors registered by `make_init` as parameters (``learned=True``)."""
        return 0

    @classmethod
    def parameter_count(cls, config: ModelConfig) -> int:
        """Trainable parameters of the model ``config`` builds, by arithmetic: no module or tensor is created.

        Checked against the built model for every registered model, size and variant (``tests/test_models.py``);
        the leaderboard sizes an untrusted config with it before building anything.
        """
        c = config
        block = block_parameters(c.hidden_size, c.expansion, mixer=c.mixer, seq_positions=c.seq_len + c.puzzle_emb_len)
        return (
            encoder_parameters(
                c.vocab_size,
                c.seq_len,
                c.hidden_size,
                num_puzzle_identifiers=c.num_puzzle_identifiers,
                puzzle_emb_len=c.puzzle_emb_len,
                puzzle_emb_ndim=c.puzzle_emb_ndim,
                pos_encodings=c.pos_encodings,
            )
            + heads_parameters(c.hidden_size, c.vocab_size)
            + cls.num_blocks(c) * block
            + cls.num_learned_inits(c) * c.hidden_size
        )

    # ---- model-specific ----------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device) -> State:
        """The initial latent state for ``batch_size`` slots."""
        raise NotImplementedError

    def reset_state(self, state: State, reset: torch.Tensor) -> State:
        """Put the initial state into the slots where ``reset`` is True."""
        init = self.init_state(reset.shape[0], reset.device)
        return tuple(_where_rows(reset, i.to(s.dtype), s) for i, s in zip(init, state, strict=True))

    def step(
        self, state: State, x: torch.Tensor, rope, reset: torch.Tensor
    ) -> tuple[State, torch.Tensor, dict[str, torch.Tensor]]:
        """One supervision step of the latent recursion.

        Args:
            state: latent state carried from the previous step (detached).
            x: input embedding ``(B, S, D)``.
            rope: rotary tables or ``None``.
            reset: ``(B,)`` bool, slots that start a new example: their state must be re-initialised first
                (usually ``state = self.reset_state(state, reset)``).

        Returns:
            ``(new_state, h, info)``: ``h (B, S, D)`` is decoded by the heads; ``info`` holds per-sample
            diagnostics (e.g. ``solver_nstep``, ``solver_residual``, each ``(B,)``).
        """
        raise NotImplementedError

    # ---- ACT ---------------------------------------------------------------------------------------------
    def initial_carry(self, batch: dict[str, torch.Tensor]) -> Carry:
        """A carry with every slot halted, so the first step loads ``batch`` and fresh states."""
        inputs = batch["inputs"]
        b, device = inputs.shape[0], inputs.device
        return Carry(
            state=tuple(s.detach().clone() for s in self.init_state(b, device)),
            steps=torch.zeros(b, dtype=torch.int32, device=device),
            halted=torch.ones(b, dtype=torch.bool, device=device),
            data={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    def _decode(self, state: State, data: dict[str, torch.Tensor], reset: torch.Tensor):
        x = self.encoder(data["inputs"], data["puzzle_identifiers"])
        new_state, h, info = self.step(state, x, self.encoder.rope(), reset)
        logits, q_halt, q_continue = self.heads(h)
        return new_state, logits, q_halt, q_continue, info

    def forward(self, carry: Carry, batch: dict[str, torch.Tensor]) -> tuple[Carry, dict[str, torch.Tensor]]:
        """Run one supervision step; returns the next carry and ``logits (B, L, V)``, Q logits and diagnostics."""
        c = self.config
        reset = carry.halted
        data = {k: _where_rows(reset, batch[k], v) for k, v in carry.data.items()}
        steps = torch.where(reset, torch.zeros_like(carry.steps), carry.steps)
        new_state, logits, q_halt, q_continue, info = self._decode(carry.state, data, reset)
        out = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_continue, **info}
        new_state = tuple(s.detach() for s in new_state)
        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= c.halt_max_steps
            halted = is_last
            if self.training and c.halt_max_steps > 1:
                halted = halted | ((q_halt > q_continue) if c.act_continue else (q_halt > 0))
                explore = torch.rand_like(q_halt) < c.halt_exploration_prob
                min_steps = torch.randint_like(steps, 2, c.halt_max_steps + 1)
                halted = halted & (steps >= explore * min_steps)
                if c.act_continue:
                    # HRM's Q-learning target: the value of the best action at the next step (bootstrapped
                    # with one extra, gradient-free step), or of halting when this is the last step.
                    _, _, nq_halt, nq_cont, _ = self._decode(new_state, data, torch.zeros_like(reset))
                    out["target_q_continue"] = torch.sigmoid(
                        torch.where(is_last, nq_halt, torch.maximum(nq_halt, nq_cont))
                    )
        return Carry(new_state, steps, halted, data), out
