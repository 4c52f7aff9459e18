"""Which waiting texts form the next batch: a token budget, similar lengths together, oldest first.

A batch is padded to its longest text, so it costs ``texts x longest`` positions; the budget
(``max_batch_tokens``) bounds that, as other embedding servers do, so a few long texts make a
small batch and many short ones a large batch of about the same cost. Within the budget the
batch takes texts whose lengths are closest to its first text's, which keeps padding low.

No text starves: the oldest waiting text always opens the next batch (alone if it is longer than
the budget), so a text is in a batch at the latest once every text that arrived before it has
been, however many shorter texts keep arriving after it.
"""

from __future__ import annotations

from collections.abc import Sequence


def select_batch(lengths: Sequence[int], max_texts: int, max_tokens: int) -> list[int]:
    """Positions (in ``lengths``, oldest first) of the texts of the next batch, in ascending order.

    ``lengths`` are the token counts of the waiting texts in arrival order. The oldest opens the
    batch; the others join by closeness of length to it (ties: the older first) while the batch
    holds at most ``max_texts`` texts and ``texts x longest <= max_tokens``; a text that would
    break the budget is passed over for the next closest, which may still fit.
    """
    if not lengths:
        return []
    anchor = lengths[0]
    chosen, width = [0], anchor
    others = sorted(range(1, len(lengths)), key=lambda i: (abs(lengths[i] - anchor), i))
    for i in others:
        if len(chosen) >= max_texts:
            break
        wider = max(width, lengths[i])
        if wider * (len(chosen) + 1) > max_tokens:
            continue
        chosen.append(i)
        width = wider
    return sorted(chosen)
