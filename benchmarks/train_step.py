"""Benchmark: training samples per second of our HRM/TRM against the reference code, and their numerics.

One training step is one supervision step of the whole batch, as both trainers do it: forward through the ACT
wrapper, the ACT loss (stablemax cross-entropy + halting BCE), backward, optimiser step. Given a checkout of the
reference code (``--reference-trm`` / ``--reference-hrm``, see `recursive_models.reference`), its model with the
same architecture runs in the same process on the same device, and the two are timed interleaved (alternating
which goes first) so that other load on the machine hits both alike; ``ratio`` is ours / reference samples per
second (> 1: ours is faster). The two start from the same weights: the reference model is initialised by its own
code and converted with `recursive_models.convert`; ``numerics`` is the largest absolute difference of logits and
Q logits over a few evaluation and training supervision steps, and of the loss.

    python benchmarks/train_step.py --model trm --size 7m --batch 64 --device cpu --reference-trm /tmp/refs/TRM \
        --steps 3 --warmup 1 --threads 1 --out benchmarks/results/train_step_cpu.json
    python benchmarks/train_step.py --model hrm --size 27m --batch 768 --device cuda --precision bf16 \
        --reference-hrm /tmp/refs/HRM

Optimisers: ours is the trainer's (`recursive_models.trainer.make_optimizer`: AdamW, puzzle embedding in its own
group); the reference gets AdamW for its dense weights (its ``AdamATan2`` needs a CUDA extension; the update costs
the same) and its own sparse SignSGD for the puzzle embedding, as its ``pretrain.py`` sets up. bf16 (CUDA only):
ours under autocast, the reference with ``forward_dtype=bfloat16`` (its own mixed precision); numerics are then
not expected to match to fp32 precision. Verified against SamsungSAILMontreal/TinyRecursiveModels e7b68717 and
sapientinc/HRM 42410daa. JSON goes to stdout (and ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from quickstart import machine  # benchmarks/ is a folder of scripts, not a package

from recursive_models.convert import convert_state, reference_arch
from recursive_models.losses import act_loss
from recursive_models.registry import build_model, resolve_config


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(n: int, b: int, vocab: int, seq_len: int, n_ids: int, device: torch.device, seed: int) -> list[dict]:
    # Random puzzles in the task's token ranges (pad 0 never appears): what a data loader would hand over.
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "inputs": torch.randint(1, vocab, (b, seq_len), generator=g).to(device),
            "labels": torch.randint(2, vocab, (b, seq_len), generator=g).to(device),
            "puzzle_identifiers": torch.randint(0, n_ids, (b,), generator=g).to(device),
        }
        for _ in range(n)
    ]


def numerics(ours, act, head, batches: list[dict], b: int, loss_type: str) -> dict:
    """Largest |ours - reference| of logits and Q logits over evaluation and training steps, and of the loss."""
    keys = ("logits", "q_halt_logits", "q_continue_logits")
    out = {"eval_logits": 0.0, "eval_q": 0.0, "train_logits": 0.0, "train_q": 0.0, "train_loss": 0.0, "steps": 0}
    with torch.no_grad():
        ours.eval()
        act.eval()
        rc, oc = act.initial_carry(batches[0]), ours.initial_carry(batches[0])
        for batch in batches:
            rc, r = act(rc, batch)
            oc, o = ours(oc, batch)
            out["eval_logits"] = max(out["eval_logits"], (r["logits"].float() - o["logits"].float()).abs().max().item())
            out["eval_q"] = max(out["eval_q"], max((r[k] - o[k]).abs().max().item() for k in keys[1:]))
        ours.train()
        head.train()
        rc, oc = head.initial_carry(batches[0]), ours.initial_carry(batches[0])
        for k, batch in enumerate(batches):
            torch.manual_seed(1000 + k)  # the same exploration draws for both
            rc, r_loss, _, r, _ = head(carry=rc, batch=batch, return_keys=list(keys))
            torch.manual_seed(1000 + k)
            oc, o = ours(oc, batch)
            o_loss, _ = act_loss(o, oc.data["labels"], oc.halted, loss_type)
            out["train_logits"] = max(
                out["train_logits"], (r["logits"].float() - o["logits"].float()).abs().max().item()
            )
            out["train_q"] = max(out["train_q"], max((r[k] - o[k]).abs().max().item() for k in keys[1:]))
            out["train_loss"] = max(out["train_loss"], abs(r_loss.item() / b - o_loss.item()))
            if not torch.equal(rc.halted, oc.halted):
                out["halting_differs_at_step"] = k
    out["steps"] = len(batches)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["trm", "hrm"], default="trm")
    p.add_argument("--size", default="7m")
    p.add_argument("--task", default="sudoku-extreme", help="registered dataset (vocabulary, length, task arch)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--loss-type", choices=["stablemax", "softmax"], default="stablemax")
    p.add_argument("--reference-trm", help="checkout of SamsungSAILMontreal/TinyRecursiveModels")
    p.add_argument("--reference-hrm", help="checkout of sapientinc/HRM")
    p.add_argument("--steps", type=int, default=3, help="timed steps of each implementation")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of each implementation first")
    p.add_argument("--numerics-steps", type=int, default=2, help="supervision steps of the numerics check")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.precision == "bf16" and device.type != "cuda":
        p.error("--precision bf16 is for CUDA (CPU bf16 matmuls are not what either trainer uses)")
    b = args.batch
    config = resolve_config(args.model, args.size, args.task)
    ref_root = args.reference_trm if args.model == "trm" else args.reference_hrm
    ref_loss = {"stablemax": "stablemax_cross_entropy", "softmax": "softmax_cross_entropy"}[args.loss_type]

    torch.manual_seed(args.seed)
    act = head = ref = None
    if ref_root:
        from recursive_models.reference import build_reference_model, load_reference_for

        ref = load_reference_for(config, ref_root, cpu_attention=device.type != "cuda")
        dtype = "bfloat16" if args.precision == "bf16" else "float32"
        act = build_reference_model(ref, config, batch_size=b, forward_dtype=dtype, device=device)
        head = ref.loss_head_cls(act, loss_type=ref_loss)
        # Same weights: their initialisation, through the converter (as their pretrain.py would save it).
        state = {"_orig_mod." + k: v.cpu() for k, v in head.state_dict().items()}
        ours, _ = convert_state(args.model, state, reference_arch(config), seq_len=config.seq_len)
        ours.config.size = args.size
    else:
        ours = build_model(args.model, args.size, args.task)
    ours = ours.to(device)
    n_steps = args.warmup + args.steps
    data = _batches(n_steps, b, config.vocab_size, config.seq_len, config.num_puzzle_identifiers, device, args.seed)

    result = {
        "benchmark": "train_step",
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "precision": args.precision,
        "model": args.model,
        "size": args.size,
        "task": args.task,
        "batch": b,
        "warmup": args.warmup,
        "steps": args.steps,
        "parameters": sum(p.numel() for p in ours.parameters()),
        "config": {k: v for k, v in vars(ours.config).items() if k != "solver"},
    }
    if head is not None:
        result["numerics"] = numerics(ours, act, head, data[: args.numerics_steps], b, args.loss_type)

    # Optimisers (see the module docstring).
    from recursive_models.trainer import make_optimizer

    hp = SimpleNamespace(
        lr=1e-4, weight_decay=1.0, puzzle_emb_lr=1e-4, puzzle_emb_weight_decay=1.0, beta1=0.9, beta2=0.95
    )
    our_opt = make_optimizer(ours, hp)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if args.precision == "bf16"
        else contextlib.nullcontext
    )
    ours.train()
    state = {"ours": ours.initial_carry(data[0])}

    def our_step(batch: dict) -> None:
        with autocast():
            state["ours"], out = ours(state["ours"], batch)
            loss, _ = act_loss(out, state["ours"].data["labels"], state["ours"].halted, args.loss_type)
        loss.backward()
        our_opt.step()
        our_opt.zero_grad(set_to_none=True)

    steps = {"ours": our_step}
    if head is not None:
        dense = torch.optim.AdamW(head.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=(0.9, 0.95))
        ref_opts = [dense]
        if config.puzzle_emb_len:
            ref_opts.append(
                ref.sparse_optimizer_cls(
                    head.model.puzzle_emb.buffers(), lr=hp.puzzle_emb_lr, weight_decay=hp.weight_decay, world_size=1
                )
            )
        head.train()
        with torch.device(device):
            state["reference"] = head.initial_carry(data[0])

        def ref_step(batch: dict) -> None:
            state["reference"], loss, _, _, _ = head(carry=state["reference"], batch=batch, return_keys=[])
            ((1 / b) * loss).backward()
            for opt in ref_opts:
                opt.step()
                opt.zero_grad()

        steps["reference"] = ref_step

    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for i, batch in enumerate(data):
        for name in names if i % 2 == 0 else names[::-1]:  # alternate who goes first
            torch.manual_seed(args.seed + i)
            _sync(device)
            t0 = time.perf_counter()
            steps[name](batch)
            _sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
            print(f"step {i} {name}: {time.perf_counter() - t0:.2f} s", file=sys.stderr)

    for name, ts in times.items():
        result[name] = {
            "samples_per_s": b / statistics.median(ts),
            "step_seconds": [round(t, 4) for t in ts],
        }
    if head is not None:
        result["reference"].update(repo=str(ref.root), commit=ref.commit, arch=ref.arch)
        result["ratio"] = result["ours"]["samples_per_s"] / result["reference"]["samples_per_s"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
