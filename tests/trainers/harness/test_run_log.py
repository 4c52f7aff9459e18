"""The run log: the ``[train]`` lines people read, their records, and the events, from rank 0 only."""

from __future__ import annotations

import json
import re

from retrosearch.trainers.harness.events import EventType, read_events
from retrosearch.trainers.harness.run_log import LOG_FILE, RunLog

METRICS = {"step": 3, "loss": 1.5, "lr": 2e-4, "grad_norm": 0.75, "loss/mlm": 1.5}


def test_rank_0_writes_lines_records_and_events(tmp_path, capsys):
    log = RunLog(tmp_path, rank=0, total_steps=10, batch_size=8)
    log.start(2, {"method": "retromae"}, world_size=1, checkpoint="/run/checkpoint_000000")
    log.count_tokens(640)
    log.step(3, 0.25, METRICS, {"mlm": 1.5})
    log.checkpoint(4, final=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[train] resumed from the checkpoint at step 2"
    assert re.fullmatch(
        r"\[train\] step 3/10 epoch 0\.25 \| loss 1\.5000 \(mlm 1\.5000\) \| lr 2\.00e-04 \| grad 0\.750 \| "
        r"[\d.]+ ex/s \d+ tok/s \| elapsed \d+s eta \d+s",
        lines[1],
    ), lines[1]
    assert lines[2] == "[train] checkpoint at step 4"
    records = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert records[0] == {"message": "resumed from the checkpoint at step 2"}
    assert records[1]["step"] == 3 and records[1]["tokens"] == 640 and records[1]["epoch"] == 0.25
    events = read_events(tmp_path)
    assert [(e.type, e.step) for e in events] == [
        (EventType.STARTED, 2), (EventType.RESUMED, 2), (EventType.PROGRESS, 3)
    ]
    assert events[0].details == {"steps": 10, "fingerprint": {"method": "retromae"}, "world_size": 1}
    assert events[1].details == {"checkpoint": "/run/checkpoint_000000"}
    assert events[2].details["tokens_per_s"] == records[1]["tokens_per_s"] and "eta_s" in events[2].details


def test_other_ranks_and_missing_folders_write_nothing(tmp_path, capsys):
    RunLog(tmp_path, rank=1, total_steps=10, batch_size=8).start(0, {}, world_size=2, checkpoint=None)
    assert capsys.readouterr().out == "" and list(tmp_path.iterdir()) == []
    unseen = RunLog(tmp_path / "on-another-node", rank=0, total_steps=10, batch_size=8)
    unseen.start(0, {}, world_size=2, checkpoint=None)
    unseen.failed(0, RuntimeError("boom"))
    assert not (tmp_path / "on-another-node").exists()
