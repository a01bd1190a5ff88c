"""Training CLI (hydra): ``python -m recursive_models.train [group=option ...] [key=value ...]``.

    python -m recursive_models.train                                   # tiny Attractor on 6x6 Sudoku, CPU minutes
    python -m recursive_models.train model=trm task=maze-small
    python -m recursive_models.train model=attractor size=27m          # the paper's model (GPU-sized)
    python -m recursive_models.train experiment=paper_sudoku_attractor_27m
    python -m recursive_models.train trainer.out_dir=runs/a trainer.resume=true   # continue a killed run
    python -m recursive_models.train --cfg job                         # print the composed config
    python -m recursive_models.train -m model=trm,attractor size=7m,27m task=sudoku-extreme   # a sweep
    python -m recursive_models.report runs/sweep-<date>                                   # its table + plots
    torchrun --nproc_per_node 8 -m recursive_models.train experiment=paper_maze_trm_7m

Groups: model (trm, hrm, attractor, transformer), size (tiny, 7m, 27m), task (sudoku6, maze-small,
sudoku-extreme, maze-hard), experiment (conf/experiment/*.yaml). Fields: see `recursive_models.config`.
Outputs in ``trainer.out_dir``: metrics.jsonl, checkpoints/, results.json, .hydra/ (the composed config).
With ``-m`` (hydra multirun) every run writes into its own folder of the sweep (``hydra.sweep.dir``/``subdir``,
``runs/sweep-<date>/<overrides>``) unless ``trainer.out_dir`` is given; runs go one after another, and a run that
fails with a configuration or data error leaves ``error.txt`` in its folder while the sweep goes on.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recursive_models.config import register_configs

register_configs()


def _summary(result: dict) -> str:
    se = result.get("eval/exact_accuracy_se")
    return (
        f"test exact accuracy {result['eval/exact_accuracy']:.4f}"
        + (f" ± {se:.4f}" if se is not None else "")
        + f" (cell accuracy {result['eval/cell_accuracy']:.4f}, {result['eval/count']} puzzles)"
        + f" in {result['minutes']:.1f} min\ncheckpoint: {result['checkpoint']}"
    )


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run `recursive_models.trainer.train` and print where the results are."""
    from puzzles.errors import PuzzleError
    from recursive_models.cli import run_training
    from recursive_models.trainer import TrainingError, train

    run_training(cfg, train, (TrainingError, PuzzleError, ValueError, FileNotFoundError), _summary)


if __name__ == "__main__":
    main()
