"""Which waiting texts form each batch: token budget, similar lengths together, no starvation."""

from __future__ import annotations

from retrosearch.plugin.serve.scheduling import select_batch


def drain(lengths: list[int], max_texts: int, max_tokens: int) -> list[list[int]]:
    """The batches (as lists of arrival positions) that empty a queue of ``lengths``."""
    waiting = list(range(len(lengths)))
    batches = []
    while waiting:
        chosen = select_batch([lengths[i] for i in waiting], max_texts, max_tokens)
        batches.append([waiting[i] for i in chosen])
        waiting = [p for i, p in enumerate(waiting) if i not in set(chosen)]
    return batches


def test_a_batch_takes_texts_until_their_padded_size_would_pass_the_budget():
    # Budget 64 positions: four texts of 16 tokens (4 x 16 = 64), a fifth would make 80.
    assert drain([16] * 6, max_texts=32, max_tokens=64) == [[0, 1, 2, 3], [4, 5]]
    # The text count still caps a batch of short texts.
    assert drain([2] * 5, max_texts=2, max_tokens=1000) == [[0, 1], [2, 3], [4]]


def test_texts_of_similar_length_go_together():
    lengths = [10, 200, 12, 198, 11, 201]
    # The oldest (10) gathers 11 and 12; a 198 would widen the batch to 4 x 198 > 600.
    # Then 200 opens the next batch with the closest, 201; 198 would make 3 x 201 = 603 > 600.
    assert drain(lengths, max_texts=32, max_tokens=600) == [[0, 2, 4], [1, 5], [3]]


def test_a_text_longer_than_the_budget_goes_alone_and_a_shorter_one_may_still_join():
    assert drain([500, 20, 30], max_texts=8, max_tokens=100) == [[0], [1, 2]]
    # 40 does not fit beside 30 (2 x 40 = 80 > 70), but 5 does (2 x 30 = 60).
    assert select_batch([30, 40, 5], max_texts=8, max_tokens=70) == [0, 2]


def test_an_old_long_text_is_not_starved_by_a_stream_of_short_ones():
    # A long text waits behind a short one; short texts keep arriving after every batch.
    waiting = [("short-0", 8), ("long", 300)]
    served_long_after = None
    for step in range(1, 6):
        chosen = select_batch([n for _, n in waiting], max_texts=16, max_tokens=512)
        names = [waiting[i][0] for i in chosen]
        if "long" in names:
            served_long_after = step
            break
        waiting = [w for i, w in enumerate(waiting) if i not in set(chosen)]
        waiting += [(f"short-{step}-{j}", 8) for j in range(10)]
    # The short texts would always fill a batch by closeness of length, but once the long text is
    # the oldest it opens the next batch: here the second.
    assert served_long_after == 2


def test_nothing_waiting_is_an_empty_batch():
    assert select_batch([], max_texts=4, max_tokens=100) == []
