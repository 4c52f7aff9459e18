"""The GPU check: on a machine with an NVIDIA GPU, the GPU tests and the speed benchmarks on the
GPU in one run of a few minutes, written to one JSON and one Markdown report.

    scripts/gpu-check.sh [--data DIR] [--out DIR] [--budget-s 450] [--dry-run] [--only STEP ...]

Steps, each a separate process with its own timeout (cut to what is left of the budget, so one
slow step cannot take the others' time), in this order:

1. ``tests``: the GPU-marked tests (tests/gpu); the FAISS ones only where FAISS has GPU support;
2. ``ingest-fp16`` / ``ingest-bf16``: ``bench ingest`` on the GPU in half precision (raw forward
   vs sentence-transformers vs our Ray ingest with one GPU per embedding actor);
3. ``serve``: ``bench serve`` (p50/p99 and queries/s of the service, the runtime picks the GPU);
4. ``train``: ``bench train`` at a GPU batch size under bf16 autocast;
5. ``faiss-gpu``: a FAISS flat search on the GPU against the CPU (same top-10 checked), or
   "faiss-cpu build: skipped" where FAISS has no GPU support.

Without a GPU (torch sees no CUDA device) the check says so, lists the steps it would run and
exits 0. Nothing here reaches the network: models are the packaged ones, data comes from --data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
STEP_NAMES = ("tests", "ingest-fp16", "ingest-bf16", "serve", "train", "faiss-gpu")


@dataclass
class Step:
    """One measured step: a command, the seconds it may take and the JSON it writes (if any)."""

    name: str
    timeout_s: int
    argv: list[str]
    result: Path | None = None
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The step as the dry run lists it."""
        return f"{self.name} (timeout {self.timeout_s} s): {shlex.join(self.argv)}"


def default_data() -> Path:
    """SciFact in the shared data folder (``RETROSEARCH_DATA`` or ``../shared/data`` beside the checkout)."""
    root = Path(os.environ.get("RETROSEARCH_DATA", REPO.parent / "shared" / "data"))
    return root / "scifact"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The check's options."""
    parser = argparse.ArgumentParser(prog="scripts/gpu-check.sh", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--data", type=Path, default=None,
        help="BEIR collection folder (default: RETROSEARCH_DATA/scifact or ../shared/data/scifact).")
    add("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu",
        help="Folder for gpu_check.json, gpu_check.md and each step's JSON and log.")
    add("--budget-s", type=int, default=450, help="Seconds for all steps together (default 450).")
    add("--model", default="minilm", help="Model of the benchmarks (default: the packaged minilm).")
    add("--ingest-docs", type=int, default=5000, help="Documents of the ingest runs (default 5000).")
    add("--train-batch-size", type=int, default=64, help="Examples per optimiser step of bench train.")
    add("--only", nargs="+", choices=STEP_NAMES, default=None, help="Run only these steps.")
    add("--dry-run", action="store_true", help="List the steps and their commands; run nothing.")
    # The faiss-gpu step runs this module again with this option, in a process of its own.
    add("--faiss-search", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.budget_s < 60:
        parser.error("--budget-s must be at least 60")
    if args.ingest_docs < 1 or args.train_batch_size < 1:
        parser.error("--ingest-docs and --train-batch-size must be at least 1")
    args.data = args.data or default_data()
    return args


def faiss_gpus() -> int:
    """GPUs FAISS can use (0 for the faiss-cpu build)."""
    import faiss  # lazy: keeps faiss out of importing this module

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def plan(args: argparse.Namespace, faiss_has_gpu: bool) -> list[Step]:
    """The steps of this run, in order."""
    cli = [sys.executable, "-m", "retrosearch.cli"]
    out, data = args.out, args.data
    tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/gpu",
             f"--junitxml={out / 'tests.xml'}"]
    tests_note = ""
    if not faiss_has_gpu:
        tests += ["-k", "not faiss"]
        tests_note = "FAISS tests left out: faiss-cpu build"
    steps = [Step("tests", 130, tests, note=tests_note, env={"RETROSEARCH_DATA": str(data.parent)})]
    for dtype, short in (("float16", "fp16"), ("bfloat16", "bf16")):
        steps.append(Step(
            f"ingest-{short}", 75,
            [*cli, "bench", "ingest", "--corpus", str(data / "corpus.jsonl"),
             "--limit", str(args.ingest_docs), "--model", args.model, "--device", "cuda", "--dtype", dtype,
             "--gpus-per-worker", "1",
             "--skip-opensearch", "--json-out", str(out / f"ingest_{short}.json")],
            result=out / f"ingest_{short}.json"))
    steps.append(Step(
        "serve", 100,
        [*cli, "bench", "serve", "--collection", str(data), "--model", args.model, "--concurrency", "1,8,32",
         "--requests", "200", "--soak", "0", "--skip-ray", "--json-out", str(out / "serve.json")],
        result=out / "serve.json"))
    steps.append(Step(
        "train", 80,
        [*cli, "bench", "train", "--corpus", str(data / "corpus.jsonl"), "--model", args.model,
         "--train-batch-size", str(args.train_batch_size), "--max-length", "256", "--steps", "20", "--warmup", "3",
         "--device", "cuda", "--precision", "bf16", "--skip-ray", "--json-out", str(out / "train.json")],
        result=out / "train.json"))
    steps.append(Step(
        "faiss-gpu", 40, [sys.executable, "-m", "retrosearch.benchmarks.gpu_check", "--faiss-search",
                          str(out / "faiss_gpu.json")],
        result=out / "faiss_gpu.json",
        note="" if faiss_has_gpu else "faiss-cpu build: skipped"))
    return [s for s in steps if args.only is None or s.name in args.only]


def faiss_search(path: Path) -> None:
    """The ``faiss-gpu`` step: flat inner-product search of 10k queries over 200k x 384 vectors, GPU
    against CPU; writes seconds of each and the share of equal top-10 ids."""
    import faiss  # lazy: keeps faiss out of importing this module

    rng = np.random.default_rng(0)
    base = rng.standard_normal((200_000, 384), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.choice(len(base), 10_000, replace=False)] + 0.05 * rng.standard_normal((10_000, 384),
                                                                                               dtype=np.float32)
    cpu = faiss.IndexFlatIP(base.shape[1])
    cpu.add(base)
    gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, cpu)
    gpu.search(queries[:100], 10)  # kernels and buffers ready before the timed search
    started = time.perf_counter()
    _, gpu_ids = gpu.search(queries, 10)
    gpu_s = time.perf_counter() - started
    started = time.perf_counter()
    _, cpu_ids = cpu.search(queries, 10)
    cpu_s = time.perf_counter() - started
    same = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(gpu_ids, cpu_ids)]))
    payload = {"vectors": len(base), "dim": base.shape[1], "queries": len(queries), "k": 10,
               "gpu_s": gpu_s, "cpu_s": cpu_s, "gpu_queries_per_s": len(queries) / gpu_s,
               "cpu_queries_per_s": len(queries) / cpu_s, "same_top10": same}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"faiss GPU {payload['gpu_queries_per_s']:.0f} q/s, CPU {payload['cpu_queries_per_s']:.0f} q/s, "
          f"same top-10 {same:.4f}")


def _kill_tree(pid: int) -> None:
    """Kill a step's process group and every process it started: bench serve's servers run in
    sessions of their own, which a group kill alone would leave holding the GPU and their ports."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_step(step: Step, timeout_s: float, log: Path) -> dict[str, Any]:
    """Run one step in its own process group; on timeout it is killed with everything it started."""
    record: dict[str, Any] = {"name": step.name, "command": shlex.join(step.argv),
                              "timeout_s": round(timeout_s), "note": step.note}
    if step.note.endswith("skipped"):
        return {**record, "status": "skipped", "seconds": 0.0}
    started = time.perf_counter()
    with log.open("w") as handle:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **step.env}
        proc = subprocess.Popen(step.argv, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            code = proc.wait()
            status = "timeout"
    record.update(status=status, returncode=code, seconds=round(time.perf_counter() - started, 1),
                  log=log.name, log_tail=log.read_text(errors="replace")[-1500:])
    if step.result is not None and step.result.exists():
        record["result"] = json.loads(step.result.read_text())
    return record


def machine() -> dict[str, Any]:
    """The GPU, driver and library versions of this run."""
    import torch  # lazy: keeps torch out of importing this module

    info: dict[str, Any] = {
        "host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cpus": os.cpu_count(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        smi = subprocess.run(query, capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["nvidia_smi"] = f"unavailable: {exc}"
    info["faiss_gpus"] = faiss_gpus()
    return info


def _figures(record: dict[str, Any]) -> str:
    """One line of the step's main figures for the Markdown report."""
    result, name = record.get("result"), record["name"]
    if name == "tests":
        return record.get("log_tail", "").strip().splitlines()[-1] if record.get("log_tail") else ""
    if not result:
        return record.get("note", "")
    if name.startswith("ingest"):
        rates = ", ".join(f"{k} {v['docs_per_s']:.0f} docs/s" for k, v in result["results"].items())
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in result["ratios"].items())
        return f"{result['docs']} docs: {rates}; {ratios}"
    if name == "serve":
        parts = []
        for run in ("a_raw", "b_naive", "c_service"):
            if run == "a_raw":
                parts.append(f"a p50 {result['results'][run]['p50_ms']:.2f} ms")
                continue
            for level, figures in result["results"].get(run, {}).get("levels", {}).items():
                short = run.split("_")[0]
                parts.append(f"{short}@{level} p50 {figures['p50_ms']:.2f} ms {figures['qps']:.0f} q/s")
        return "; ".join(parts)
    if name == "train":
        return "; ".join(f"{k} {v['tokens_per_s']:.0f} tokens/s" for k, v in result["results"].items())
    if name == "faiss-gpu":
        return (f"GPU {result['gpu_queries_per_s']:.0f} q/s, CPU {result['cpu_queries_per_s']:.0f} q/s, "
                f"same top-10 {result['same_top10']:.4f}")
    return ""


def markdown(report: dict[str, Any]) -> str:
    """The short report: the machine, then one row per step."""
    info = report["machine"]
    lines = [f"# GPU check, {report['finished']}", "",
             f"{', '.join(info['gpus']) or 'no GPU'} (nvidia-smi: {info.get('nvidia_smi', '?')}), "
             f"{info['cpus']} CPUs, "
             f"torch {info['torch']} (CUDA {info['cuda']}), FAISS GPUs: {info['faiss_gpus']}.", "",
             "| step | status | seconds | figures |", "|---|---|---:|---|"]
    for record in report["steps"]:
        figures = _figures(record).replace("|", "/")
        seconds = record.get("seconds", 0)
        lines.append(f"| {record['name']} | {record['status']} | {seconds:.0f} | {figures} |")
    lines += ["", f"Budget {report['budget_s']} s, used {report['seconds']:.0f} s. "
                  "Commands and logs: gpu_check.json."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the check (or list its steps); 0 when every step that ran passed."""
    args = parse_args(argv)
    if args.faiss_search:
        faiss_search(args.faiss_search)
        return 0
    import torch  # lazy: keeps torch out of importing this module

    gpus = torch.cuda.device_count()
    if args.dry_run or gpus == 0:
        if gpus == 0:
            print("no GPU: torch sees no CUDA device; checking the options and listing the steps instead")
        print(f"steps ({args.budget_s} s budget, data {args.data}, results in {args.out}):")
        for number, step in enumerate(plan(args, faiss_has_gpu=True), 1):
            print(f"  {number}. {step.describe()}")
        return 0
    if not (args.data / "corpus.jsonl").exists():
        print(f"{args.data}: no corpus.jsonl (give a BEIR collection with --data)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine()
    gpus_named = ", ".join(info["gpus"])
    print(f"GPU check on {gpus_named}; budget {args.budget_s} s; results in {args.out}", flush=True)
    began = time.perf_counter()
    records = []
    for step in plan(args, faiss_has_gpu=info["faiss_gpus"] > 0):
        left = args.budget_s - (time.perf_counter() - began)
        if left < 10:
            records.append({"name": step.name, "command": shlex.join(step.argv), "status": "not run",
                            "note": "budget spent", "seconds": 0.0})
            print(f"[{step.name}] not run: budget spent", flush=True)
            continue
        print(f"[{step.name}] up to {min(step.timeout_s, left):.0f} s: {step.describe()}", flush=True)
        record = run_step(step, min(step.timeout_s, left), args.out / f"{step.name}.log")
        records.append(record)
        status, seconds = record["status"], record["seconds"]
        print(f"[{step.name}] {status} in {seconds:.0f} s  {_figures(record)}", flush=True)
    report = {"finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "budget_s": args.budget_s,
              "seconds": time.perf_counter() - began, "machine": info, "data": str(args.data),
              "steps": records}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
