"""InfoNCE against a direct computation written out with plain Python arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from retrosearch.trainers.finetune.loss import InfoNCELoss, info_nce


def _direct(queries: torch.Tensor, passages: torch.Tensor, group: int, tau: float, skip=frozenset()) -> float:
    """-log softmax of each query's positive over the passages it may see, averaged; ``skip`` holds
    (query, column) pairs left out of the softmax."""
    total = 0.0
    for i, q in enumerate(queries.tolist()):
        logits = {}
        for j, p in enumerate(passages.tolist()):
            if (i, j) not in skip:
                logits[j] = sum(a * b for a, b in zip(q, p)) / tau
        norm = sum(math.exp(v) for v in logits.values())
        total += -math.log(math.exp(logits[i * group]) / norm)
    return total / len(queries)


def _tensors(batch: int, group: int, dim: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    queries = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen, dtype=torch.float64), dim=-1)
    passages = torch.nn.functional.normalize(torch.randn(batch * group, dim, generator=gen, dtype=torch.float64), dim=-1)
    return queries, passages


@pytest.mark.parametrize(("batch", "group", "tau"), [(3, 3, 0.1), (4, 1, 0.05), (2, 4, 1.0)])
def test_loss_equals_direct_computation(batch: int, group: int, tau: float) -> None:
    queries, passages = _tensors(batch, group)
    out = InfoNCELoss(temperature=tau)(queries, passages)
    assert out.loss.item() == pytest.approx(_direct(queries, passages, group, tau), rel=1e-6)
    summed = InfoNCELoss(temperature=tau, reduction="sum")(queries, passages)
    assert summed.loss.item() == pytest.approx(batch * out.loss.item(), rel=1e-6)


def test_other_positives_are_left_out_of_the_softmax() -> None:
    queries, passages = _tensors(3, 2, seed=1)
    passages[4] = queries[0]  # scored highest by query 0, so counting it as a negative would cost a lot
    # Query 0's second positive is query 2's positive (column 4); query 1 shares nothing.
    passage_keys = torch.tensor([10, 11, 20, 21, 30, 31])
    positive_keys = torch.tensor([[10, 30], [20, -1], [30, -1]])
    out = InfoNCELoss(temperature=0.1)(queries, passages, passage_keys, positive_keys)
    expected = _direct(queries, passages, 2, 0.1, skip={(0, 4)})
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.loss.item() != pytest.approx(_direct(queries, passages, 2, 0.1), rel=1e-2)


def test_gradient_matches_autograd_of_the_direct_formula() -> None:
    queries, passages = _tensors(3, 2, seed=2)
    q1, p1 = queries.clone().requires_grad_(), passages.clone().requires_grad_()
    InfoNCELoss(temperature=0.2)(q1, p1).loss.backward()
    q2, p2 = queries.clone().requires_grad_(), passages.clone().requires_grad_()
    logits = q2 @ p2.T / 0.2
    (-(logits.log_softmax(dim=1)[torch.arange(3), torch.arange(3) * 2]).mean()).backward()
    # The loss scores in float32 whatever the input dtype (bf16 embeddings must not lose the logits'
    # precision), so its gradient agrees with the float64 reference to float32's tolerance: rounding
    # alone differs by ~1e-7, which float64's default tolerance flagged or not by BLAS thread count.
    float32 = {"rtol": 1.3e-6, "atol": 1e-5}
    torch.testing.assert_close(q1.grad, q2.grad, **float32)
    torch.testing.assert_close(p1.grad, p2.grad, **float32)


def test_rejects_passages_that_are_not_whole_groups() -> None:
    queries, passages = _tensors(3, 2)
    with pytest.raises(ValueError, match="do not split into groups"):
        InfoNCELoss()(queries, passages[:5])
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0.0)
    assert info_nce(torch.zeros(2, 4), torch.tensor([0, 1]), 0.5).item() == pytest.approx(math.log(4))


def test_matryoshka_loss_sums_infonce_over_cut_renormalised_embeddings() -> None:
    from retrosearch.trainers.finetune.loss import MatryoshkaLoss

    queries, passages = _tensors(3, 2, dim=8, seed=3)
    loss = MatryoshkaLoss(InfoNCELoss(temperature=0.1), [4, 8, 2], weights=[0.5, 1.0, 2.0])
    assert loss.dimensions == [8, 4, 2] and loss.weights == [1.0, 0.5, 2.0]  # widest first, weights follow

    def cut(x: torch.Tensor, d: int) -> torch.Tensor:
        return torch.nn.functional.normalize(x[:, :d], dim=-1)

    terms = ((8, 1.0), (4, 0.5), (2, 2.0))
    expected = sum(w * _direct(cut(queries, d), cut(passages, d), 2, 0.1) for d, w in terms)
    out = loss(queries, passages)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.accuracy.item() == InfoNCELoss(temperature=0.1)(queries, passages).accuracy.item()
    # without renormalising, the cut vectors keep their (shorter) length
    plain = MatryoshkaLoss(InfoNCELoss(temperature=0.1), [4], renormalize=False)(queries, passages)
    assert plain.loss.item() == pytest.approx(_direct(queries[:, :4], passages[:, :4], 2, 0.1), rel=1e-5)
    with pytest.raises(ValueError, match="dimension 16 is above the embeddings' 8"):
        MatryoshkaLoss(InfoNCELoss(), [16, 4])(queries, passages)
