"""Settings of MLM pretraining (the method's part; the run's part is TrainConfig)."""

from __future__ import annotations

from pydantic import Field

from retrosearch.trainers.retromae.config import MaskedPretrainConfig


class MLMConfig(MaskedPretrainConfig):
    """BERT's objective: predict about ``mask_ratio`` of the tokens (15%, BERT's) from the rest.

    The corpus, its blocks and the masking code are RetroMAE's (:class:`MaskedPretrainConfig`), so
    with the same run settings both read the same blocks in the same order.
    """

    mask_ratio: float = Field(0.15, gt=0, lt=1, description="Share of the tokens masked and predicted.")
