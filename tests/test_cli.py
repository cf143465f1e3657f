import json

import pytest
from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


@pytest.fixture
def home(workspace):
    return ["--home", str(workspace.home)]


def test_eval_prints_metrics_and_writes_outputs(tmp_path, home, sample):
    out = tmp_path / "run"
    result = runner.invoke(app, ["eval", "--dataset", "sample", "--set", "retrieval.mode=fts", "--out", str(out),
                                 "--quiet", *home])
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.output and f"{len(sample.judged())} queries" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml", "metrics.json", "per_query.csv", "per_query.parquet", "run.trec", "slices.csv"]
    slices = (out / "slices.csv").read_text()  # the sample's questions carry a topic
    assert slices.startswith("metric,key,value,queries") and ",topic,people," in slices
    assert json.loads((out / "metrics.json").read_text())["queries"] == len(sample.judged())


def test_search_finds_the_index_of_the_last_eval(tmp_path, home):
    runner.invoke(app, ["eval", "--dataset", "sample", "--quiet", *home])
    result = runner.invoke(app, ["search", "How many vacation days do new employees get?", "--json", "-k", "3", *home])
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.output.splitlines()]
    assert len(hits) == 3 and hits[0]["doc_id"] == "hr/vacation"
    assert [h["rank"] for h in hits] == [1, 2, 3]


def test_search_without_an_index_says_what_to_do(tmp_path):
    result = runner.invoke(app, ["search", "anything", "--home", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert "pass --corpus PATH" in result.output


def test_bad_config_fails_before_any_work(tmp_path, home):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("chunking:\n  sise: 100\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "--dataset", "sample", "--config", str(cfg), "--out", str(out), *home])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "chunking.sise: unknown key" in result.output
    assert not out.exists()
    result = runner.invoke(app, ["eval", "--dataset", "sample", "--set", "chunking.size", *home])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output


def test_malformed_dataset_is_reported_with_file_and_line(tmp_path, home):
    ds = tmp_path / "ds"
    (ds / "qrels").mkdir(parents=True)
    (ds / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n')
    (ds / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (ds / "qrels" / "test.tsv").write_text("q\ta\t1\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "--dataset", str(ds), "--out", str(out), *home])
    assert result.exit_code == 2
    assert "corpus.jsonl:2: not valid JSON" in result.output
    assert not out.exists()


def test_config_command_prints_the_resolved_config_with_its_id():
    from ragtune.config import RagConfig

    result = runner.invoke(app, ["config", "--set", "retrieval.mode=vector"])
    assert result.exit_code == 0
    cfg = RagConfig.from_dict({"retrieval": {"mode": "vector"}})
    assert result.output.startswith(f"# config id: {cfg.id}")


def test_index_command_builds_a_folder_of_documents(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha document mentions zebras.")
    (docs / "b.txt").write_text("The beta document is about giraffes.")
    home = ["--home", str(tmp_path / "home")]
    result = runner.invoke(app, ["index", "--corpus", str(docs), *home])
    assert result.exit_code == 0, result.output
    assert "2 chunks from 2 documents, built" in result.output
    again = runner.invoke(app, ["index", "--corpus", str(docs), *home])
    assert "up to date" in again.output
    found = runner.invoke(app, ["search", "giraffes", "--json", "-k", "1", "--set", "retrieval.mode=fts", *home])
    assert json.loads(found.output)["doc_id"] == "b"


def test_every_command_group_has_the_one_error_handler():
    from ragtune.cli import _App

    groups = [g.typer_instance for g in app.registered_groups]
    assert len(groups) >= 4 and all(isinstance(g, _App) for g in [app, *groups])
