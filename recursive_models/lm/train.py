"""Language-model training CLI (hydra): ``python -m recursive_models.lm.train [group=option ...] [key=value ...]``.

    python -m recursive_models.lm.train                                   # tiny Attractor LM, Shakespeare, CPU
    python -m recursive_models.lm.train model=gpt                         # the GPT baseline, same budget
    python -m recursive_models.lm.train model=parcae size=small trainer.device=cuda
    python -m recursive_models.lm.train model=attractor +model.overrides.solver.max_iter=16
    python -m recursive_models.lm.train --cfg job                         # print the composed config

    python -m recursive_models.lm.train trainer.out_dir=runs/a trainer.checkpoint_interval=100   # resumable
    python -m recursive_models.lm.train trainer.out_dir=runs/a trainer.resume=true                # continue it
    python -m recursive_models.lm.train trainer.max_minutes=5                                     # a budget
    python -m recursive_models.lm.train -m model=gpt,attractor trainer.seed=0,1,2                 # a sweep
    python -m recursive_models.report runs/lm-sweep-<date>                                        # its table
    torchrun --nproc_per_node 8 -m recursive_models.lm.train model=attractor size=small trainer.device=cuda

Groups: model (gpt, parcae, deq, attractor), size (tiny, small, base). Fields: `recursive_models.lm.config`.
Outputs in ``trainer.out_dir``: metrics.jsonl, checkpoints/, results.json, .hydra/. With ``-m`` every run writes
into its own folder of the sweep (``runs/lm-sweep-<date>/<overrides>``); a run that fails with a configuration or
data error leaves ``error.txt`` there and the sweep goes on (`recursive_models.cli`). Under ``torchrun``
``trainer.batch_size`` is the global batch; rank 0 logs and saves.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recursive_models.lm.config import register_lm_configs

register_lm_configs()


def _summary(result: dict) -> str:
    return (
        f"validation perplexity {result['val/ppl']:.2f} (loss {result['val/loss']:.4f}, {result['val/tokens']:,} "
        f"tokens), {result['parameters'] / 1e6:.2f}M parameters, {result['minutes']:.1f} min\n"
        f"checkpoint: {result['checkpoint']}"
    )


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run `recursive_models.lm.trainer.train` and print the validation perplexity."""
    from recursive_models.cli import run_training
    from recursive_models.lm.trainer import LMTrainingError, train

    run_training(cfg, train, (LMTrainingError, ValueError, FileNotFoundError), _summary)


if __name__ == "__main__":
    main()
