"""The training loop that runs on every worker: devices, precision, accumulation, checkpoints.

:class:`WorkerLoop` works inside a Ray Train worker (DDP through ``prepare_model``, reports and
checkpoints through ``ray.train``) and, with :meth:`WorkerContext.local`, in a plain process with
one worker (how the unit tests and a debugger drive it).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from retrosearch.core.encoder.device import resolve_device
from retrosearch.trainers.harness.config import Precision, TrainConfig
from retrosearch.trainers.harness.method import LossTerms, Method, RunInfo
from retrosearch.trainers.harness.plan import BatchPlan

MODEL_FILE = "model.pt"
STATE_FILE = "train_state.pt"
EXPORT_DIR = "export"


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
        import ray.train
        import ray.train.torch

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
        log_path: Path | None = None,
    ) -> None:
        from transformers import get_scheduler

        torch.set_num_threads(config.threads or config.cpus_per_worker)
        self.method, self.config, self.examples, self.ctx = method, config, examples, ctx
        # The log sits in the run folder; on a cluster without shared storage rank 0 may not see it.
        self.log_path = (
            log_path if ctx.rank == 0 and log_path is not None and log_path.parent.is_dir() else None
        )
        self.plan = BatchPlan(
            len(examples), config.batch_size, config.seed, ctx.world_size, ctx.rank, config.grad_accum
        )
        self.step = 0
        self.amp_dtype = autocast_dtype(config.precision, ctx.device)
        torch.manual_seed(config.seed)  # identical initial weights for any new parameters on every worker
        self.raw_model = method.build_model()
        restored = self._restore_model()
        if ctx.in_ray:
            import ray.train.torch

            self.model = ray.train.torch.prepare_model(self.raw_model)
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
            self._restore_state(restored)

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
        if self.step >= cfg.steps:
            self._log_line(f"checkpoint is at step {self.step} >= {cfg.steps} steps: nothing to train")
        elif self.step:
            self._log_line(f"resumed from the checkpoint at step {self.step}")
        started, first_step, stats, tokens = time.perf_counter(), self.step, None, 0
        while self.step < cfg.steps:
            stats = self.train_step()
            tokens += stats.tokens
            done = self.step >= cfg.steps
            if self.step % cfg.log_every == 0 or done or self.step == first_step + 1:
                self._log(stats, started, first_step, tokens)
            if done:
                self._checkpoint(stats.metrics(), final=True)
            elif self.step % cfg.checkpoint_every == 0:
                self._checkpoint(stats.metrics(), final=False)
            elif self.step % cfg.log_every == 0:
                self._report(stats.metrics(), None)

    def _log(self, stats: StepStats, started: float, first_step: int, tokens: int) -> None:
        elapsed = time.perf_counter() - started
        done = self.step - first_step
        rate = done * self.config.batch_size / elapsed if elapsed else 0.0
        token_rate = tokens / elapsed if elapsed else 0.0
        eta = elapsed / done * (self.config.steps - self.step) if done else 0.0
        parts = ", ".join(f"{n} {v:.4f}" for n, v in stats.terms.items())
        self._log_line(
            f"step {self.step}/{self.config.steps} epoch {self.plan.epoch(self.step):.2f} "
            f"| loss {stats.loss:.4f} "
            f"({parts}) | lr {stats.lr:.2e} | grad {stats.grad_norm:.3f} | {rate:.1f} ex/s {token_rate:.0f} tok/s | "
            f"elapsed {elapsed:.0f}s eta {eta:.0f}s",
            {
                **stats.metrics(),
                "epoch": self.plan.epoch(self.step),
                "examples_per_s": rate,
                "tokens_per_s": token_rate,
                "tokens": tokens,
                "elapsed_s": elapsed,
            },
        )

    def _log_line(self, text: str, record: dict[str, Any] | None = None) -> None:
        if self.ctx.rank != 0:
            return
        # Not print(): Ray Train patches print() into its logger, and the line would show twice.
        sys.stdout.write(f"[train] {text}\n")
        sys.stdout.flush()
        if self.log_path is not None:
            with self.log_path.open("a") as handle:
                handle.write(json.dumps(record or {"message": text}) + "\n")

    def _report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        if not self.ctx.in_ray:
            return
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

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
                self._log_line(f"checkpoint at step {self.step}" + (" (final, with export)" if final else ""))
            self._report(metrics, folder)

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the model and the optimiser state of the current step into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.raw_model.state_dict(), folder / MODEL_FILE)
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "fingerprint": self.method.fingerprint(),
        }
        torch.save(state, folder / STATE_FILE)

    def _restore_model(self) -> dict[str, Any] | None:
        if not self.ctx.in_ray:
            return None
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
            check_fingerprint(state["fingerprint"], self.method.fingerprint())
            weights = torch.load(Path(folder) / MODEL_FILE, map_location="cpu", weights_only=True)
        self.raw_model.load_state_dict(weights)
        return state

    def _restore_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])

    def _all_reduce(self, tensor: torch.Tensor) -> None:
        if self.ctx.world_size > 1 and dist.is_initialized():
            dist.all_reduce(tensor)


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint made with different method settings (it would mix two runs)."""
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ValueError(
            f"the checkpoint in this run folder was made with other settings ({detail}); "
            "use another --out/--storage or --name to start a new run"
        )


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train entry point: fetch the examples, build a :class:`WorkerLoop` and run it."""
    import ray

    examples = ray.get(loop_config["examples"])
    WorkerLoop(
        loop_config["method"],
        loop_config["config"],
        examples,
        WorkerContext.from_ray(),
        log_path=loop_config.get("log_path"),
    ).run()
