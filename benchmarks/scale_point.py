"""A large ANN scale point like real embeddings: real vectors, topped up from a model fitted to them.

``bench ann``'s own synthetic point mixes random pairs of one collection's vectors and adds noise;
a mix of two unrelated passages sits between topics, where real vectors seldom are, so its
neighbourhoods are unlike real ones. This module builds the point instead from

1. **real embeddings**, as many as the machine makes in reasonable time: every shared
   collection's passages (title + text), their sentences, and the queries, embedded by the
   encoder in resumable shards (``real/<kind>-NNNNN.npy``: an interrupted run keeps its shards);
2. **a generative model fitted to them** (:class:`MixtureModel`), which fills the point up to
   the size asked for:

   * FAISS k-means splits the real vectors into ``clusters`` groups (topics; a weight each, the
     share of real vectors in it), by default one per :data:`MEMBERS_PER_GROUP` real vectors;
   * within each group, a Gaussian whose covariance is the group's top ``rank`` principal
     directions with their variances (from an SVD of the group's centred members) plus an
     isotropic residual carrying the rest of the group's variance;
   * a sample is drawn from a group picked by weight, then normalised like the encoder's vectors.

   Why it should resemble real data (the check below measures whether it does): the group means
   keep where real vectors lie (their topics, and the common direction all MiniLM vectors share:
   they fill a cone, not the sphere); the
   principal directions keep each topic's own anisotropic spread, so neighbourhoods are as dense
   and as elongated as real ones; the residual keeps the rest of the variance, so generated
   vectors are no closer to their group's centre than real ones. No generated vector copies a
   real one (nothing is sampled near a single training vector).
3. **a check on held-out vectors** (:func:`held_out_check`): a model fitted the same way to one
   half of the real vectors generates a sample, and the distribution of nearest-neighbour cosine
   similarities (each vector's most similar other vector in a sample of the same size) of the other
   half is compared with it, as quantiles and the two-sample Kolmogorov-Smirnov distance; the first
   half itself (how far two real samples are) and ``bench ann``'s pairwise mix are measured the
   same way. Recall of ANN search depends on exactly this: how close and how many the near
   neighbours are.

``retrosearch bench scale-point`` writes ``vectors.npy`` (real vectors first, then generated),
``model.npz``, ``check.json`` and ``check.png``; ``bench ann --scale-vectors`` sweeps it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console

from retrosearch.benchmarks.ann import synthetic
from retrosearch.benchmarks.plots import pyplot, save
from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection
from retrosearch.core.collections.records import Document
from retrosearch.core.config import Settings

KINDS = ("passages", "sentences", "queries")
# A sentence ends at . ! or ? followed by space and an upper-case letter or an opening bracket or
# quote; abbreviations ("e.g. the", "Fig. 2") then stay inside (lower case or a digit follows them).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[\"'])")
MIN_SENTENCE_CHARS = 20


def sentences(text: str, min_chars: int = MIN_SENTENCE_CHARS) -> list[str]:
    """``text`` cut into sentences; a piece shorter than ``min_chars`` joins the one before it."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if pieces and len(piece) < min_chars:
            pieces[-1] += " " + piece
        elif piece:
            pieces.append(piece)
    if len(pieces) > 1 and len(pieces[0]) < min_chars:
        pieces[1] = pieces[0] + " " + pieces[1]
        pieces = pieces[1:]
    return pieces


def real_texts(collections: Sequence[Path]) -> dict[str, list[Document] | list[str]]:
    """Every collection's passages and their sentences (as documents) and its queries (texts).

    A passage of one sentence adds no sentence of its own (it would embed as the passage does
    without its title)."""
    passages: list[Document] = []
    split: list[Document] = []
    queries: list[str] = []
    for root in collections:
        beir = BeirCollection(root)
        for doc in beir.corpus:
            passages.append(doc)
            pieces = sentences(doc.text)
            if len(pieces) > 1:
                split += [Document(f"{doc.id}#{i}", piece) for i, piece in enumerate(pieces)]
        queries += [q.text for q in beir.queries.values()]
    return {"passages": passages, "sentences": split, "queries": queries}


def embed_shards(
    encode: Callable[[Sequence[Any]], np.ndarray], items: Sequence[Any], folder: Path, kind: str,
    shard: int = 4096, progress: Callable[[str], None] = print,
) -> np.ndarray:
    """``encode`` over ``items`` in shards of ``shard``, each saved as ``folder/<kind>-NNNNN.npy``
    once computed: a rerun reads the shards there and embeds only the missing ones. Returns all
    the vectors, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for number, start in enumerate(range(0, len(items), shard)):
        path = folder / f"{kind}-{number:05d}.npy"
        expected = min(shard, len(items) - start)
        if path.exists():
            stored = np.load(path, mmap_mode="r")
            if len(stored) == expected:
                parts.append(stored)
                continue
        started = time.perf_counter()
        vectors = np.ascontiguousarray(encode(items[start : start + expected]), dtype=np.float32)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as handle:
            np.save(handle, vectors)
        partial.rename(path)  # a killed run never leaves a short shard under the final name
        rate = expected / max(time.perf_counter() - started, 1e-9)
        progress(f"{kind}: shard {number} ({start + expected:,}/{len(items):,}) at {rate:.1f} texts/s")
        parts.append(vectors)
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------- model


@dataclass
class MixtureModel:
    """Gaussians around k-means groups of real vectors, each with its own principal directions.

    ``means`` (K, d), ``weights`` (K), ``bases`` (K, r, d) orthonormal rows, ``scales`` (K, r)
    standard deviations along them, ``residual`` (K) the standard deviation per dimension of
    what the directions leave, ``normalize``: whether samples are scaled to unit length.
    """

    means: np.ndarray
    weights: np.ndarray
    bases: np.ndarray
    scales: np.ndarray
    residual: np.ndarray
    normalize: bool = True

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, n: int, seed: int = 0, chunk: int = 65_536) -> Iterator[np.ndarray]:
        """``n`` vectors in chunks of at most ``chunk`` rows (a million never sits in memory twice)."""
        rng = np.random.default_rng(seed)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            groups = rng.choice(len(self.weights), size=m, p=self.weights)
            z = rng.standard_normal((m, self.scales.shape[1]), dtype=np.float32) * self.scales[groups]
            noise = rng.standard_normal((m, self.dim), dtype=np.float32)
            rows = self.means[groups] + noise * self.residual[groups, None]
            for g in np.unique(groups):  # one matrix product per group, not a (rows, rank, d) gather
                picked = groups == g
                rows[picked] += z[picked] @ self.bases[g]
            if self.normalize:
                rows /= np.linalg.norm(rows, axis=1, keepdims=True)
            yield rows.astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, means=self.means, weights=self.weights, bases=self.bases, scales=self.scales,
                 residual=self.residual, normalize=np.asarray(self.normalize))

    @classmethod
    def load(cls, path: Path) -> "MixtureModel":
        data = np.load(path)
        return cls(data["means"], data["weights"], data["bases"], data["scales"], data["residual"],
                   bool(data["normalize"]))


# Real vectors per group of the generative model when the number of groups is not given. Tuned by
# the held-out check on the four shared collections' 82,937 MiniLM vectors (fit on one half, KS
# distance to the other): 160 per group 0.26, 80 per group 0.11, 40 per group 0.053, 20 per group
# 0.066 (k-means then splits real groups too finely); real half against real half: 0.025.
MEMBERS_PER_GROUP = 40


def groups_for(n: int, clusters: int = 0) -> int:
    """The number of groups of a model fitted to ``n`` vectors: ``clusters``, or (0) one per
    :data:`MEMBERS_PER_GROUP` vectors."""
    return max(1, clusters or n // MEMBERS_PER_GROUP)


def fit_mixture(vectors: np.ndarray, clusters: int = 0, rank: int = 32, seed: int = 0,
                normalize: bool = True) -> MixtureModel:
    """The :class:`MixtureModel` of ``vectors``: FAISS k-means groups, then per group an SVD of its
    centred members (the top ``rank`` directions; fewer members than that keep fewer). ``clusters``
    0: one group per :data:`MEMBERS_PER_GROUP` vectors."""
    import faiss  # lazy: keeps faiss out of CLI start-up

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    clusters = max(1, min(groups_for(n, clusters), n // 4))
    kmeans = faiss.Kmeans(d, clusters, niter=20, seed=seed, spherical=normalize, verbose=False)
    kmeans.train(vectors)
    _, assigned = kmeans.index.search(vectors, 1)
    assigned = assigned[:, 0]
    means = np.zeros((clusters, d), dtype=np.float32)
    bases = np.zeros((clusters, rank, d), dtype=np.float32)
    scales = np.zeros((clusters, rank), dtype=np.float32)
    residual = np.zeros(clusters, dtype=np.float32)
    counts = np.bincount(assigned, minlength=clusters)
    for g in range(clusters):
        members = vectors[assigned == g]
        if not len(members):
            continue
        means[g] = members.mean(axis=0)
        centred = members - means[g]
        if len(members) < 2:
            continue
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)
        variances = singular**2 / (len(members) - 1)
        kept = min(rank, len(variances))
        bases[g, :kept] = directions[:kept]
        scales[g, :kept] = np.sqrt(variances[:kept])
        # the rest of the group's variance, spread evenly over the dimensions the directions leave
        rest = max(float(variances[kept:].sum()), 0.0)
        residual[g] = np.sqrt(rest / max(d - kept, 1))
    return MixtureModel(means, (counts / counts.sum()).astype(np.float64), bases, scales, residual, normalize)


# ---------------------------------------------------------------------------------------------- check


def nn_similarities(vectors: np.ndarray, sample: int = 5000, seed: int = 0) -> np.ndarray:
    """Each of ``sample`` random rows' cosine similarity to its nearest other row among those rows."""
    import faiss  # lazy: keeps faiss out of CLI start-up

    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False))
    rows = np.asarray(vectors[picked], dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    scores, positions = index.search(rows, 2)
    # the best hit is the row itself, unless an exact duplicate came first: either way the other one
    own = positions[:, 0] == np.arange(len(rows))
    return np.where(own, scores[:, 1], scores[:, 0]).astype(np.float32)


QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def compare(real: np.ndarray, others: dict[str, np.ndarray], sample: int = 5000,
            seed: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Nearest-neighbour similarity quantiles of ``real`` and of each of ``others`` (samples of the
    same size), with each one's Kolmogorov-Smirnov distance to the real distribution (0: the same);
    and the similarities themselves, by name."""
    from scipy.stats import ks_2samp  # lazy: keeps scipy out of CLI start-up

    values = {"real": nn_similarities(real, sample, seed),
              **{name: nn_similarities(v, sample, seed + 1) for name, v in others.items()}}
    result: dict[str, Any] = {"sample": int(len(values["real"])), "quantiles": list(QUANTILES)}
    for name, found in values.items():
        result[name] = {"nn_similarity": np.quantile(found, QUANTILES).round(4).tolist()}
        if name != "real":
            result[name]["ks_distance"] = round(float(ks_2samp(values["real"], found).statistic), 4)
    return result, values


def held_out_check(real: np.ndarray, clusters: int = 0, rank: int = 32, seed: int = 0, sample: int = 5000,
                   normalize: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`compare` on vectors the model never saw: a model fitted to one half of ``real`` (as
    many vectors per group as the full model has), its samples, the pairwise mix of that half and
    that half itself ("real again": how far two real samples are), each against the other half."""
    order = np.random.default_rng(seed).permutation(len(real))
    fit, held = real[order[: len(real) // 2]], real[order[len(real) // 2 :]]
    per_half = groups_for(len(fit), clusters // 2 if clusters else 0)
    model = fit_mixture(fit, per_half, rank, seed, normalize=normalize)
    sample = min(sample, len(held))
    generated = next(model.sample(sample, seed=seed + 7, chunk=sample))
    others = {"generated": generated, "pairwise mix": pairwise_mix(fit, sample, seed), "real again": fit}
    check, values = compare(held, others, sample, seed)
    check["fitted_on"] = {"vectors": int(len(fit)), "groups": int(len(model.weights)), "rank": rank}
    return check, values


def plot_check(values: dict[str, np.ndarray], path: Path) -> None:
    """Histograms of the nearest-neighbour similarities of each set."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(min(float(v.min()) for v in values.values()), 1.0, 60)
    for name, v in values.items():
        ax.hist(v, bins=bins, histtype="step", density=True, label=name, linewidth=1.4)
    ax.set_xlabel("cosine similarity to the nearest other vector")
    ax.set_ylabel("density")
    ax.set_title("nearest-neighbour similarities")
    ax.legend(fontsize=8)
    save(fig, path)


# ---------------------------------------------------------------------------------------------- building


def write_scale_point(real: np.ndarray, model: MixtureModel, n: int, path: Path, seed: int = 0) -> int:
    """``path``: an ``(n, d)`` float32 ``.npy`` of the real vectors (at most ``n``) then samples of
    ``model``, written in chunks through a memory map; returns how many were generated."""
    from numpy.lib.format import open_memmap  # lazy: only this function writes .npy maps

    kept = min(len(real), n)
    partial = path.with_name(path.name + ".partial")
    out = open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, real.shape[1]))
    out[:kept] = real[:kept]
    row = kept
    for chunk in model.sample(n - kept, seed=seed):
        out[row : row + len(chunk)] = chunk
        row += len(chunk)
    out.flush()
    del out
    partial.rename(path)
    return n - kept


def pairwise_mix(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``bench ann``'s synthetic vectors (mixes of two real ones plus noise), for the comparison."""
    return synthetic(vectors, n, seed=seed)


def measure_rate(encoders: dict[str, Callable[[Sequence[Any]], np.ndarray]],
                 texts: dict[str, Sequence[Any]], limit: int) -> dict[str, Any]:
    """Texts/s of embedding the first ``limit`` texts of each kind (after a warm-up batch), and the
    hours all of them would take at those rates."""
    rates = {}
    for kind, encode in encoders.items():
        items = texts[kind][:limit]
        encode(items[:8])  # loads weights and warms the thread pool; not timed
        started = time.perf_counter()
        encode(items)
        rates[kind] = len(items) / max(time.perf_counter() - started, 1e-9)
    seconds = sum(len(texts[kind]) / rates[kind] for kind in encoders)
    return {"slice": limit, "texts": {kind: len(texts[kind]) for kind in encoders},
            "texts_per_s": {kind: round(rate, 2) for kind, rate in rates.items()},
            "estimated_hours_for_all": round(seconds / 3600, 2)}


@opt.with_settings(opt.ENCODER)
def scale_point_command(
    collection: Annotated[list[Path], typer.Option(help="BEIR folder; repeat for several.")],
    out: Annotated[Path, typer.Option(help="Folder for real/, model.npz, vectors.npy and the check.")],
    scale: Annotated[int, typer.Option(help="Vectors of the scale point (real first, the rest generated).")]
    = 1_000_000,
    kind: Annotated[Optional[list[str]], typer.Option(
        "--kind", help="What is embedded: passages, sentences, queries (repeatable).")] = None,
    limit: Annotated[Optional[int], typer.Option(
        help="Only measure the embedding rate on the first N texts of each kind (writes rate.json).")] = None,
    clusters: Annotated[int, typer.Option("--mixture-clusters", help=(
        f"Groups of the generative model (k-means); 0: one per {MEMBERS_PER_GROUP} real vectors."))] = 0,
    rank: Annotated[int, typer.Option("--mixture-rank",
                                      help="Principal directions per group of the generative model.")] = 32,
    seed: Annotated[int, typer.Option(help="The seed of the model fit and the samples.")] = 0,
    settings: Settings = None,
) -> None:
    """Embed the collections' passages, sentences and queries (resumable), fit the generative model,
    write the scale point and check its nearest-neighbour similarities against the real vectors."""
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder

    console = Console()
    kinds = list(kind or KINDS)
    with opt.user_errors():
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise opt.fail(f"unknown --kind {sorted(unknown)}; choose from {', '.join(KINDS)}")
        texts = real_texts(collection)
        console.print("texts: " + ", ".join(f"{k} {len(texts[k]):,}" for k in kinds))
        encoder = Encoder.load(settings.encoder)
        every = {"passages": encoder.encode_documents, "sentences": encoder.encode_documents,
                 "queries": encoder.encode_queries}
        encoders = {k: every[k] for k in kinds}
        out.mkdir(parents=True, exist_ok=True)
        if limit:
            rate = measure_rate(encoders, texts, limit)
            (out / "rate.json").write_text(json.dumps(rate, indent=2) + "\n")
            console.print(json.dumps(rate, indent=2))
            return
        vectors = np.concatenate([embed_shards(encoders[k], texts[k], out / "real", k, progress=console.print)
                                  for k in kinds])
        check, values = held_out_check(vectors, clusters, rank, seed, normalize=encoder.spec.unit_vectors)
        plot_check(values, out / "check.png")
        model = fit_mixture(vectors, clusters, rank, seed, normalize=encoder.spec.unit_vectors)
        model.save(out / "model.npz")
        generated = write_scale_point(vectors, model, scale, out / "vectors.npy", seed)
        check.update(real_vectors=int(len(vectors)), generated_vectors=generated,
                     texts={k: len(texts[k]) for k in kinds},
                     model={"clusters": int(len(model.weights)), "rank": rank, "seed": seed})
        (out / "check.json").write_text(json.dumps(check, indent=2) + "\n")
    console.print(json.dumps(check, indent=2))
    console.print(f"wrote {out}/vectors.npy ({scale:,} vectors, {generated:,} generated), model.npz, "
                  "check.json, check.png")
