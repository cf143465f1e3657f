"""Corpora and tables on an object store: an S3 server (moto) on this machine, reached through the same code a
bucket on AWS is (pyarrow's S3 file system for the corpus, LanceDB's object store for the tables)."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.data import load_corpus, sample_dataset_path

BUCKET = "ragtune-test"
DOCS = sample_dataset_path() / "docs"


@pytest.fixture(scope="module")
def s3():
    """The server, a bucket holding the sample's documents (docs/) and the same as a BEIR corpus (beir/), and the
    query string that points pyarrow at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    for path in DOCS.rglob("*.*"):
        client.put_object(Bucket=BUCKET, Key=f"docs/{path.relative_to(DOCS).as_posix()}", Body=path.read_bytes())
    lines = "".join(json.dumps({"_id": d.id, "text": d.text}) + "\n" for d in load_corpus(DOCS).documents)
    client.put_object(Bucket=BUCKET, Key="beir/corpus.jsonl", Body=lines.encode())
    yield {"endpoint": f"http://{host}:{port}", "query": f"?endpoint_override={host}:{port}&scheme=http"}
    server.stop()


@pytest.fixture
def aws(s3, monkeypatch):
    """Credentials and endpoint as a user sets them for LanceDB (its object store reads the environment)."""
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_REGION": "us-east-1", "AWS_ENDPOINT": s3["endpoint"], "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(key, value)
    return s3


def test_a_corpus_in_a_bucket_loads_as_the_local_one(aws):
    here = load_corpus(DOCS)
    there = load_corpus(f"s3://{BUCKET}/docs{aws['query']}")
    assert [(d.id, d.text, d.metadata["title"]) for d in there.documents] == \
        [(d.id, d.text, d.metadata["title"]) for d in here.documents]
    assert there.fingerprint == here.fingerprint and there.source == f"s3://{BUCKET}/docs"  # no options recorded
    assert there.documents[0].metadata["source"].startswith(f"s3://{BUCKET}/docs/")
    streamed = load_corpus(f"s3://{BUCKET}/beir{aws['query']}", stream=True)
    assert [(d.id, d.text) for d in streamed.documents] == [(d.id, d.text) for d in here.documents]
    assert streamed.fingerprint == here.fingerprint


def test_index_from_a_bucket_into_a_bucket_then_search(aws, tmp_path):
    """`ragtune index --corpus s3://... --db s3://...`: the table lands in the bucket, holds what a local build of
    the same documents holds, and `ragtune search` reads it from there."""
    runner = CliRunner()
    args = ["--home", str(tmp_path / "home"), "--set", "chunking.size=128"]
    res = runner.invoke(app, ["index", "--corpus", f"s3://{BUCKET}/docs{aws['query']}", "--db",
                              f"s3://{BUCKET}/lancedb", *args])
    assert res.exit_code == 0, res.output
    local = runner.invoke(app, ["index", "--corpus", str(DOCS), "--db", str(tmp_path / "local"), *args])
    assert local.exit_code == 0, local.output
    import boto3

    client = boto3.client("s3", endpoint_url=aws["endpoint"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="lancedb/")["Contents"]]
    assert any(k.endswith(".lance") for k in keys)
    from ragtune import store

    (name,) = store.table_names(store.connect(f"s3://{BUCKET}/lancedb"))
    remote = store.connect(f"s3://{BUCKET}/lancedb").open_table(name).to_arrow()
    here = store.connect(str(tmp_path / "local")).open_table(name).to_arrow()
    assert remote.equals(here)  # the same table name (corpus and settings) and the same rows

    def search(db: str) -> list[str]:
        res = runner.invoke(app, ["search", "how many vacation days", "--db", db, "-k", "3", *args])
        assert res.exit_code == 0, res.output
        return re.findall(r"^│ \d │ (\S+)", res.output, re.M)

    found = search(f"s3://{BUCKET}/lancedb")
    assert "hr/vacation" in found and found == search(str(tmp_path / "local"))
