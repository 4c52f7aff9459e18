"""Training speed: the harness's optimiser step against a minimal hand-written PyTorch loop.

Same method, model, batch size, sequence length, optimiser and data; three measurements:

a. hand-written: the method's own model and collator driven by the loop a user would write
   (AdamW, linear warm-up schedule, gradient clipping, nothing else), in one process;
b. harness: :class:`~retrosearch.trainers.harness.loop.WorkerLoop` stepping in one process, the
   code every Ray Train worker runs (step seeds, per-term counts, autocast, scaler, clipping);
c. Ray Train: the whole ``fit`` with one worker; its step time comes from the run's own log
   (elapsed time between logged steps), so Ray and worker start-up, checkpoints and the export
   are left out of the rate and reported apart as the job's wall time.

a and b each run in a fresh process. The first ``warmup`` steps of every run are not timed
(allocator growth, lazy initialisation). Tokens are the non-padding encoder input tokens of the
batches (``attention_mask``) of the batches each run stepped on; c, whose batches stay inside Ray, takes
b's tokens per example (the same seed gives it the same batches).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import tempfile
import time
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from retrosearch.benchmarks.ingest_speed import in_fresh_process
from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.core import cli_options as opt
from retrosearch.core.retrieval.report import write_json
from retrosearch.trainers.finetune.config import FinetuneConfig
from retrosearch.trainers.harness.config import TrainConfig

console = Console()

LABELS = {
    "a_hand_written": "a. hand-written PyTorch loop",
    "b_harness": "b. harness step (WorkerLoop)",
    "c_ray_train": "c. Ray Train fit, 1 worker",
}


def build_method(kind: str, data: Path, model: str, max_length: int) -> Any:
    """The method under test: RetroMAE on a corpus, or fine-tuning on a BEIR training split (no mining)."""
    if kind == "retromae":
        # lazy: keeps torch, transformers out of CLI start-up
        from retrosearch.trainers.retromae import RetroMAEConfig, RetroMAEMethod

        corpus = data / "corpus.jsonl" if (data / "corpus.jsonl").exists() else data
        return RetroMAEMethod(RetroMAEConfig(model=model, corpus=str(corpus), max_length=max_length))
    if kind == "finetune":
        # lazy: keeps torch, faiss out of CLI start-up
        from retrosearch.trainers.finetune.method import FinetuneMethod

        return FinetuneMethod(FinetuneConfig(model=model, collection=data, mine=False, eval_split=None,
                                             passage_max_length=max_length, query_max_length=min(64, max_length)))
    raise ValueError(f"method {kind!r} is not one of retromae, finetune")


#: Precisions of ``--precision``: the same in every run, so the runs stay comparable.
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


def _uses_gpu(device: str) -> bool:
    """Whether ``device`` means CUDA here (``auto`` on a machine with a CUDA GPU)."""
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch  # lazy: keeps torch out of CLI start-up

    return torch.cuda.is_available()


def _summary(step_s: list[float], tokens: list[int], examples: int) -> dict[str, Any]:
    seconds = sum(step_s)
    return {
        "steps": len(step_s), "step_s_median": statistics.median(step_s), "step_s_mean": seconds / len(step_s),
        "tokens_per_s": sum(tokens) / seconds, "examples_per_s": examples * len(step_s) / seconds,
    }


def _synchronize(device: Any) -> None:
    """Wait for the device's queued kernels, so that a step's time is its whole work (CUDA runs ahead)."""
    import torch  # lazy: keeps torch out of CLI start-up

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_written(kind: str, data: Path, model: str, max_length: int, batch: int, steps: int, warmup: int,
                 threads: int, seed: int, *, device: str = "auto", precision: str = "fp32") -> dict[str, Any]:
    """(a) The plain loop: sample a batch, collate, forward, backward, clip, step (under bf16 autocast
    with ``precision="bf16"``)."""
    # lazy: keeps torch, ray, transformers out of CLI start-up
    import torch
    from transformers import get_linear_schedule_with_warmup

    from retrosearch.core.encoder.device import resolve_device
    from retrosearch.trainers.harness.loop import autocast_dtype

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    target = resolve_device(device)
    amp_dtype = autocast_dtype(precision, target)
    method = build_method(kind, data, model, max_length)
    examples = method.load_examples()
    net = method.build_model().to(target).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, (warmup + steps) // 10, warmup + steps)
    rng = np.random.default_rng(seed)
    times, tokens = [], []
    for step in range(warmup + steps):
        indices = rng.choice(len(examples), size=batch, replace=False)
        began = time.perf_counter()
        collated = method.collate([examples[i] for i in indices], [seed + step * batch + k for k in range(batch)])
        inputs = collated.to(target).inputs
        autocast = (torch.autocast(target.type, dtype=amp_dtype) if amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            terms = net(**inputs)
            loss = sum(term.weight * term.total / max(collated.counts[name], 1.0)
                       for name, term in terms.items())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        _synchronize(target)
        if step >= warmup:
            times.append(time.perf_counter() - began)
            tokens.append(collated.input_tokens())
    return _summary(times, tokens, batch)


def harness_step(kind: str, data: Path, model: str, max_length: int, batch: int, steps: int, warmup: int,
                 threads: int, seed: int, *, device: str = "auto", precision: str = "fp32") -> dict[str, Any]:
    """(b) WorkerLoop.train_step in this process (one worker, no Ray)."""
    # lazy: keeps torch, ray out of CLI start-up
    from retrosearch.trainers.harness.loop import WorkerContext, WorkerLoop

    method = build_method(kind, data, model, max_length)
    examples = method.load_examples()
    config = TrainConfig(out=Path(tempfile.gettempdir()) / "unused", steps=warmup + steps, batch_size=batch,
                         threads=threads, seed=seed, precision=precision)
    context = WorkerContext.local(device)
    loop = WorkerLoop(method, config, examples, context)
    times, tokens = [], []
    for step in range(warmup + steps):
        indices = [i for mb in loop.plan.micro_batches(step) for i in mb.indices]
        began = time.perf_counter()
        loop.train_step()
        _synchronize(context.device)
        if step >= warmup:
            times.append(time.perf_counter() - began)
            # Counted outside the timed step, from the same examples the step collated.
            tokens.append(method.collate([examples[i] for i in indices], list(range(len(indices)))).input_tokens())
    return _summary(times, tokens, batch)


def ray_train(kind: str, data: Path, model: str, max_length: int, batch: int, steps: int, warmup: int,
              threads: int, seed: int, tokens_per_example: float, *, device: str = "auto",
              precision: str = "fp32") -> dict[str, Any]:
    """(c) The whole job through Ray Train with one worker; step times from its log."""
    # lazy: keeps torch, ray out of CLI start-up
    from retrosearch.trainers.harness.runner import LOG_FILE, fit

    method = build_method(kind, data, model, max_length)
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(out=Path(tmp) / "model", steps=warmup + steps, batch_size=batch, threads=threads,
                             cpus_per_worker=threads, seed=seed, precision=precision, log_every=1,
                             checkpoint_every=warmup + steps, use_gpu=_uses_gpu(device))
        began = time.perf_counter()
        result = fit(method, config)
        wall = time.perf_counter() - began
        records = [json.loads(line) for line in (result.run_dir / LOG_FILE).read_text().splitlines()]
    elapsed = {r["step"]: r["elapsed_s"] for r in records if "step" in r and "elapsed_s" in r}
    times = [elapsed[s] - elapsed[s - 1] for s in range(warmup + 1, warmup + steps + 1) if s - 1 in elapsed]
    if not times:
        raise RuntimeError(f"the run's log has no step timings: {sorted(elapsed)}")
    out = _summary(times, [round(tokens_per_example * batch)] * len(times), batch)
    out["job_wall_s"] = wall
    return out


def plot_speed(payload: dict[str, Any], path: Path) -> None:
    """Bars of tokens/s per run, the harness's ratio in the title."""
    plt = pyplot()
    names = list(payload["results"])
    rates = [payload["results"][n]["tokens_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    ax.barh([LABELS.get(n, n) for n in names], rates, color=["#8c8c8c", "#1f77b4", "#2ca02c"][: len(names)])
    ax.invert_yaxis()
    ax.set_xlabel("tokens/s (training, forward + backward + update)")
    ratios = ", ".join(f"{k} {v:.2f}x" for k, v in payload["ratios"].items())
    ax.set_title(f"{payload['method']} {payload['model']}, batch {payload['batch_size']}, "
                 f"{payload['max_length']} tokens; median step time {ratios}", fontsize=9)
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate:.0f}", va="center", fontsize=8)
    save(fig, path)


@opt.accept_deprecated
def train_speed(
    corpus: Annotated[Optional[Path], typer.Option(help="Corpus (JSONL or BEIR folder) to pretrain on (retromae)."),
                      *opt.deprecated("--data")] = None,
    collection: Annotated[Optional[Path], typer.Option(help="BEIR folder with a train split (finetune).")] = None,
    method: Annotated[Literal["retromae", "finetune"], typer.Option(help="The trainer timed.")] = "retromae",
    model: opt.Model = None,
    train_batch_size: Annotated[int, typer.Option(help="Examples per optimiser step."),
                                *opt.deprecated("--batch-size")] = 16,
    max_length: Annotated[int, typer.Option(help="Tokens per block (retromae) or per passage (finetune).")] = 128,
    steps: Annotated[int, typer.Option(help="Timed steps per run.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed steps before them.")] = 3,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.", show_default="the machine's cores")] = None,
    skip_ray: Annotated[bool, typer.Option(help="Leave out run c.")] = False,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda; c asks Ray for a GPU "
                                        "when this resolves to CUDA.")] = "auto",
    precision: Annotated[Precision, typer.Option(help="fp32, or bf16 autocast (GPUs) in every run.")] = "fp32",
    json_out: opt.JsonOut = None,
) -> None:
    """Tokens/s of the trainer's step against a hand-written PyTorch loop (same model, batch, length)."""
    model = model or "minilm"
    threads = threads or os.cpu_count() or 1
    batch_size = train_batch_size
    data = collection if method == "finetune" else corpus
    if data is None:
        raise opt.fail(f"--method {method} needs {'--collection' if method == 'finetune' else '--corpus'}")
    args = (method, data, model, max_length, batch_size, steps, warmup, threads, 42)
    on = {"device": device, "precision": precision}
    with opt.user_errors():
        build_method(method, data, model, max_length)  # a bad method or path fails here, before any run
        results = {"a_hand_written": in_fresh_process(functools.partial(hand_written, **on), *args),
                   "b_harness": in_fresh_process(functools.partial(harness_step, **on), *args)}
        if not skip_ray:
            per_example = results["b_harness"]["tokens_per_s"] / results["b_harness"]["examples_per_s"]
            results["c_ray_train"] = ray_train(*args, tokens_per_example=per_example, **on)
    hand = results["a_hand_written"]["step_s_median"]
    ratios = {f"{name.split('_')[0]}/a": r["step_s_median"] / hand for name, r in results.items() if name != "a_hand_written"}
    table = Table(title=f"training speed: {method} {model}, batch {batch_size}, {max_length} tokens, {threads} threads",
                  title_justify="left")
    for column in ("run", "steps", "median step s", "tokens/s", "examples/s"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(LABELS[name], str(r["steps"]), f"{r['step_s_median']:.3f}", f"{r['tokens_per_s']:.0f}",
                      f"{r['examples_per_s']:.2f}")
    console.print(table)
    console.print("step time, median, against a: " + "  ".join(f"{k} = {v:.3f}x" for k, v in ratios.items()))
    if json_out:
        payload = {"method": method, "model": model, "data": str(data), "batch_size": batch_size,
                   "max_length": max_length, "warmup": warmup, "threads": threads, "cpus": os.cpu_count(),
                   "device": device, "precision": precision,
                   "results": results, "ratios": ratios}
        write_json(json_out, payload)
        plot_speed(payload, json_out.with_suffix(".png"))
        console.print(f"wrote {json_out} and {json_out.with_suffix('.png')}")
