"""Generated Sudoku-Extreme against the real train sample: ratings, givens, two-sample tests, time.

For each seed, generates ``--n`` puzzles with the ``extreme`` profile (all cores) and compares them with
the real 1k sample in ../shared/data (:func:`puzzles.sudoku_generator.compare_with_real`): deciles, q99
and max of the rating (tdoku's guess count), givens and the share of minimal puzzles, and the KS and
Anderson-Darling two-sample tests. Each seed's JSON is written as soon as it is done and a rerun skips it;
the Markdown table (``table.md``) is rebuilt from all of them, with a bootstrap interval for the real sample's q99.

Run (project root, ``pip install -e .[bench]``)::

    python benchmarks/sudoku_extreme_distribution.py --out benchmarks/results/sudoku_extreme_distribution
    python benchmarks/sudoku_extreme_distribution.py --shared-grids --out ...   # own_grids=False

Files: ``own_seed<k>.json`` (the default, every puzzle its own solution grid), ``shared_seed<k>.json``
(``--shared-grids``: a chunk's puzzles may share the search's grids).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from puzzles.formats import write_text_atomic
from puzzles.sudoku_generator import compare_with_real, default_real_sample

QS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "0.99")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def real_q99_interval(n_boot: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of the real sample's q99 (how precisely 1,000 rows pin the tail down)."""
    import pandas as pd

    r = pd.read_csv(default_real_sample()).rating.to_numpy()
    rng = np.random.default_rng(0)
    boots = [np.quantile(rng.choice(r, r.size), 0.99) for _ in range(n_boot)]
    return float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def table(runs: list[dict]) -> str:
    real = runs[0]["real_csv_rating"]
    head = "| | " + " | ".join(f"q{q}" for q in QS) + " | max | mean | givens | minimal | KS p | AD p | s |"
    lines = [head, "|" + "---|" * (len(QS) + 9)]
    for d in runs:
        g, t = d["generated"], d["two_sample_vs_real_csv"]
        cells = [f"{g['quantiles'][q]:g}" for q in QS]
        lines.append(
            f"| seed {g['seed']} {'own' if g.get('own_grids') else 'shared'} grids | " + " | ".join(cells)
            + f" | {g['max']} | {g['mean']:.1f} | {g['givens']['mean']:.2f} | {g['givens']['frac_minimal']:.1%}"
            + f" | {t['ks_pvalue']:.3f} | {'>=' if t['ad_pvalue'] >= 0.25 else ''}{t['ad_pvalue']:.3f}"
            + f" | {g['seconds']:.0f} |"
        )  # fmt: skip
    rg = runs[0]["real_givens"]
    lines.append(
        "| real sample (CSV rating) | " + " | ".join(f"{real['quantiles'][q]:g}" for q in QS)
        + f" | {real['max']} | {real['mean']:.1f} | {rg['mean']:.2f} | {rg['frac_minimal']:.1%} | | | |"
    )  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for seed<k>.json and table.md")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--shared-grids", action="store_true", help="own_grids=False: puzzles may share grids")
    a = ap.parse_args()
    if not default_real_sample().exists():
        sys.exit(f"error: the real sample is not at {default_real_sample()}")
    try:
        a.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: --out {a.out}: {e.strerror}")
    tag = "shared_" if a.shared_grids else "own_"
    for seed in a.seeds:
        path = a.out / f"{tag}seed{seed}.json"
        if path.exists():
            continue
        d = compare_with_real(a.n, seed=seed, workers=a.workers, own_grids=not a.shared_grids)
        d["commit"] = commit()
        d["command"] = " ".join(sys.argv)
        write_text_atomic(path, json.dumps(d, indent=2) + "\n")  # an interrupted run leaves no half file
        print(f"seed {seed}: KS p {d['two_sample_vs_real_csv']['ks_pvalue']}", file=sys.stderr)
    runs = [json.loads(p.read_text()) for p in sorted(a.out.glob("own_seed*.json"))]
    runs += [json.loads(p.read_text()) for p in sorted(a.out.glob("shared_seed*.json"))]
    lo, hi = real_q99_interval()
    text = f"Real sample q99: 95% bootstrap interval [{lo:g}, {hi:g}] (1,000 rows).\n\n{table(runs)}\n"
    write_text_atomic(a.out / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
