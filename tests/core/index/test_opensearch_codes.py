"""The codes of OpenSearch's byte and binary k-NN fields (no OpenSearch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from retrosearch.core.index.opensearch_codes import (
    Int8Codes,
    binary_codes,
    hamming_from_score,
    hamming_similarity,
    pack_floats,
    unpack_floats,
)


def _unit(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_int8_codes_are_signed_bytes_that_decode_close_to_the_vectors():
    docs = _unit(1000)
    codec = Int8Codes.train(docs)
    codes = codec.documents(docs)
    assert codes.dtype == np.int8 and codes.min() == -128 and codes.max() == 127
    # one step of the 255-step grid per dimension at most (half a step, plus rounding)
    assert np.all(np.abs(codec.decode(codes) - docs) <= codec.vdiff / 255 * 0.51 + 1e-6)
    assert Int8Codes(codec.ranges.tolist()).documents(docs).tolist() == codes.tolist()  # as recorded in _meta


def test_int8_query_codes_score_like_the_decoded_vectors():
    docs, queries = _unit(1000), _unit(20, seed=1)
    codec = Int8Codes.train(docs)
    codes = codec.documents(docs)
    q_codes, scale, offset = codec.queries(queries)
    assert q_codes.dtype == np.int8 and np.abs(q_codes).max() == 127
    approx = offset[:, None] + scale[:, None] * (q_codes.astype(np.int32) @ codes.astype(np.int32).T)
    decoded = queries @ codec.decode(codes).T
    # only the query's own rounding separates the two (half a step of 127 per dimension)
    assert np.abs(approx - decoded).max() < 0.02
    exact = queries @ docs.T
    top = np.argsort(-exact, axis=1)[:, :10]
    found = np.argsort(-approx, axis=1)[:, :40]
    assert np.mean([len(set(t) & set(f)) / 10 for t, f in zip(top, found)]) >= 0.9


def test_a_small_first_batch_trains_one_symmetric_range_for_every_dimension():
    docs = _unit(300)
    one = Int8Codes.train(docs[:1])
    bound = 1.5 * np.abs(docs[0]).max()
    np.testing.assert_allclose(one.vmin, -bound, rtol=1e-6)
    np.testing.assert_allclose(one.vdiff, 2 * bound, rtol=1e-6)
    codes = one.documents(docs)
    assert len({row.tobytes() for row in codes}) == 300  # not all clipped to the same code
    inside = np.abs(docs) <= bound  # values beyond the range are clipped to its ends
    assert np.abs(one.decode(codes) - docs)[inside].max() <= 2 * bound / 255 * 0.51 + 1e-6
    many = Int8Codes.train(_unit(1000))
    assert len(set(np.round(many.vdiff, 6))) > 1  # per-dimension ranges


def test_int8_ranges_need_a_minimum_and_a_width_per_dimension():
    with pytest.raises(ValueError, match="minimum and a width"):
        Int8Codes(np.zeros(5))


def test_binary_codes_pack_sign_bits_as_signed_bytes():
    vectors = np.array([[1, -1, 1, -1, -1, -1, -1, 1] + [1] * 8], dtype=np.float32)
    codes = binary_codes(vectors)
    assert codes.dtype == np.int8 and codes.shape == (1, 2)
    assert codes.view(np.uint8).tolist() == [[0b10000101, 0xFF]]  # FAISS packs dimension 0 in bit 0
    assert hamming_from_score(1 / (1 + 3)) == pytest.approx(3)
    assert [hamming_similarity(h, 16) for h in (0, 8, 16)] == [1, 0, -1]


def test_floats_round_trip_through_base64_and_a_wrong_length_is_refused():
    vector = _unit(1)[0]
    text = pack_floats(vector)
    assert isinstance(text, str) and len(text) == (64 * 4 + 2) // 3 * 4
    assert unpack_floats(text, 64).tolist() == vector.tolist()
    with pytest.raises(ValueError, match="has 64 dimensions, expected 32"):
        unpack_floats(text, 32)
