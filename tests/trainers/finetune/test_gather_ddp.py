"""Cross-device negatives under DDP on 2 real Ray Train workers equal one worker on the whole batch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from retrosearch.trainers.finetune.config import FinetuneConfig
from retrosearch.trainers.finetune.data import Example, Passage, passage_key
from retrosearch.trainers.finetune.loss import InfoNCELoss
from retrosearch.trainers.finetune.model import ContrastiveCollator, ContrastiveModel, load_trainable_encoder

WORDS = "gene cancer tumor cells protein mice brain blood flow heat surface layer theory model data method".split()
PER_WORKER = 3
GROUP = 2


def _examples() -> list[Example]:
    """6 queries with a positive and a negative each. Queries 0 and 4 (on different workers) share
    their positive, so each must leave the other's copy out of its softmax across devices."""
    examples = []
    for i in range(2 * PER_WORKER):
        words = WORDS[i:] + WORDS[:i]
        positive = Passage(" ".join(words[:6]), id=f"d{i % 4}")
        negative = Passage(" ".join(reversed(words[3:9])), id=f"n{i}")
        examples.append(Example(" ".join(words[:3]), [positive, negative], [passage_key(positive)]))
    return examples


def _model(path: str, cross_device: bool) -> tuple[ContrastiveModel, ContrastiveCollator]:
    config = FinetuneConfig(model=path, train_file=Path("unused.jsonl"), query_max_length=16, passage_max_length=24)
    trainable = load_trainable_encoder(config)
    # eval(): dropout off, so the two computations see the same network.
    model = ContrastiveModel(trainable.model, InfoNCELoss(temperature=0.05, cross_device=cross_device)).eval()
    return model, ContrastiveCollator(trainable.tokenizer, trainable.spec, 16, 24)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    rank = ray.train.get_context().get_world_rank()
    results = {}
    for cross_device in (True, False):
        model, collator = _model(config["model"], cross_device)
        ddp = ray.train.torch.prepare_model(model)
        batch = collator(_examples()[rank * PER_WORKER : (rank + 1) * PER_WORKER])
        out = ddp(**batch)
        out.loss.backward()
        results[cross_device] = {"loss": out.loss.detach(), "grads": _grads(model), "wrapper": type(ddp).__name__}
    torch.save(results, Path(config["out"]) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def spread_bert(tiny_bert_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with larger random weights: at the usual 0.02 init every text gets nearly the
    same embedding, the loss is flat at log(N) and the gradients are float32 noise."""
    from transformers import AutoModel, AutoTokenizer

    out = tmp_path_factory.mktemp("spread-bert")
    model = AutoModel.from_pretrained(tiny_bert_encoder)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert_encoder).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def two_workers(spread_bert: Path, ray_local, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests package
    out = tmp_path_factory.mktemp("ddp")
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"model": str(spread_bert), "out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="finetune-gather-test", storage_path=str(out / "ray")),
    )
    trainer.fit()
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def test_two_workers_match_one_worker_on_the_global_batch(spread_bert: Path, two_workers: list[dict]) -> None:
    model, collator = _model(str(spread_bert), cross_device=True)
    out = model(**collator(_examples()))
    out.loss.backward()
    reference = _grads(model)

    gathered = [w[True] for w in two_workers]
    assert gathered[0]["wrapper"] == "DistributedDataParallel"
    # DDP averages the workers' gradients; each worker's loss is the mean over its own queries.
    assert torch.stack([w["loss"] for w in gathered]).mean().item() == pytest.approx(out.loss.item(), rel=1e-5)
    assert set(gathered[0]["grads"]) == set(reference)
    for name, grad in reference.items():
        torch.testing.assert_close(gathered[0]["grads"][name], grad, atol=1e-6, rtol=1e-4, msg=name)
        torch.testing.assert_close(gathered[1]["grads"][name], grad, atol=1e-6, rtol=1e-4, msg=name)

    # The shared positive is masked: scoring it as query 0's negative would change the loss.
    unmasked = model.loss.__class__(temperature=0.05)
    with torch.no_grad():
        batch = collator(_examples())
        queries = model.encoder(batch["query_input_ids"], batch["query_attention_mask"])
        passages = model.encoder(batch["passage_input_ids"], batch["passage_attention_mask"])
    assert unmasked(queries, passages).loss.item() != pytest.approx(out.loss.item(), rel=1e-4)

    # Without the gather each worker sees only its own negatives: a different objective.
    local = [w[False] for w in two_workers]
    assert torch.stack([w["loss"] for w in local]).mean().item() != pytest.approx(out.loss.item(), rel=1e-3)
    differs = [not torch.allclose(local[0]["grads"][n], g, atol=1e-6, rtol=1e-3) for n, g in reference.items()]
    assert any(differs)
