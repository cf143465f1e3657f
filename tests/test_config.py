import pytest
import yaml

from ragtune.config import RagConfig
from ragtune.errors import ConfigError


def test_yaml_round_trip_keeps_config_and_id(tmp_path):
    cfg = RagConfig.from_dict({"chunking": {"strategy": "token", "size": 128, "overlap": 16},
                               "retrieval": {"mode": "hybrid", "fusion": "linear", "weight": 0.4}})
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = RagConfig.from_yaml(path)
    assert again == cfg
    assert again.id == cfg.id
    assert len(cfg.id) == 12 and int(cfg.id, 16) >= 0


def test_id_ignores_runtime_fields_and_changes_with_behaviour():
    base = RagConfig()
    assert RagConfig.from_dict({"name": "x", "embedding": {"batch_size": 7, "device": "cpu", "runtime": "torch"}}).id == base.id
    assert RagConfig.from_dict({"chunking": {"size": 512}}).id != base.id
    assert RagConfig.from_dict({"retrieval": {"mode": "fts"}}).id != base.id


def test_parameters_of_unchosen_options_do_not_change_the_id():
    a = RagConfig.from_dict({"retrieval": {"mode": "vector", "rrf_k": 10, "weight": 0.1}})
    b = RagConfig.from_dict({"retrieval": {"mode": "vector"}})
    assert a.id == b.id and a.retrieval.fusion is None and a.retrieval.rrf_k is None
    lin = RagConfig.from_dict({"retrieval": {"mode": "hybrid", "fusion": "linear", "rrf_k": 5}})
    assert lin.retrieval.rrf_k is None and lin.retrieval.weight == 0.7
    none = RagConfig.from_dict({"rerank": {"model": "none", "depth": 10}})
    assert none.rerank.model is None and none.id == RagConfig().id


def test_index_key_depends_only_on_index_settings():
    a = RagConfig.from_dict({"retrieval": {"mode": "vector"}})
    b = RagConfig.from_dict({"retrieval": {"mode": "hybrid", "top_k": 3}, "rerank": {"model": "cross-encoder"}})
    assert a.index_key("fp") == b.index_key("fp")
    assert a.index_key("fp") != a.index_key("other")
    assert RagConfig.from_dict({"chunking": {"size": 100}}).index_key("fp") != a.index_key("fp")
    # full text: a table without vectors, whatever the embedder; one with vectors serves its text as well
    fts = RagConfig.from_dict({"retrieval": {"mode": "fts"}})
    fts_bge = RagConfig.from_dict({"retrieval": {"mode": "fts"}, "embedding": {"model": "bge-small"}})
    assert fts.index_key("fp") == fts_bge.index_key("fp") != a.index_key("fp")
    assert fts.text_settings == a.text_settings


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"chunking": {"sise": 10}}, "chunking.sise: unknown key"),
        ({"retrievl": {}}, "retrievl: unknown key"),
        ({"chunking": {"strategy": "paragraph"}}, "chunking.strategy"),
        ({"chunking": {"size": -5}}, "chunking.size"),
        ({"chunking": {"size": 64, "overlap": 64}}, "overlap (64) must be smaller than size (64)"),
        ({"retrieval": {"mode": "hybrid", "fusion": "linear", "weight": 1.5}}, "retrieval.weight"),
        ({"embedding": {"model": "word2vec"}}, "unknown embedding model 'word2vec'"),
        ({"rerank": {"model": "colbert-xl"}}, "unknown reranker 'colbert-xl'"),
        ({"evaluation": {"metrics": ["ndcg@10", "bleu"]}}, "unknown metric 'bleu'"),
        ({"evaluation": {"metrics": []}}, "at least one metric"),
    ],
)
def test_invalid_values_name_the_key(data, fragment):
    with pytest.raises(ConfigError) as info:
        RagConfig.from_dict(data, source="my.yaml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("my.yaml")


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        RagConfig.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("chunking: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RagConfig.from_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        RagConfig.from_yaml(listy)


def test_overrides_are_validated():
    cfg = RagConfig().with_overrides({"chunking.size": 512, "retrieval.mode": "fts"})
    assert cfg.chunking.size == 512 and cfg.retrieval.mode == "fts"
    with pytest.raises(ConfigError, match="retrieval.nope: unknown key"):
        RagConfig().with_overrides({"retrieval.nope": 1})
    with pytest.raises(ConfigError, match="unknown section 'chunks'"):
        RagConfig().with_overrides({"chunks.size": 1})


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "experiments" / "configs").glob("*.yaml"))
    assert configs
    ids = {RagConfig.from_yaml(p).id for p in configs}
    assert len(ids) == len(configs)  # no two shipped configs are the same configuration
    for p in configs:
        assert set(yaml.safe_load(p.read_text())) <= set(RagConfig.model_fields)


def test_a_backend_registered_from_outside_is_validated_and_built():
    from ragtune.embedding import make_embedder
    from ragtune.registry import EMBEDDERS

    built = []
    EMBEDDERS.register("test-outside")(lambda config: built.append(config.model) or "an embedder")
    try:
        cfg = RagConfig.from_dict({"embedding": {"model": "test-outside"}})
        assert "test-outside" in EMBEDDERS.names() and make_embedder(cfg.embedding) == "an embedder"
        assert built == ["test-outside"]
    finally:
        EMBEDDERS._exact.pop("test-outside")
    with pytest.raises(ConfigError, match="unknown embedding model 'test-outside'; "
                                          "expected one of bge-small, hashing, minilm"):
        RagConfig.from_dict({"embedding": {"model": "test-outside"}})
