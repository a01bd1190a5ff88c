"""What both training CLIs do around a recipe: hydra sweeps, one-line errors, the closing summary.

    @hydra.main(config_path="conf", config_name="config", version_base="1.3")
    def main(cfg):
        run_training(cfg, train, (TrainingError, ValueError), lambda r: f"test accuracy {r['eval/acc']:.3f}")

With ``-m`` (hydra multirun) every run writes into its own folder of the sweep (``hydra.sweep.dir``/``subdir``)
unless ``trainer.out_dir`` is given; a run that fails with one of ``errors`` leaves ``error.txt`` in its folder
(which `recursive_models.report` lists) and the sweep goes on. A single run exits with status 2 and one line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_training(
    cfg: Any,
    train: Callable[[Any], dict],
    errors: tuple[type[BaseException], ...],
    summary: Callable[[dict], str],
) -> None:
    """Run ``train(cfg)`` under hydra and print ``summary(result)`` (rank 0 only)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    logging.getLogger("recursive_models").setLevel(logging.INFO)
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    if sweep and not any(o.startswith("trainer.out_dir=") for o in hc.overrides.task):
        cfg.trainer.out_dir = hc.runtime.output_dir  # the sweep's run folder (already holds .hydra/)
    try:
        result = train(cfg)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        if sweep:  # one bad run must not end a sweep of many: leave the reason in its folder and go on
            out = Path(cfg.trainer.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "error.txt").write_text(f"{type(e).__name__}: {e}\n")
            return
        sys.exit(2)
    if result:  # empty on DDP ranks other than 0
        print(summary(result))
