"""InfoNCE over each query's positive, its hard negatives and every other passage of the batch.

Inputs
------
==============  ==========================  ====================================================
name            shape                       meaning
==============  ==========================  ====================================================
``queries``     ``[B, d]``                  this worker's query embeddings
``passages``    ``[B * G, d]``              this worker's passages, in groups of ``G``: the
                                            positive of query ``i`` at row ``i * G``, then its
                                            ``G - 1`` hard negatives
``passage_keys``  ``[B * G]`` (optional)   an integer key per passage (a hash of its id)
``positive_keys`` ``[B, K]`` (optional)     the keys of every positive of each query, padded
                                            with ``-1``
==============  ==========================  ====================================================

Each query is scored against every passage (its own group, the other queries' groups, and with
``cross_device`` the groups of every worker), the scores are divided by the temperature, and the
loss is the cross-entropy of picking the query's own positive, averaged over this worker's queries.
When keys are given, any other passage that is also a positive of the query (another query's
positive or negative that happens to be a relevant document here) is left out of the softmax:
counting a relevant document as a negative teaches the model the opposite of the labels.

With ``cross_device`` the passages of all workers are gathered with an autograd-aware all-gather
(:mod:`retrosearch.trainers.finetune.gather`); queries stay local. DDP averages the gradients of
the ``W`` workers, and the gather's backward sums every worker's gradient for a passage back onto
the worker that encoded it, so the result is exactly the gradient of the mean loss over the global
batch: no rescaling by the world size is needed (or correct).

References
----------
- van den Oord, Li and Vinyals, "Representation Learning with Contrastive Predictive Coding",
  arXiv:1807.03748 (InfoNCE).
- Karpukhin et al., "Dense Passage Retrieval for Open-Domain Question Answering", EMNLP 2020
  (in-batch plus hard negatives for retrieval).
- Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022 (:class:`MatryoshkaLoss`;
  sentence-transformers' ``MatryoshkaLoss`` does the same around any of its losses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from retrosearch.trainers.finetune.gather import gather_no_grad, gather_with_grad, rank_and_world


@dataclass
class ContrastiveOutput:
    """The loss and what explains it: the in-batch accuracy and the mean scores of the positive and
    of the hardest other passage."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    positive_score: torch.Tensor
    hardest_negative_score: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Plain floats for logging."""
        return {
            "loss": float(self.loss.detach()),
            "accuracy": float(self.accuracy),
            "positive_score": float(self.positive_score),
            "hardest_negative_score": float(self.hardest_negative_score),
        }


def group_size_of(queries: torch.Tensor, passages: torch.Tensor) -> int:
    """Passages per query; the passage rows must be a whole number of groups."""
    num_queries, num_passages = queries.shape[0], passages.shape[0]
    if num_queries == 0 or num_passages % num_queries:
        raise ValueError(f"{num_passages} passages do not split into groups for {num_queries} queries")
    return num_passages // num_queries


def info_nce(
    scores: torch.Tensor, targets: torch.Tensor, temperature: float, reduction: Literal["mean", "sum"] = "mean"
) -> torch.Tensor:
    """Cross-entropy of ``scores / temperature`` ``[B, N]`` against the positive columns ``targets``."""
    return F.cross_entropy(scores.float() / temperature, targets, reduction=reduction)


def mask_other_positives(
    scores: torch.Tensor, targets: torch.Tensor, passage_keys: torch.Tensor, positive_keys: torch.Tensor
) -> torch.Tensor:
    """``scores`` with -inf wherever a column other than the target is one of the row's positives."""
    keys = passage_keys.to(scores.device)
    positives = positive_keys.to(scores.device)
    is_positive = (keys[None, :, None] == positives[:, None, :]) & (positives[:, None, :] != -1)
    mask = is_positive.any(dim=-1)
    mask[torch.arange(scores.shape[0], device=scores.device), targets] = False
    return scores.masked_fill(mask, float("-inf"))


class InfoNCELoss(nn.Module):
    """Contrastive loss with in-batch and hard negatives, optionally across all workers.

    Args:
        temperature: scores are divided by it (0.05 = the scale 20 of sentence-transformers;
            0.01-0.02 is usual for decoder LLMs).
        cross_device: score every query against the passages of every worker.
        reduction: ``mean`` over this worker's queries, or ``sum`` (for a trainer that divides by
            the number of queries in the global batch itself).
    """

    def __init__(
        self, temperature: float = 0.05, cross_device: bool = False, reduction: Literal["mean", "sum"] = "mean"
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.cross_device = cross_device
        self.reduction = reduction

    def forward(
        self,
        queries: torch.Tensor,
        passages: torch.Tensor,
        passage_keys: torch.Tensor | None = None,
        positive_keys: torch.Tensor | None = None,
    ) -> ContrastiveOutput:
        group = group_size_of(queries, passages)
        offset = 0
        if self.cross_device:
            rank, world = rank_and_world()
            if world > 1:
                passages = gather_with_grad(passages)
                passage_keys = gather_no_grad(passage_keys) if passage_keys is not None else None
                offset = rank * queries.shape[0] * group
        scores = queries.float() @ passages.float().T
        targets = offset + torch.arange(queries.shape[0], device=scores.device) * group
        if passage_keys is not None and positive_keys is not None:
            scores = mask_other_positives(scores, targets, passage_keys, positive_keys)
        loss = info_nce(scores, targets, self.temperature, self.reduction)
        with torch.no_grad():
            rows = torch.arange(queries.shape[0], device=scores.device)
            positive = scores[rows, targets]
            others = scores.clone()
            others[rows, targets] = float("-inf")
            hardest = others.max(dim=1).values if others.shape[1] > 1 else positive.new_full(positive.shape, float("nan"))
            accuracy = (scores.argmax(dim=1) == targets).float().mean()
        return ContrastiveOutput(loss, accuracy, positive.mean(), hardest.mean())


class MatryoshkaLoss(nn.Module):
    """:class:`InfoNCELoss` summed over several leading-dimension prefixes of the same embeddings.

    For each ``d`` in ``dimensions`` the query and passage embeddings are cut to their first ``d``
    dimensions, renormalised (when the encoder emits unit vectors, as the runtime's ``dimensions``
    setting does at search time) and scored by ``base``; the loss is the weighted sum of those
    losses (weights default 1, as in sentence-transformers' ``MatryoshkaLoss``). Trained so, the
    first dimensions carry the most, and vectors cut to any of ``dimensions`` still retrieve well.

    Inputs are :class:`InfoNCELoss`'s; the accuracy and scores reported are those of the widest
    dimension. With ``cross_device`` each prefix's passages are gathered separately (a gather per
    dimension: exact gradients, at the cost of a few small all-gathers).

    Args:
        base: the loss applied at every dimension.
        dimensions: the prefixes, widest first (e.g. ``[384, 256, 128, 64]``).
        weights: one per dimension; default 1 each.
        renormalize: rescale each cut embedding to unit length (for cosine / normalised encoders).
    """

    def __init__(
        self,
        base: InfoNCELoss,
        dimensions: list[int],
        weights: list[float] | None = None,
        renormalize: bool = True,
    ) -> None:
        super().__init__()
        if not dimensions or any(d <= 0 for d in dimensions):
            raise ValueError(f"dimensions must be positive, got {dimensions}")
        weights = weights or [1.0] * len(dimensions)
        if len(weights) != len(dimensions):
            raise ValueError(f"{len(weights)} weights for {len(dimensions)} dimensions")
        self.base = base
        self.dimensions = sorted(dimensions, reverse=True)
        self.weights = [w for _, w in sorted(zip(dimensions, weights), key=lambda pair: -pair[0])]
        self.renormalize = renormalize

    def _cut(self, embeddings: torch.Tensor, dimensions: int) -> torch.Tensor:
        cut = embeddings[:, :dimensions]
        return F.normalize(cut.float(), p=2, dim=-1) if self.renormalize else cut

    def forward(
        self, queries: torch.Tensor, passages: torch.Tensor, *keys: torch.Tensor | None
    ) -> ContrastiveOutput:
        """``base``'s inputs (``keys``: its optional passage and positive keys, passed on as given)."""
        if self.dimensions[0] > queries.shape[1]:
            raise ValueError(f"Matryoshka dimension {self.dimensions[0]} is above the embeddings' "
                             f"{queries.shape[1]}")
        widest, total = None, None
        for dimensions, weight in zip(self.dimensions, self.weights):
            cut_queries, cut_passages = self._cut(queries, dimensions), self._cut(passages, dimensions)
            out = self.base(cut_queries, cut_passages, *keys)
            total = weight * out.loss if total is None else total + weight * out.loss
            widest = widest or out
        return ContrastiveOutput(total, widest.accuracy, widest.positive_score, widest.hardest_negative_score)
