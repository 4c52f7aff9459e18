"""Run events: whole lines only, a summary of how far a run got, and the events of a real Ray run."""

from __future__ import annotations

import json

from retrosearch.trainers.harness import TrainConfig, fit, run_dir
from retrosearch.trainers.harness.events import (
    EVENTS_FILE,
    EventType,
    append_event,
    progress,
    read_events,
    summarise,
)
from retrosearch.trainers.retromae import RetroMAEConfig, RetroMAEMethod


def test_a_line_being_written_or_cut_short_is_not_read(tmp_path):
    append_event(tmp_path, EventType.STARTED, 0, steps=4, fingerprint={"a": 1})
    append_event(tmp_path, EventType.PROGRESS, 1, loss=2.5)
    with (tmp_path / EVENTS_FILE).open("a") as handle:
        handle.write('{"type": "checkpoint", "st\n')  # a crash mid-line, then the run goes on
    append_event(tmp_path, EventType.CHECKPOINT, 2, path="/ckpt/2")
    with (tmp_path / EVENTS_FILE).open("a") as handle:
        handle.write('{"type": "progress", "step": 3')  # still being written: no newline yet
    events = read_events(tmp_path)
    assert [(e.type, e.step) for e in events] == [
        (EventType.STARTED, 0), (EventType.PROGRESS, 1), (EventType.CHECKPOINT, 2)
    ]
    assert events[0].details == {"steps": 4, "fingerprint": {"a": 1}}
    assert read_events(tmp_path / "missing") == [] and progress(tmp_path / "missing").state == "new"


def test_progress_follows_attempts_and_resumes(tmp_path):
    append_event(tmp_path, EventType.STARTED, 0, steps=6)
    append_event(tmp_path, EventType.PROGRESS, 2, loss=1.0, eta_s=8.0)
    append_event(tmp_path, EventType.CHECKPOINT, 2, path="/run/checkpoint_2")
    append_event(tmp_path, EventType.FAILED, 3, error="RuntimeError: boom")
    failed = progress(tmp_path)
    assert (failed.state, failed.error, failed.checkpoint_step, failed.eta_s) == (
        "failed", "RuntimeError: boom", 2, None
    )
    seen = len(read_events(tmp_path))
    append_event(tmp_path, EventType.STARTED, 2, steps=6)
    append_event(tmp_path, EventType.RESUMED, 2, checkpoint="/run/checkpoint_2")
    append_event(tmp_path, EventType.PROGRESS, 4, loss=0.5, eta_s=3.0)
    running = progress(tmp_path)
    assert (running.state, running.step, running.resumed_from, running.eta_s) == ("running", 4, 2, 3.0)
    append_event(tmp_path, EventType.FINISHED, 6, metrics={"loss": 0.25}, out="/model")
    done = progress(tmp_path)
    assert (done.state, done.step, done.out, done.metrics, done.error) == (
        "finished", 6, "/model", {"loss": 0.25, "eta_s": 3.0}, None
    )
    # The tail since a point (what the pipeline reads after a rerun) knows that attempt resumed.
    assert summarise(read_events(tmp_path)[seen:]).resumed_from == 2
    assert summarise(read_events(tmp_path)[:seen]).resumed_from is None


def test_a_real_run_writes_its_events_in_order(ray_local, tmp_path, tiny_bert_encoder, small_corpus):
    method = RetroMAEMethod(
        RetroMAEConfig(model=str(tiny_bert_encoder), corpus=str(small_corpus), max_length=64)
    )
    config = TrainConfig(out=tmp_path / "model", steps=4, batch_size=4, checkpoint_every=2, log_every=1)
    result = fit(method, config)
    events = read_events(run_dir(method, config))
    assert events[0].type == EventType.STARTED and events[0].step == 0
    assert events[0].details["fingerprint"] == json.loads(json.dumps(method.fingerprint(), default=str))
    assert events[0].details["steps"] == 4 and events[0].details["world_size"] == 1
    assert events[-1].type == EventType.FINISHED and events[-1].step == 4
    assert events[-1].details["out"] == str(tmp_path / "model")
    assert events[-1].details["metrics"]["step"] == 4
    assert not {EventType.RESUMED, EventType.FAILED} & {e.type for e in events}
    steps = [e.step for e in events if e.type == EventType.PROGRESS]
    assert steps == [1, 2, 3, 4]
    assert all(e.details["tokens_per_s"] > 0 for e in events if e.type == EventType.PROGRESS)
    checkpoints = [e for e in events if e.type == EventType.CHECKPOINT]
    assert [e.step for e in checkpoints] == [2, 4]
    assert checkpoints[-1].details["path"] == result.checkpoint
    for checkpoint in checkpoints:  # Ray registers a checkpoint after the worker logged its step
        logged = next(
            i for i, e in enumerate(events) if e.type == EventType.PROGRESS and e.step == checkpoint.step
        )
        assert events.index(checkpoint) > logged
    summary = progress(run_dir(method, config))
    assert (summary.state, summary.step, summary.checkpoint_step, summary.out) == (
        "finished", 4, 4, str(tmp_path / "model")
    )
    assert summary.metrics["tokens_per_s"] > 0 and summary.metrics["loss"] == result.metrics["loss"]
