"""One registry of backend names for creating and opening indices."""

from __future__ import annotations

import numpy as np
import pytest

from retrosearch.core.config import FaissSettings, Settings
from retrosearch.core.index import BACKENDS, LOAD_BACKENDS, IndexMeta, create_index, load_index, open_index

SETTINGS = Settings(faiss=FaissSettings(ivf_nlist=4, pq_m=4, pq_nbits=4))
FAISS = [name for name in BACKENDS if name.startswith("faiss-")]


def _meta(dim: int = 16) -> IndexMeta:
    return IndexMeta(model_name="m", model_fingerprint="abc", dim=dim, similarity="cosine")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, object]:
    x = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    root = tmp_path_factory.mktemp("indices")
    out = {}
    for name in FAISS:
        index = create_index(name, _meta(), SETTINGS)
        index.add([str(i) for i in range(200)], x)
        index.save(root / name)
        out[name] = root / name
    return out


def test_names_are_the_same_for_create_and_load():
    assert BACKENDS == ("faiss-flat", "faiss-hnsw", "faiss-ivfpq", "faiss-int8", "faiss-int8-hnsw",
                        "faiss-binary", "faiss-binary-hnsw", "opensearch")
    assert set(LOAD_BACKENDS) == {*BACKENDS, "faiss"}


@pytest.mark.parametrize("name", FAISS)
def test_load_index_takes_every_create_name(folders, name):
    loaded = load_index(folders[name], SETTINGS, backend=name)
    assert loaded.meta.backend == name and loaded.count() == 200
    assert load_index(folders[name], SETTINGS, backend="faiss").meta.backend == name  # any kind
    assert load_index(folders[name], SETTINGS).meta.backend == name  # "faiss" is the default
    assert open_index(SETTINGS, folders[name]).meta.backend == name
    assert open_index(SETTINGS, folders[name], backend=name).meta.backend == name
    for other in FAISS:
        if other != name:
            with pytest.raises(ValueError, match=f"holds a {name} index, not {other}"):
                load_index(folders[name], SETTINGS, backend=other)


def test_unknown_names_and_misplaced_arguments_are_clear_errors(folders, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'faiss-lsh'.*faiss-flat, faiss-hnsw"):
        create_index("faiss-lsh", _meta(), SETTINGS)
    with pytest.raises(ValueError, match="unknown backend 'faiss'"):
        create_index("faiss", _meta(), SETTINGS)  # creating needs a kind
    with pytest.raises(ValueError, match="unknown backend 'annoy'.*faiss"):
        load_index(folders["faiss-flat"], SETTINGS, backend="annoy")
    with pytest.raises(ValueError, match="no FAISS index folder given"):
        load_index(None, SETTINGS, backend="faiss-hnsw")
    with pytest.raises(ValueError, match="not a folder"):
        load_index(folders["faiss-flat"], SETTINGS, backend="opensearch")
    with pytest.raises(FileNotFoundError, match="meta.json missing"):
        load_index(tmp_path, SETTINGS, backend="faiss-flat")
    with pytest.raises(ValueError, match="no index given"):
        open_index(SETTINGS)
