"""An all-gather that keeps the autograd graph, for negatives shared across workers.

``torch.distributed.all_gather`` returns tensors detached from the graph. The common workaround
(gather detached copies, then put the local slice back) gives each worker only the gradient of its
*own* loss terms with respect to its passages, and misses the terms in which other workers' queries
scored those passages; implementations then rescale the loss by the world size to approximate it.
:func:`gather_with_grad` instead sums, in its backward, the gradients that every worker computed
for a slice onto the worker that produced it, which is the exact gradient. (PyTorch's own
``torch.distributed.nn.functional.all_gather`` does the same but is deprecated as of 2.13.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, or ``(0, 1)`` outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # Every worker holds a gradient for every slice (its queries scored all passages); the
        # sum over workers of the rows of this worker's slice is the gradient of its passages.
        # all_reduce rather than reduce_scatter: gloo (CPU) has no reduce_scatter.
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


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
    return _GatherWithGrad.apply(tensor)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every worker along dim 0 (for labels and keys; no gradient)."""
    _, world = rank_and_world()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
