"""The shared Ray Train harness: a method gives examples, a model, a collator and an export.

Plugging in a method::

    class MyMethod(Method):
        name = "mine"
        def load_examples(self) -> Sequence[Example]: ...          # driver
        def build_model(self) -> nn.Module: ...                     # forward(**inputs) -> {term: LossTerm}
        def collate(self, examples, seeds) -> Batch: ...            # Batch(inputs, counts={term: items})
        def export(self, model, out, info) -> None: ...             # rank 0, after the last step

    fit(MyMethod(my_config), TrainConfig(out=Path("model"), steps=1000, workers=2))
"""

from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.harness.data import PackedTokens, pack_documents, read_texts
from retrosearch.trainers.harness.loop import StepStats, WorkerContext, WorkerLoop
from retrosearch.trainers.harness.method import Batch, LossTerm, LossTerms, Method, RunInfo
from retrosearch.trainers.harness.plan import BatchPlan, MicroBatch, example_seed
from retrosearch.trainers.harness.runner import TrainResult, fit, run_dir

__all__ = [
    "Batch",
    "BatchPlan",
    "LossTerm",
    "LossTerms",
    "Method",
    "MicroBatch",
    "PackedTokens",
    "RunInfo",
    "StepStats",
    "TrainConfig",
    "TrainResult",
    "WorkerContext",
    "WorkerLoop",
    "example_seed",
    "fit",
    "pack_documents",
    "read_texts",
    "run_dir",
]
