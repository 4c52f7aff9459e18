"""Which examples each worker trains on at each step, and the seed of each example's randomness.

The plan is a pure function of ``(seed, number of examples, global batch, step)``: the global
batch of step ``s`` is the same whatever the number of workers, and so is the seed every example
gets (it depends on its place in the global stream, not on the worker). Worker ``r`` of ``W``
takes the ``r``-th contiguous slice, cut into ``grad_accum`` micro-batches. Resuming at step
``s`` needs nothing but ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np


@dataclass(frozen=True)
class MicroBatch:
    """Indices of the examples in one micro-batch and the seed of each."""

    indices: tuple[int, ...]
    seeds: tuple[int, ...]


class BatchPlan:
    """Epoch-wise shuffled global batches, split over workers and micro-batches."""

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        seed: int,
        world_size: int = 1,
        rank: int = 0,
        grad_accum: int = 1,
    ) -> None:
        if num_examples <= 0:
            raise ValueError("no training examples")
        if batch_size % (world_size * grad_accum):
            raise ValueError(f"batch_size {batch_size} is not a multiple of world_size x grad_accum")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        self.grad_accum = grad_accum
        self._cached_epoch = -1
        self._cached_order = np.empty(0, dtype=np.int64)

    def _order(self, epoch: int) -> np.ndarray:
        # One epoch's permutation is reused by every step inside it.
        if self._cached_epoch != epoch:
            self._cached_order = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
            self._cached_epoch = epoch
        return self._cached_order

    def global_positions(self, step: int) -> np.ndarray:
        """Positions in the endless example stream that make up the global batch of ``step``."""
        return np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)

    def global_batch(self, step: int) -> MicroBatch:
        """The whole batch of ``step`` (all workers together), in stream order."""
        positions = self.global_positions(step)
        indices = [int(self._order(int(p // self.num_examples))[p % self.num_examples]) for p in positions]
        seeds = [example_seed(self.seed, int(p)) for p in positions]
        return MicroBatch(tuple(indices), tuple(seeds))

    def epoch(self, step: int) -> float:
        """Epochs completed at the start of ``step``, as a fraction."""
        return step * self.batch_size / self.num_examples

    def micro_batches(self, step: int) -> list[MicroBatch]:
        """This worker's share of the batch of ``step``, as ``grad_accum`` micro-batches."""
        whole = self.global_batch(step)
        share = self.batch_size // self.world_size
        micro = share // self.grad_accum
        start = self.rank * share
        return [
            MicroBatch(whole.indices[a : a + micro], whole.seeds[a : a + micro])
            for a in range(start, start + share, micro)
        ]


def example_seed(seed: int, position: int) -> int:
    """A 63-bit seed for the example at ``position`` of the stream (well mixed, never 0-correlated)."""
    return int(
        np.random.SeedSequence([seed, position]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1
    )
