"""Language-model training CLI (hydra): ``python -m recursive_models.lm.train [group=option ...] [key=value ...]``.

    python -m recursive_models.lm.train                                   # tiny Attractor LM, Shakespeare, CPU
    python -m recursive_models.lm.train model=gpt                         # the GPT baseline, same budget
    python -m recursive_models.lm.train model=parcae size=small trainer.device=cuda
    python -m recursive_models.lm.train model=attractor +model.overrides.solver.max_iter=16
    python -m recursive_models.lm.train --cfg job                         # print the composed config

Groups: model (gpt, parcae, deq, attractor), size (tiny, small, base). Fields: `recursive_models.lm.config`.
Outputs in ``trainer.out_dir``: metrics.jsonl, checkpoints/, results.json, .hydra/.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from recursive_models.lm.config import register_lm_configs

register_lm_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run `recursive_models.lm.trainer.train` and print the validation perplexity."""
    from recursive_models.lm.trainer import LMTrainingError, train

    logging.getLogger("recursive_models").setLevel(logging.INFO)
    try:
        result = train(cfg)
    except (LMTrainingError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(
        f"validation perplexity {result['val/ppl']:.2f} (loss {result['val/loss']:.4f}, {result['val/tokens']:,} "
        f"tokens), {result['parameters'] / 1e6:.2f}M parameters, {result['minutes']:.1f} min\n"
        f"checkpoint: {result['checkpoint']}"
    )


if __name__ == "__main__":
    main()
