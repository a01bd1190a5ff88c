r"""The resumable, seeded study loop shared by ``benchmarks/lm_compare.py`` and ``benchmarks/lm_ablations.py``.

Not a script: the studies import it (``python benchmarks/lm_compare.py ...`` puts ``benchmarks/`` on the path).

A study folder ``OUT`` holds one JSON per finished (key, seed) in ``OUT/runs/<key>-s<seed>.json``, written
atomically as soon as the run ends, so a killed study loses at most the run in flight and a rerun skips what is
done; and ``OUT/study.json``, which lists every command that added runs to the folder (a study is often finished
by several invocations: another seed, a missing family), so the results name all of them.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path


def mean_std(values: Iterable[float | None]) -> dict:
    """``{"mean", "std", "n"}`` of the values that are not None (sample std; 0 for one value, NaN mean for none)."""
    vs = [v for v in values if v is not None]
    if not vs:
        return {"mean": float("nan"), "std": 0.0, "n": 0}
    return {"mean": statistics.fmean(vs), "std": statistics.stdev(vs) if len(vs) > 1 else 0.0, "n": len(vs)}


def open_study(out: Path, script: str, argv: list[str], **meta) -> dict:
    """Create ``out/runs`` and record this invocation in ``out/study.json`` (returns the study's metadata).

    ``meta`` (size, device, ...) describes the study; a value that differs from the one already recorded is
    refused, so two incompatible studies are never mixed in one folder.
    """
    (out / "runs").mkdir(parents=True, exist_ok=True)
    path = out / "study.json"
    old = read_study(out)
    for k, v in meta.items():
        if k in old and old[k] != v:
            raise SystemExit(f"error: {out} is a study with {k}={old[k]!r}, this command has {k}={v!r}")
    command = " ".join([script, *argv])
    commands = [c for c in old.get("commands", []) if c != command] + [command]
    study = {**old, **meta, "machine": platform.processor() or platform.machine(), "commands": commands}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(study, indent=2) + "\n")
    tmp.replace(path)
    return study


def read_study(out: Path) -> dict:
    """``out/study.json`` (``{}`` when absent); a study written before ``commands`` existed is read as one."""
    path = out / "study.json"
    if not path.exists():
        return {}
    study = json.loads(path.read_text())
    if "command" in study:  # the single-command form of earlier studies
        study.setdefault("commands", [study.pop("command")])
    return study


def run_seeded(out: Path, seeds: Iterable[int], keys: Iterable[str], run: Callable[[str, int], dict],
               brief: Callable[[dict], dict] = lambda e: e) -> list[dict]:  # fmt: skip
    """Run ``run(key, seed)`` for every (key, seed) not yet in ``out/runs``; returns the new entries.

    Seed-major, so an interrupted study has every key at its first seeds. Each entry is written at once
    (atomically) and ``brief(entry)`` printed as one JSON line.
    """
    done = []
    keys = list(keys)
    for seed in seeds:
        for key in keys:
            path = out / "runs" / f"{key}-s{seed}.json"
            if path.exists():
                print(f"skip {path} (done)", file=sys.stderr)
                continue
            entry = run(key, seed)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entry, indent=2) + "\n")
            tmp.replace(path)  # atomic: a killed run leaves no half-written entry
            print(json.dumps(brief(entry)), flush=True)
            done.append(entry)
    return done


def load_runs(out: Path) -> list[dict]:
    """Every finished run of the study folder ``out``, in file-name order."""
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
