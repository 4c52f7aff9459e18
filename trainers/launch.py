"""Run one method on the shared Ray Train harness from a command: fit, then say where the model went.

Every ``retrosearch train <method>`` command ends here, so failures read the same for all of them.
"""

from __future__ import annotations

import typer

from retrosearch.core import cli_options as opt
from retrosearch.trainers.harness.config import TrainConfig


def run_training(method, train: TrainConfig) -> None:
    """Fit, then print where the model went; failures become one-line errors."""
    # lazy: keeps torch, ray out of CLI start-up
    from ray.train import TrainingFailedError

    from retrosearch.trainers.harness.runner import fit, run_dir

    with opt.user_errors():
        try:
            result = fit(method, train)
        except TrainingFailedError as exc:
            raise opt.fail(
                f"training failed: {exc}\nre-run the same command to resume from the last checkpoint in "
                f"{run_dir(method, train)}"
            ) from None
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k.startswith("loss"))
    typer.echo(f"trained model written to {result.out} ({losses})")
    typer.echo(f"checkpoints and log: {result.run_dir}")
    typer.echo(f"evaluate: retrosearch eval --collection DIR --model {result.out}")
