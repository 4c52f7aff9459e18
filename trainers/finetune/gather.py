"""An all-gather that keeps the autograd graph, for negatives shared across workers.

``torch.distributed.all_gather`` returns tensors detached from the graph. The common workaround
(gather detached copies, then put the local slice back) gives each worker only the gradient of its
*own* loss terms with respect to its passages, and misses the terms in which other workers' queries
scored those passages; implementations then rescale the loss by the world size to approximate it.
``torch.distributed.nn.functional.all_gather`` instead sums, in its backward, the gradients that
every worker computed for a slice onto the worker that produced it, which is the exact gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, or ``(0, 1)`` outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every worker along dim 0, rank order, gradients flowing back.

    Every worker must pass the same shape (a collective of unequal sizes would hang or corrupt
    the result), so the shapes are compared first and a mismatch is an error naming them.
    """
    rank, world = rank_and_world()
    if world == 1:
        return tensor
    shape = torch.tensor(list(tensor.shape), device=tensor.device, dtype=torch.long)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        seen = [tuple(s.tolist()) for s in shapes]
        raise RuntimeError(f"rank {rank}: cross-device gather needs equal shapes on every worker, got {seen}")
    return torch.cat(dist_fn.all_gather(tensor), dim=0)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every worker along dim 0 (for labels and keys; no gradient)."""
    _, world = rank_and_world()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
