"""The client's view of a cluster: several URLs, credentials from the environment or files it names."""

from __future__ import annotations

import pytest

from retrosearch.core.opensearch.client import OpenSearchUnavailable, credentials, opensearch_urls
from retrosearch.local.opensearch import node_config


def test_several_urls_comma_separated_are_all_kept():
    assert opensearch_urls(" https://a:9200/, https://b:9200 ,https://c:9200") == [
        "https://a:9200", "https://b:9200", "https://c:9200"]


@pytest.mark.parametrize("url, words", [
    ("", "empty"), ("a:9200", "not of the form"), ("http://a:1,https://b:2", "mix http and https")])
def test_bad_urls_are_named(url, words):
    with pytest.raises(OpenSearchUnavailable, match=words):
        opensearch_urls(url)


def test_credentials_come_from_files_the_environment_names(tmp_path, monkeypatch):
    for var in ("USER", "PASSWORD"):
        monkeypatch.delenv(f"RETROSEARCH_OPENSEARCH_{var}", raising=False)
    (tmp_path / "user").write_text("writer\n")
    (tmp_path / "password").write_text("s3cret\n")
    monkeypatch.setenv("RETROSEARCH_OPENSEARCH_USER_FILE", str(tmp_path / "user"))
    monkeypatch.setenv("RETROSEARCH_OPENSEARCH_PASSWORD_FILE", str(tmp_path / "password"))
    assert credentials() == ("writer", "s3cret")
    monkeypatch.setenv("RETROSEARCH_OPENSEARCH_PASSWORD", "direct")  # a value in the environment wins
    assert credentials() == ("writer", "direct")
    monkeypatch.delenv("RETROSEARCH_OPENSEARCH_PASSWORD")
    monkeypatch.setenv("RETROSEARCH_OPENSEARCH_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(OpenSearchUnavailable, match="RETROSEARCH_OPENSEARCH_PASSWORD_FILE=.*missing"):
        credentials()


def test_cluster_node_yml_drops_single_node_discovery_and_writes_lists(tmp_path):
    settings = node_config.ServerSettings(port=9271, cache_dir=tmp_path, extra={
        "discovery.type": None, "discovery.seed_hosts": ["127.0.0.1:9370", "127.0.0.1:9371"]})
    text = node_config.render_opensearch_yml(settings)
    assert "discovery.type" not in text
    assert 'discovery.seed_hosts: ["127.0.0.1:9370", "127.0.0.1:9371"]' in text
