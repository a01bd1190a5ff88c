r"""``lm_eval`` with the ``attractor-suite`` model registered: a thin wrapper around lm-eval's own CLI.

lm-eval 0.4.x looks models up only among the modules it has imported (its registry has no entry-point
discovery for models; ``--include_path`` adds tasks, not models), so the plain ``lm_eval`` command does not
know ``attractor-suite``. This module imports the registration and then runs ``lm_eval`` with the same
arguments::

    python -m recursive_models.lm.eval_harness --model attractor-suite \
        --model_args checkpoint=runs/lm,iters=0 --include_path tasks/shakespeare_lambada \
        --tasks shakespeare_lambada --output_path results/

Every lm-eval option works as documented for ``lm_eval``. A bad model arg ends with one ``error:`` line and
exit code 2.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run lm-eval's CLI on ``argv`` (default: this process's arguments); returns the exit code."""
    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError as e:
        print(f"error: lm-eval is not installed ({e}); pip install -e '.[eval]'", file=sys.stderr)
        return 2
    from recursive_models.lm.lm_eval_model import LMEvalArgError

    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]  # lm-eval's parser reads sys.argv
    try:
        cli_evaluate()
    except LMEvalArgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
