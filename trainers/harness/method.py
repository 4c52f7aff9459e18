"""What a training method hands the harness: examples, a model, a collator and an export.

The contract that makes runs exact across worker counts: a collator reports, per loss term, how
many items (tokens, examples) the term sums over, and the model returns *sums*, not means. The
harness divides each sum by the term's count over the whole global batch, so a token weighs the
same whether it sat on worker 0 or 1, in the first or the last micro-batch.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn
from transformers import AutoTokenizer

from retrosearch.core.encoder import resolve_model_path


@dataclass
class Batch:
    """One micro-batch: the model's keyword inputs and, per loss term, the items it sums over."""

    inputs: dict[str, torch.Tensor]
    counts: dict[str, float]
    examples: int = 0
    tokens: int | None = None  # tokens the model reads, for a batch without an attention mask

    def input_tokens(self) -> int:
        """Non-padding tokens the model reads: ``tokens`` when the collator set it, else the sum of every
        2-D ``*attention_mask`` input (queries and passages alike). What tokens/s counts."""
        if self.tokens is not None:
            return self.tokens
        return sum(int(v.sum()) for k, v in self.inputs.items() if k.endswith("attention_mask") and v.dim() == 2)

    def to(self, device: torch.device) -> "Batch":
        """The same batch with every tensor on ``device``."""
        moved = {k: v.to(device, non_blocking=True) for k, v in self.inputs.items()}
        return Batch(moved, dict(self.counts), self.examples, self.tokens)


@dataclass
class LossTerm:
    """A summed loss over ``Batch.counts[name]`` items, entering the objective with ``weight``."""

    total: torch.Tensor
    weight: float = 1.0


LossTerms = Mapping[str, LossTerm]


@dataclass
class RunInfo:
    """What the harness knows about the run when it asks the method to export."""

    step: int
    steps: int
    workers: int
    batch_size: int
    seed: int
    last_metrics: dict[str, float] = field(default_factory=dict)


class Method(ABC):
    """A training method. Instances are pickled to every Ray worker, so keep them light.

    Subclasses hold their typed settings in ``config`` (a pydantic model); heavy objects
    (tokenizers, models) are built lazily on whichever process needs them.
    """

    name: ClassVar[str]

    def __init__(self, config: BaseModel) -> None:
        self.config = config

    @abstractmethod
    def load_examples(self) -> Sequence[Any]:
        """Driver side: the training examples (indexable, picklable; shipped once to the workers)."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """Worker side: a module whose ``forward(**batch.inputs)`` returns :data:`LossTerms`."""

    @abstractmethod
    def collate(self, examples: Sequence[Any], seeds: Sequence[int]) -> Batch:
        """Turn examples into a batch; all randomness of example ``i`` must come from ``seeds[i]``."""

    @abstractmethod
    def export(self, model: nn.Module, out: Path, info: RunInfo) -> None:
        """Rank 0, after the last step: write the trained model as a loadable folder."""

    def fingerprint(self) -> dict[str, Any]:
        """Settings that must not change when a run resumes from a checkpoint."""
        return {"method": self.name, **self.config.model_dump(mode="json")}


class CheckpointMethod(Method):
    """A method that starts from the checkpoint ``config.model`` and tokenizes with its tokenizer.

    The tokenizer and the collator are built once per process and never pickled: workers rebuild
    them from the model folder, so only the settings travel.
    """

    def __init__(self, config: BaseModel) -> None:
        super().__init__(config)
        self._tokenizer: Any = None
        self._collator: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tokenizer": None, "_collator": None}

    @property
    def model_path(self) -> Path:
        """The local folder of the starting checkpoint."""
        return resolve_model_path(self.config.model)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer :meth:`load_tokenizer` builds (once per process)."""
        if self._tokenizer is None:
            self._tokenizer = self.load_tokenizer()
        return self._tokenizer

    def load_tokenizer(self) -> Any:
        """The starting checkpoint's tokenizer; methods that add tokens extend it."""
        return AutoTokenizer.from_pretrained(str(self.model_path))

    @abstractmethod
    def build_collator(self) -> Callable[[Sequence[Any], Sequence[int]], Batch]:
        """The collator :meth:`collate` uses (built once per process)."""

    def provenance(self, info: RunInfo, **fields: Any) -> dict[str, Any]:
        """What an exported folder records about its run: base model, corpus, run shape, the
        method's own ``fields``, the last losses and when it was trained."""
        cfg = self.config
        return {
            "base_model": cfg.model,
            "corpus": str(cfg.corpus) if isinstance(cfg.corpus, (str, Path)) else list(map(str, cfg.corpus)),
            "steps": info.step,
            "batch_size": info.batch_size,
            "workers": info.workers,
            "seed": info.seed,
            "max_length": cfg.max_length,
            **fields,
            "final_loss": {k: round(v, 5) for k, v in info.last_metrics.items() if k.startswith("loss")},
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }

    def collate(self, examples: Sequence[Any], seeds: Sequence[int]) -> Batch:
        """A batch from :meth:`build_collator`'s collator."""
        if self._collator is None:
            self._collator = self.build_collator()
        return self._collator(examples, seeds)
