"""The batch plan: the same global batch and the same per-example seeds whatever the worker split."""

from __future__ import annotations

import pytest

from retrosearch.trainers.harness.plan import BatchPlan


@pytest.mark.parametrize(("workers", "accum"), [(1, 2), (2, 1), (2, 2), (4, 1)])
def test_workers_and_micro_batches_partition_the_global_batch(workers, accum):
    single = BatchPlan(num_examples=37, batch_size=8, seed=5)
    for step in (0, 1, 4, 9):  # step 4 straddles the end of the first epoch (37 examples)
        whole = single.micro_batches(step)[0]
        parts = [
            mb
            for rank in range(workers)
            for mb in BatchPlan(37, 8, 5, world_size=workers, rank=rank, grad_accum=accum).micro_batches(step)
        ]
        assert len(parts) == workers * accum and all(
            len(mb.indices) == 8 // (workers * accum) for mb in parts
        )
        assert sum((mb.indices for mb in parts), ()) == whole.indices
        assert sum((mb.seeds for mb in parts), ()) == whole.seeds


def test_epochs_are_permutations_and_seeds_differ():
    plan = BatchPlan(num_examples=12, batch_size=4, seed=0)
    epoch0 = sum((plan.global_batch(s).indices for s in range(3)), ())
    epoch1 = sum((plan.global_batch(s).indices for s in range(3, 6)), ())
    assert sorted(epoch0) == sorted(epoch1) == list(range(12))
    assert epoch0 != epoch1, "each epoch is shuffled anew"
    seeds = sum((plan.global_batch(s).seeds for s in range(6)), ())
    assert len(set(seeds)) == len(seeds), "an example seen twice gets new masks"
    assert BatchPlan(12, 4, seed=0).global_batch(2) == plan.global_batch(2)
    assert BatchPlan(12, 4, seed=1).global_batch(0) != plan.global_batch(0)


def test_invalid_splits_fail_early():
    with pytest.raises(ValueError, match="multiple"):
        BatchPlan(10, batch_size=6, seed=0, world_size=4)
    with pytest.raises(ValueError, match="no training examples"):
        BatchPlan(0, batch_size=4, seed=0)
