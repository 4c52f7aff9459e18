"""Ship the project's own code to a Ray cluster with a job: ``ray job submit --working-dir DIR``.

A cluster's nodes have the dependencies (the same Python stack as here: torch, ray, faiss, ...),
not necessarily this project or this version of it. :func:`stage` builds the project's wheel and
unpacks its ``retrosearch`` package into a job folder; submitted as the job's ``working_dir``,
that folder is uploaded to the cluster, unpacked on every node that runs part of the job, made
the driver's current directory and put on every worker's ``PYTHONPATH`` ahead of site-packages,
so the job runs the staged code whether or not (and whichever version of) RetroSearch is
installed on the nodes. Inputs the job reads (a corpus, a model folder) can go into the same
folder and be named by relative paths; outputs must go to storage every node sees.

Ray's ``py_modules`` with a ``.whl`` would ``pip install`` the wheel *with* its dependencies into
a fresh target folder (several GB of torch and CUDA wheels per node), hence the unpacked package.

    python -m retrosearch.local.ray_job stage JOBDIR
    ray job submit --address http://HEAD:8265 --working-dir JOBDIR -- \\
        python -m retrosearch.cli ingest --ray-address auto --corpus corpus.jsonl ...
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import retrosearch

PACKAGE = "retrosearch"
# Ray refuses a working_dir above this size (its default upload limit is 500 MiB).
_MAX_BYTES = 500 << 20


def project_root() -> Path:
    """The source tree of the installed ``retrosearch`` (an editable install or a checkout)."""
    root = Path(retrosearch.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"{root} holds no pyproject.toml: staging needs the project's source tree (a checkout "
            "installed with `pip install -e`)"
        )
    return root


def build_wheel(dest: Path, root: Path | None = None) -> Path:
    """Build the project's wheel (no dependencies, no isolated build env: offline) into ``dest``."""
    root = root or project_root()
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dest), str(root)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the wheel of {root} failed:\n{result.stdout}\n{result.stderr}")
    wheels = sorted(dest.glob(f"{PACKAGE}-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip wheel wrote no {PACKAGE} wheel into {dest}")
    return wheels[-1]


def stage(job_dir: Path, root: Path | None = None) -> Path:
    """Put the project's ``retrosearch`` package (as its wheel installs it) into ``job_dir``.

    Returns the staged package folder. An earlier staged copy is replaced; other files in
    ``job_dir`` (inputs of the job) are left alone.
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    target = job_dir / PACKAGE
    with tempfile.TemporaryDirectory(prefix="retrosearch-wheel-") as tmp:
        wheel = build_wheel(Path(tmp), root)
        if target.exists():
            shutil.rmtree(target)
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith(f"{PACKAGE}/")]
            archive.extractall(job_dir, members)
    size = sum(p.stat().st_size for p in job_dir.rglob("*") if p.is_file())
    if size > _MAX_BYTES:
        raise ValueError(f"{job_dir} holds {size >> 20} MiB; Ray uploads a working_dir of at most 500 MiB")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m retrosearch.local.ray_job stage JOBDIR``."""
    parser = argparse.ArgumentParser(prog="ray_job", description="Stage the project's code for `ray job submit`.")
    parser.add_argument("command", choices=["stage"])
    parser.add_argument("job_dir", type=Path)
    args = parser.parse_args(argv)
    package = stage(args.job_dir)
    print(f"staged {package}; submit with: ray job submit --address DASHBOARD --working-dir {args.job_dir} -- "
          "python -m retrosearch.cli COMMAND --ray-address auto ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
