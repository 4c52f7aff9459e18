"""Worker placement settings: passed to Ray Train, refused where they cannot be met."""

from __future__ import annotations

import pytest

from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.harness.runner import _check_local_resources


def test_strict_spread_is_refused_on_a_local_ray(tmp_path):
    config = TrainConfig(out=tmp_path / "out", workers=2, batch_size=8, placement_strategy="STRICT_SPREAD")
    with pytest.raises(ValueError, match="STRICT_SPREAD puts each of the 2 workers on its own node"):
        _check_local_resources(config, {"CPU": 2})
    _check_local_resources(config.model_copy(update={"placement_strategy": "SPREAD"}), {"CPU": 2})


def test_unknown_placement_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="PACK"):
        TrainConfig(out=tmp_path / "out", placement_strategy="ANYWHERE")
