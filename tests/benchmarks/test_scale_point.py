"""`bench scale-point`'s pieces: sentences, resumable shards, the generative model and its check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrosearch.benchmarks.scale_point import (
    MixtureModel,
    compare,
    embed_shards,
    fit_mixture,
    groups_for,
    held_out_check,
    nn_similarities,
    real_texts,
    sentences,
    write_scale_point,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_sentences_split_at_ends_and_keep_abbreviations_and_short_pieces_together():
    text = ("Vitamin D levels were measured, e.g. in serum. The cohort had 300 patients. OK. "
            "Results (Fig. 2) show a rise! Why? Because the dose doubled.")
    assert sentences(text) == [
        "Vitamin D levels were measured, e.g. in serum.",
        "The cohort had 300 patients. OK.",
        "Results (Fig. 2) show a rise! Why?",
        "Because the dose doubled.",
    ]
    assert sentences("Short. A much longer second sentence follows here.") == [
        "Short. A much longer second sentence follows here."]
    assert sentences("") == []


def test_real_texts_hold_passages_their_sentences_and_queries(tmp_path):
    root = tmp_path / "c"
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": "a", "title": "T", "text": "First sentence is here. Second sentence is here too."},
            {"_id": "b", "title": "", "text": "Only one sentence in this passage."}]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "what is here"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t1\n")
    texts = real_texts([root])
    assert [d.id for d in texts["passages"]] == ["a", "b"]
    assert [(d.id, d.text, d.title) for d in texts["sentences"]] == [
        ("a#0", "First sentence is here.", ""), ("a#1", "Second sentence is here too.", "")]
    assert texts["queries"] == ["what is here"]


def test_shards_are_kept_and_a_rerun_embeds_only_the_missing_ones(tmp_path):
    calls: list[int] = []

    def encode(items):  # a stand-in for the encoder: each item's number as a vector
        calls.append(len(items))
        return np.asarray([[float(i), 1.0] for i in items], dtype=np.float32)

    items = list(range(10))
    first = embed_shards(encode, items, tmp_path, "passages", shard=4, progress=lambda _: None)
    assert calls == [4, 4, 2] and first[:, 0].tolist() == items
    (tmp_path / "passages-00001.npy").unlink()  # as if the run had been killed there
    again = embed_shards(encode, items, tmp_path, "passages", shard=4, progress=lambda _: None)
    assert calls == [4, 4, 2, 4] and np.array_equal(again, first)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"passages-0000{i}.npy" for i in range(3)]


def _clustered(n: int = 2000, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 directions in a common cone, each group stretched along its own axes."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim)
    centres = common + 0.7 * rng.standard_normal((20, dim))
    stretch = rng.standard_normal((20, 3, dim)) * 0.3
    groups = rng.integers(20, size=n)
    x = centres[groups] + np.einsum("nr,nrd->nd", rng.standard_normal((n, 3)), stretch[groups])
    x += 0.05 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_mixture_samples_unit_vectors_and_saves(tmp_path):
    real = _clustered()
    model = fit_mixture(real, clusters=20, rank=4)
    assert model.means.shape == (20, 32) and model.bases.shape == (20, 4, 32)
    assert model.weights.sum() == pytest.approx(1.0)
    # each group's directions are orthonormal where the group had members
    g = int(np.argmax(model.weights))
    np.testing.assert_allclose(model.bases[g] @ model.bases[g].T, np.eye(4), atol=1e-4)
    chunks = list(model.sample(1000, seed=3, chunk=300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    sample = np.concatenate(chunks)
    np.testing.assert_allclose(np.linalg.norm(sample, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(np.concatenate(list(model.sample(1000, seed=3, chunk=300))), sample)  # seeded
    model.save(tmp_path / "model.npz")
    loaded = MixtureModel.load(tmp_path / "model.npz")
    assert np.array_equal(next(loaded.sample(50, seed=1)), next(model.sample(50, seed=1)))


def test_nn_similarities_take_the_nearest_other_vector():
    x = np.eye(4, dtype=np.float32)
    x[1] = [0.6, 0.8, 0, 0]
    assert nn_similarities(x, sample=4).tolist() == pytest.approx([0.6, 0.6, 0.0, 0.0])
    duplicates = np.vstack([x, x])
    assert nn_similarities(duplicates, sample=8).tolist() == pytest.approx([1.0] * 8)


def test_generated_neighbourhoods_are_closer_to_real_ones_than_the_pairwise_mix():
    from retrosearch.benchmarks.scale_point import pairwise_mix

    real = _clustered(4000)
    # more groups than the data's 20: k-means then never merges two real groups into one Gaussian
    model = fit_mixture(real[:2000], clusters=40, rank=4)
    generated = next(model.sample(2000, seed=5, chunk=2000))
    others = {"generated": generated, "pairwise mix": pairwise_mix(real[:2000], 2000),
              "real again": real[:2000]}
    check, values = compare(real[2000:], others, sample=2000)
    assert set(values) == {"real", *others} and len(values["real"]) == 2000
    # as close to the held-out real vectors as other real vectors are; the pairwise mix is far off
    assert check["generated"]["ks_distance"] < 2 * check["real again"]["ks_distance"] + 0.02
    assert check["pairwise mix"]["ks_distance"] > 0.5
    assert len(check["real"]["nn_similarity"]) == len(check["quantiles"])


def test_the_check_fits_on_one_half_and_measures_on_the_other():
    real = _clustered(4000)
    check, values = held_out_check(real, rank=4, sample=1500)
    # one half fitted, with as many vectors per group as the full model would have
    assert check["fitted_on"] == {"vectors": 2000, "groups": groups_for(2000), "rank": 4}
    assert groups_for(4000) == 2 * groups_for(2000) and groups_for(4000, clusters=7) == 7
    assert set(values) == {"real", "generated", "pairwise mix", "real again"} and len(values["real"]) == 1500
    assert check["generated"]["ks_distance"] < 2 * check["real again"]["ks_distance"] + 0.03
    assert check["pairwise mix"]["ks_distance"] > 0.5
    # an explicit number of groups is halved for the half the check fits on
    assert held_out_check(real, clusters=40, rank=4, sample=500)[0]["fitted_on"]["groups"] == 20


def test_the_scale_point_holds_the_real_vectors_then_generated_ones(tmp_path):
    real = _clustered(500)
    model = fit_mixture(real, clusters=10, rank=4)
    generated = write_scale_point(real, model, 1200, tmp_path / "vectors.npy", seed=2)
    assert generated == 700
    point = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    assert point.shape == (1200, 32) and point.dtype == np.float32
    assert np.array_equal(point[:500], real)
    np.testing.assert_allclose(np.linalg.norm(point[500:], axis=1), 1.0, atol=1e-5)
    assert not (tmp_path / "vectors.npy.partial").exists()
    assert write_scale_point(real, model, 300, tmp_path / "small.npy") == 0  # fewer asked than real ones


def test_the_rate_is_measured_on_a_slice_and_extrapolated_to_every_text():
    from retrosearch.benchmarks.scale_point import measure_rate

    seen: list[int] = []

    def encode(items):  # a stand-in for the encoder: records what it was given
        seen.append(len(items))
        return np.zeros((len(items), 4), dtype=np.float32)

    texts = {"passages": list(range(1000)), "queries": list(range(30))}
    rate = measure_rate({"passages": encode, "queries": encode}, texts, limit=50)
    assert seen == [8, 50, 8, 30]  # a warm-up batch, then the timed slice of each kind
    assert rate["slice"] == 50 and rate["texts"] == {"passages": 1000, "queries": 30}
    hours = 1000 / rate["texts_per_s"]["passages"] / 3600 + 30 / rate["texts_per_s"]["queries"] / 3600
    assert rate["estimated_hours_for_all"] == pytest.approx(hours, abs=0.01)
