"""A live progress bar for a Ray job: write tasks report rows to a small actor, the driver draws.

Ray Data's own progress output counts blocks per operator; users want rows/s and an ETA for the
whole job, measured where it matters (rows durably written).
"""

from __future__ import annotations

import threading
from typing import Any

import ray
from tqdm.auto import tqdm


@ray.remote(num_cpus=0)
class RowCounter:
    """Counts rows reported by write tasks."""

    def __init__(self) -> None:
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows

    def value(self) -> int:
        return self.rows


class LiveProgress:
    """``with LiveProgress(total) as counter:`` draws a bar while write tasks call ``counter.add``."""

    def __init__(self, total: int, desc: str = "ingest", interval_s: float = 0.5) -> None:
        self.total, self.desc, self.interval_s = total, desc, interval_s
        self.counter: Any = None
        self._stop = threading.Event()

    def __enter__(self) -> Any:
        self.counter = RowCounter.remote()
        self._bar = tqdm(total=self.total, desc=self.desc, unit="doc", dynamic_ncols=True, smoothing=0.1)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self.counter

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._update()

    def _update(self) -> None:
        try:
            done = ray.get(self.counter.value.remote(), timeout=5)
        except Exception:  # the job is shutting down; the final update happens in __exit__
            return
        self._bar.update(done - self._bar.n)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        self._bar.close()
        ray.kill(self.counter)
