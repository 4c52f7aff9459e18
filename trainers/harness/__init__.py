"""The shared Ray Train harness: a method gives examples, a model, a collator and an export.

Plugging in a method::

    class MyMethod(Method):
        name = "mine"
        def load_examples(self) -> Sequence[Example]: ...          # driver
        def build_model(self) -> nn.Module: ...                     # forward(**inputs) -> {term: LossTerm}
        def collate(self, examples, seeds) -> Batch: ...            # Batch(inputs, counts={term: items})
        def export(self, model, out, info) -> None: ...             # rank 0, after the last step

    fit(MyMethod(my_config), TrainConfig(out=Path("model"), steps=1000, workers=2))

Exports are resolved on first use (PEP 562): ``TrainConfig`` alone costs no torch import, so the
``retrosearch`` command starts quickly.
"""

from __future__ import annotations

from retrosearch.core.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "config",
    "PackedTokens": "data", "pack_documents": "data", "read_corpora": "data", "read_texts": "data",
    "StepStats": "loop", "WorkerContext": "loop", "WorkerLoop": "loop",
    "Batch": "method", "LossTerm": "method", "LossTerms": "method", "Method": "method", "RunInfo": "method",
    "Event": "events", "EventType": "events", "RunProgress": "events", "progress": "events",
    "read_events": "events", "summarise": "events",
    "BatchPlan": "plan", "MicroBatch": "plan", "example_seed": "plan",
    "TrainResult": "runner", "fit": "runner", "run_dir": "runner",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
