"""Admission control: a bound on the work a replica holds, in texts and in tokens.

Every text a replica has accepted and not yet answered (being tokenized, waiting in the batcher
or in the forward pass) counts against ``max_queued_texts``, and its token count against
``max_queued_tokens``. A request that would cross either bound is refused at once with
:class:`Overloaded`, which carries a retry hint: how long the replica needs, at the rate it has
recently drained its queue, to make room for that request (at least one second). Waiting is
therefore bounded by the bound divided by the drain rate, and a client past capacity hears so
immediately instead of queueing without end.

A request larger than a bound on its own is admitted when nothing else is held (else it could
never run); the per-request limits (``max_texts``, ``max_chars``) keep such requests finite.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

# Weight of the newest batch in the drain rate's moving average: a few batches make the estimate.
_RATE_WEIGHT = 0.2


class Overloaded(Exception):
    """The replica holds all the work it may; ``retry_after_s`` is when room is expected."""

    def __init__(self, message: str, retry_after_s: int, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.reason = reason


@dataclass(frozen=True)
class QueueStatus:
    """What a replica holds against its bounds (``fill``: the fuller of the two, 0 to 1 or above)."""

    texts: int
    tokens: int
    max_texts: int
    max_tokens: int

    @property
    def fill(self) -> float:
        """Share of the bound in use: the larger of the texts' and the tokens' shares."""
        return max(self.texts / self.max_texts, self.tokens / self.max_tokens)


class QueueBudget:
    """Texts and tokens held against their bounds, and the rate at which they drain; thread-safe.

    The event loop admits (:meth:`admit_texts` before tokenizing, :meth:`admit_tokens` after);
    the consumer thread releases what it encoded (:meth:`release`) and reports each batch's time
    (:meth:`record_drain`).
    """

    def __init__(self, max_texts: int, max_tokens: int) -> None:
        if max_texts < 1 or max_tokens < 1:
            raise ValueError("max_queued_texts and max_queued_tokens must be at least 1")
        self.max_texts = max_texts
        self.max_tokens = max_tokens
        self._texts = 0
        self._tokens = 0
        self._texts_per_s: float | None = None
        self._tokens_per_s: float | None = None
        self._lock = threading.Lock()

    def status(self) -> QueueStatus:
        """Texts and tokens held now, with the bounds."""
        with self._lock:
            return QueueStatus(self._texts, self._tokens, self.max_texts, self.max_tokens)

    def admit_texts(self, count: int) -> None:
        """Hold ``count`` texts of a new request, or raise :class:`Overloaded` (texts bound)."""
        with self._lock:
            if self._texts and self._texts + count > self.max_texts:
                excess = self._texts + count - self.max_texts
                raise Overloaded(
                    f"this replica holds {self._texts} texts, the most it takes is {self.max_texts} "
                    f"(max_queued_texts); retry later", self._retry_after(excess, 0), "texts")
            self._texts += count

    def admit_tokens(self, count: int, tokens: int) -> None:
        """Hold the ``tokens`` of a request whose ``count`` texts :meth:`admit_texts` holds, or give
        those texts back and raise :class:`Overloaded` (tokens bound)."""
        with self._lock:
            if self._tokens and self._tokens + tokens > self.max_tokens:
                self._texts -= count
                excess = self._tokens + tokens - self.max_tokens
                raise Overloaded(
                    f"this replica holds {self._tokens} tokens, the most it takes is {self.max_tokens} "
                    f"(max_queued_tokens); retry later", self._retry_after(0, excess), "tokens")
            self._tokens += tokens

    def release(self, count: int, tokens: int) -> None:
        """Give back texts (and their tokens) that were answered, failed or abandoned."""
        with self._lock:
            self._texts -= count
            self._tokens -= tokens

    def record_drain(self, count: int, tokens: int, seconds: float) -> None:
        """One batch of ``count`` texts and ``tokens`` tokens took ``seconds`` of the consumer's time."""
        if seconds <= 0 or count <= 0:
            return
        with self._lock:
            self._texts_per_s = _average(self._texts_per_s, count / seconds)
            self._tokens_per_s = _average(self._tokens_per_s, tokens / seconds)

    def _retry_after(self, texts: int, tokens: int) -> int:
        """Whole seconds until ``texts`` and ``tokens`` more have drained (at least 1; the lock is held)."""
        seconds = 0.0
        if texts and self._texts_per_s:
            seconds = max(seconds, texts / self._texts_per_s)
        if tokens and self._tokens_per_s:
            seconds = max(seconds, tokens / self._tokens_per_s)
        return max(1, math.ceil(seconds))


def _average(previous: float | None, value: float) -> float:
    return value if previous is None else (1 - _RATE_WEIGHT) * previous + _RATE_WEIGHT * value
