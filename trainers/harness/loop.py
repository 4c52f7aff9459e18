"""The training loop that runs on every worker: devices, precision, accumulation, the step schedule.

:class:`WorkerLoop` works inside a Ray Train worker (DDP through ``prepare_model``, reports and
checkpoints through ``ray.train``) and, with :meth:`WorkerContext.local`, in a plain process with
one worker (how the unit tests and a debugger drive it). Checkpoint files are :mod:`.checkpoints`'
job, the log and run events :mod:`.run_log`'s, what is said to Ray Train :mod:`.ray_report`'s.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn
from transformers import get_scheduler

from retrosearch.core.encoder.device import resolve_device
from retrosearch.trainers.harness import ray_report
from retrosearch.trainers.harness.checkpoints import (
    EXPORT_DIR,
    TrainingState,
    load_checkpoint,
    restore_state,
    save_checkpoint,
)
from retrosearch.trainers.harness.config import Precision, TrainConfig
from retrosearch.trainers.harness.method import LossTerms, Method, RunInfo
from retrosearch.trainers.harness.plan import BatchPlan
from retrosearch.trainers.harness.run_log import RunLog


@dataclass(frozen=True)
class WorkerContext:
    """Where this worker sits: rank, world size, device, and whether a Ray Train session exists."""

    rank: int
    world_size: int
    device: torch.device
    in_ray: bool

    @classmethod
    def from_ray(cls) -> "WorkerContext":
        """The context of the current Ray Train worker."""
        ctx = ray.train.get_context()
        return cls(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(), in_ray=True)

    @classmethod
    def local(cls, device: str = "auto") -> "WorkerContext":
        """A single worker in this process, without Ray."""
        return cls(0, 1, resolve_device(device), in_ray=False)


@dataclass
class StepStats:
    """What one optimiser step did, averaged over the global batch."""

    step: int
    loss: float
    terms: dict[str, float]
    examples: int
    tokens: int = 0  # non-padding encoder input tokens of the global batch
    lr: float = 0.0
    grad_norm: float = float("nan")

    def metrics(self) -> dict[str, float]:
        """Flat metrics for logging and ``ray.train.report``."""
        out = {"step": self.step, "loss": self.loss, "lr": self.lr, "grad_norm": self.grad_norm}
        out.update({f"loss/{name}": value for name, value in self.terms.items()})
        return out


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: full fp32)."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _step_seed(seed: int, step: int, rank: int) -> int:
    # Dropout draws from torch's global RNG; seeding it per (step, rank) makes a resumed run
    # repeat exactly what the uninterrupted run would have done.
    return int(np.random.SeedSequence([seed, step, rank, 0xD50]).generate_state(1)[0])


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Biases and norm scales are not decayed (the BERT recipe); they are the 1-d parameters.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


class WorkerLoop:
    """One worker's training: build, restore, step, log, checkpoint, export."""

    def __init__(
        self,
        method: Method,
        config: TrainConfig,
        examples: Sequence[Any],
        ctx: WorkerContext,
        run_dir: Path | None = None,
    ) -> None:
        torch.set_num_threads(config.threads or config.cpus_per_worker)
        self.method, self.config, self.examples, self.ctx = method, config, examples, ctx
        self.log = RunLog(run_dir, ctx.rank, config.steps, config.batch_size)
        self.plan = BatchPlan(
            len(examples), config.batch_size, config.seed, ctx.world_size, ctx.rank, config.grad_accum
        )
        self.step = 0
        self.restored_from: str | None = None  # the storage path of the checkpoint this worker resumed
        self.amp_dtype = autocast_dtype(config.precision, ctx.device)
        torch.manual_seed(config.seed)  # identical initial weights for any new parameters on every worker
        self.raw_model = method.build_model()
        restored = self._restore_model()
        if ctx.in_ray:
            self.model = ray_report.prepare_model(self.raw_model)
        else:
            self.model = self.raw_model.to(ctx.device)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.raw_model, config.weight_decay),
            lr=config.lr,
            betas=config.adam_betas,
            eps=config.adam_eps,
        )
        self.scheduler = get_scheduler(
            config.scheduler,
            self.optimizer,
            num_warmup_steps=round(config.warmup_ratio * config.steps),
            num_training_steps=config.steps,
        )
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp_dtype == torch.float16)
        if restored is not None:
            self.step = restore_state(restored, self.state)

    @property
    def state(self) -> TrainingState:
        """The optimiser, schedule and loss scale (what a checkpoint saves besides the weights)."""
        return TrainingState(self.optimizer, self.scheduler, self.scaler)

    # -- one step ---------------------------------------------------------------------------------
    def backward(self, step: int) -> StepStats:
        """Forward and backward over this worker's micro-batches of ``step``; gradients are left in place."""
        torch.manual_seed(_step_seed(self.config.seed, step, self.ctx.rank))
        batches = [
            self.method.collate([self.examples[i] for i in mb.indices], mb.seeds)
            for mb in self.plan.micro_batches(step)
        ]
        names = sorted(batches[0].counts)
        counts = torch.tensor(
            [sum(b.counts[n] for b in batches) for n in names] + [sum(b.input_tokens() for b in batches)],
            dtype=torch.float64, device=self.ctx.device,
        )
        self._all_reduce(counts)
        tokens, counts = int(counts[-1]), counts[:-1]
        # DDP averages gradients over workers; multiplying by the world size turns that into a sum,
        # and dividing by the global counts makes every item weigh the same on any worker.
        scale = {n: self.ctx.world_size / max(float(c), 1.0) for n, c in zip(names, counts.tolist())}
        sums = torch.zeros(len(names), dtype=torch.float64, device=self.ctx.device)
        weights: dict[str, float] = {}
        for k, batch in enumerate(batches):
            last = k == len(batches) - 1
            sync = (
                contextlib.nullcontext()
                if last or not hasattr(self.model, "no_sync")
                else self.model.no_sync()
            )
            with sync:
                with torch.autocast(
                    self.ctx.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
                ):
                    terms: LossTerms = self.model(**batch.to(self.ctx.device).inputs)
                if sorted(terms) != names:
                    raise ValueError(
                        f"{self.method.name}: model returned terms {sorted(terms)}, collator counted {names}"
                    )
                loss = sum(t.weight * t.total.float() * scale[n] for n, t in terms.items())
                self.scaler.scale(loss).backward()
            sums += torch.stack([terms[n].total.detach().double() for n in names])
            weights = {n: terms[n].weight for n in names}
        self._all_reduce(sums)
        means = {n: float(s) / max(float(c), 1.0) for n, s, c in zip(names, sums.tolist(), counts.tolist())}
        total = sum(weights[n] * means[n] for n in names)
        return StepStats(step + 1, total, means, examples=self.config.batch_size, tokens=tokens)

    def update(self) -> float:
        """Clip, take the optimiser step and advance the schedule; returns the gradient norm."""
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.raw_model.parameters() if p.grad is not None]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return norm

    def train_step(self) -> StepStats:
        """One full optimiser step at ``self.step``."""
        self.raw_model.train()
        lr = self.scheduler.get_last_lr()[0]
        stats = self.backward(self.step)
        stats.grad_norm = self.update()
        stats.lr = lr
        self.step += 1
        return stats

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Train to ``config.steps`` with logging and checkpoints, then export (inside Ray Train)."""
        cfg = self.config
        self.log.start(self.step, self.method.fingerprint(), self.ctx.world_size, self.restored_from)
        try:
            while self.step < cfg.steps:
                stats = self.train_step()
                self.log.count_tokens(stats.tokens)
                done = self.step >= cfg.steps
                if self.step % cfg.log_every == 0 or done or self.step == self.log.first_step + 1:
                    self.log.step(self.step, self.plan.epoch(self.step), stats.metrics(), stats.terms)
                if done:
                    self._checkpoint(stats.metrics(), final=True)
                elif self.step % cfg.checkpoint_every == 0:
                    self._checkpoint(stats.metrics(), final=False)
                elif self.step % cfg.log_every == 0:
                    self._report(stats.metrics(), None)
        except Exception as error:
            self.log.failed(self.step, error)
            raise

    def _report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        if self.ctx.in_ray:
            ray_report.report(metrics, checkpoint_dir)

    def _checkpoint(self, metrics: dict[str, float], final: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="retrosearch-ckpt-") as tmp:
            folder = Path(tmp) if self.ctx.rank == 0 else None
            if folder is not None:
                self.save(folder)
                if final:
                    info = RunInfo(
                        self.step,
                        self.config.steps,
                        self.ctx.world_size,
                        self.config.batch_size,
                        self.config.seed,
                        dict(metrics),
                    )
                    self.method.export(self.raw_model, folder / EXPORT_DIR, info)
                self.log.checkpoint(self.step, final)
            self._report(metrics, folder)

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the model and the optimiser state of the current step into ``folder``."""
        save_checkpoint(folder, self.raw_model, self.state, self.step, self.method.fingerprint())

    def _restore_model(self) -> dict[str, Any] | None:
        # Only Ray Train hands a worker a checkpoint; records its storage path for the run events.
        if not self.ctx.in_ray:
            return None
        with ray_report.restored_checkpoint() as restored:
            if restored is None:
                return None
            folder, self.restored_from = restored
            return load_checkpoint(folder, self.raw_model, self.method.fingerprint())

    def _all_reduce(self, tensor: torch.Tensor) -> None:
        if self.ctx.world_size > 1 and dist.is_initialized():
            dist.all_reduce(tensor)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train entry point: fetch the examples, build a :class:`WorkerLoop` and run it."""
    examples = ray.get(loop_config["examples"])
    WorkerLoop(
        loop_config["method"],
        loop_config["config"],
        examples,
        WorkerContext.from_ray(),
        run_dir=loop_config.get("run_dir"),
    ).run()
