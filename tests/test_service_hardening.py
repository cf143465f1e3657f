"""The query service under attack and faults (issue 14): bounded input, one audit line per request whatever happens,
identities, a broken publication pointer, torn audit lines, secrets."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from typer.testing import CliRunner

from ragtune.cli import app as cli
from ragtune.service.app import MAX_BODY, MAX_DEPTH, Guarded, create_app, json_depth
from ragtune.service.core import QueryService, ServiceSettings
from test_service import Running, audit_records, make_home


@pytest.fixture(scope="module")
def home(tmp_path_factory, workspace, docs):
    return make_home(tmp_path_factory.mktemp("hardening"), workspace.cache.path, docs)


@pytest.fixture(scope="module")
def docs(sample):
    return list(sample.documents)


@pytest.fixture(scope="module")
def served(home):
    service = QueryService(home, ServiceSettings(rate_limit=10_000, global_rate_limit=100_000))
    with Running(service) as running:
        running.key = service.keys.create("tester")
        yield running


def post(served, payload=None, content=None, key=True, **headers):
    if key:
        headers["authorization"] = f"Bearer {served.key}"
    if content is None:
        return served.client.post("/query", json=payload, headers=headers)
    return served.client.post("/query", content=content, headers={"content-type": "application/json", **headers})


def records_since(served, n):
    return audit_records(served.service.workspace)[n:]


# -- bounded input ------------------------------------------------------------------------------------------------


def test_a_chunked_body_is_refused_after_at_most_the_limit_is_read():
    """20 MiB sent in 1 KiB pieces without a Content-Length: 413 once the limit is passed, the rest never read."""
    calls, sent = {"n": 0}, []

    async def receive():
        calls["n"] += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": calls["n"] < 20 * 1024}

    async def send(message):
        sent.append(message)

    class Service:  # only the audit log is touched before the app would run
        class audit:
            records = []

            @classmethod
            def write(cls, record):
                cls.records.append(record)

    async def never(scope, receive, send):
        raise AssertionError("the app must not see an oversized body")

    scope = {"type": "http", "method": "POST", "path": "/query", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(Guarded(never, Service)(scope, receive, send))
    assert sent[0]["status"] == 413 and calls["n"] * 1024 <= MAX_BODY + 1024
    (record,) = Service.audit.records
    assert record["status"] == "blocked" and record["http_status"] == 413
    assert record["body"]["length"] <= 256 and "sha256" in record["body"]  # never the payload itself


def test_oversized_deep_and_malformed_bodies_are_4xx_and_audited_once(served):
    n = len(audit_records(served.service.workspace))
    deep = b'{"question": "hi", "filters": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    cases = [
        (post(served, content=b'{"question": "' + b"a" * (MAX_BODY + 10) + b'"}'), 413, "too large"),
        (post(served, content=deep), 422, f"the limit is {MAX_DEPTH}"),
        (post(served, content=b'{"question": "caf\xe9 \xff"}'), 422, "JSON"),
        (post(served, content=b'{"question": "hi"'), 422, "JSON"),
    ]
    for res, code, reason in cases:
        assert res.status_code == code and reason in res.json()["reason"], res.text[:300]
    new = records_since(served, n)
    assert len(new) == len(cases) and [r["http_status"] for r in new] == [c for _, c, _ in cases]
    assert all(r["body"]["length"] < MAX_BODY * 2 and "prefix" in r["body"] for r in new)
    assert sum(len(json.dumps(r)) for r in new) < 8_000  # refused payloads are kept as digests, not in full


@pytest.mark.parametrize("payload, code, reason", [
    ({"question": "what\ud800 is this"}, 400, "lone surrogate"),
    ({"question": "hidden\u0085line"}, 400, "control characters"),
    ({"question": "csi \u009b31m red"}, 400, "control characters"),
    ({"question": "read \u202eesrever"}, 400, "bidirectional"),
    ({"question": "fine", "filters": {"doc_prefix": 5}}, 422, "filters.doc_prefix: Input should be a valid string"),
    ({"question": "fine", "filters": {"doc_ids": 5}}, 422, "filters.doc_ids: Input should be a valid list"),
    ({"question": "fine", "filters": {"doc_ids": ["ok", 7]}}, 422, "filters.doc_ids.1"),
    ({"question": "fine", "filters": {"everything": True}}, 422, "Extra inputs"),
    ({"question": "fine", "client_id": "web\u202e"}, 422, "client_id"),
    ({"question": ["a", "list"]}, 422, "question: Input should be a valid string"),
])
def test_wrong_types_and_characters_are_4xx_never_500(served, payload, code, reason):
    n = len(audit_records(served.service.workspace))
    res = post(served, content=json.dumps(payload).encode())  # ASCII escapes: httpx cannot encode a lone surrogate
    assert res.status_code == code and reason in res.json()["reason"], res.text[:300]
    (record,) = records_since(served, n)
    assert record["http_status"] == code and record["request_id"] == res.json()["request_id"]
    raw = (served.service.workspace.home / "audit").glob("*.jsonl")
    text = "".join(p.read_text(encoding="utf-8", errors="surrogateescape") for p in raw)
    assert not any(c in text for c in "\u0085\u009b\u202e")  # escaped, never raw


def test_a_filtered_question_answers_within_the_filter(served):
    res = post(served, {"question": "How many vacation days do full-time employees get?",
                        "filters": {"doc_prefix": "hr/"}})
    assert res.status_code == 200 and all(c["doc_id"].startswith("hr/") for c in res.json()["citations"])


def test_json_depth_skips_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{"}]}') == 3 and json_depth(b'"\\\\"[') == 1


# -- identities -----------------------------------------------------------------------------------------------------


def test_keys_are_required_checked_and_revocable(served):
    assert post(served, {"question": "What are the core working hours?"}, key=False).status_code == 401
    bad = post(served, {"question": "What are the core working hours?"}, key=False, authorization="Bearer rt-nope")
    assert bad.status_code == 401 and "invalid or revoked" in bad.json()["reason"]
    keys = served.service.keys
    temp = keys.create("temp")
    ok = served.client.post("/query", json={"question": "What are the core working hours?"},
                            headers={"authorization": f"Bearer {temp}"})
    assert ok.status_code == 200
    keys.revoke("temp")
    gone = served.client.post("/query", json={"question": "What are the core working hours?"},
                              headers={"authorization": f"Bearer {temp}"})
    assert gone.status_code == 401
    records = {r["request_id"]: r for r in audit_records(served.service.workspace)}
    assert records[ok.json()["request_id"]]["identity"] == "temp"
    assert records[gone.json()["request_id"]]["status"] == "unauthorized"


def test_keys_command_creates_lists_and_revokes(tmp_path):
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    made = runner.invoke(cli, ["keys", "create", "web-frontend", *home])
    assert made.exit_code == 0 and made.stdout.startswith("rt-")
    key = made.stdout.split()[0]
    assert key not in (tmp_path / "keys.sqlite").read_bytes().decode("latin-1")  # stored hashed
    listed = runner.invoke(cli, ["keys", "list", *home])
    assert "web-frontend" in listed.output and "active" in listed.output and key not in listed.output
    assert runner.invoke(cli, ["keys", "create", "web-frontend", *home]).exit_code == 2  # one key per name
    assert runner.invoke(cli, ["keys", "create", "bad name!", *home]).exit_code == 2
    assert runner.invoke(cli, ["keys", "revoke", "web-frontend", *home]).exit_code == 0
    assert "revoked" in runner.invoke(cli, ["keys", "list", *home]).output
    assert runner.invoke(cli, ["keys", "revoke", "web-frontend", *home]).exit_code == 2


def test_no_key_and_no_anonymous_mode_says_what_to_do(tmp_path, workspace, docs):
    from fastapi.testclient import TestClient

    ws = make_home(tmp_path / "home", workspace.cache.path, docs)
    with TestClient(create_app(QueryService(ws, ServiceSettings()))) as client:
        res = client.post("/query", json={"question": "What are the core working hours?"})
        assert res.status_code == 401 and "ragtune keys create NAME" in res.json()["reason"]
        assert client.get("/health").status_code == 200  # health needs no key
    with TestClient(create_app(QueryService(ws, ServiceSettings(anonymous=True)))) as client:
        res = client.post("/query", json={"question": "What are the core working hours?"})
        assert res.status_code == 200
    record = next(r for r in audit_records(ws) if r["request_id"] == res.json()["request_id"])
    assert record["identity"].startswith("anonymous@")


def test_a_short_secret_in_a_question_is_scrubbed(served):
    res = post(served, {"question": "My key is sk-abc123 and token hf_abcdefgh12, what is the expense deadline?"})
    assert res.status_code in (200, 202)
    record = next(r for r in audit_records(served.service.workspace) if r["request_id"] == res.json()["request_id"])
    assert "sk-abc123" not in json.dumps(record) and "hf_abcdefgh12" not in json.dumps(record)
    assert record["question"].count("[secret redacted]") == 2


# -- a broken publication pointer -----------------------------------------------------------------------------------


def test_a_damaged_or_dangling_pointer_keeps_the_last_good_version_serving(tmp_path, workspace, docs):
    ws = make_home(tmp_path / "home", workspace.cache.path, docs)
    pointer = ws.home / "published.json"
    good = pointer.read_text()
    service = QueryService(ws, ServiceSettings(anonymous=True))
    with Running(service) as running:
        assert running.ask("What are the core working hours?").status_code == 200
        for broken in ("{not json", json.dumps({**json.loads(good), "version": 9999})):
            pointer.write_text(broken)
            os.utime(pointer, None)
            res = running.ask("How many vacation days do full-time employees get?")
            assert res.status_code == 200 and res.json()["version"]["version"] == json.loads(good)["version"]
            health = running.client.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "degraded"
            assert "still serving the last good publication" in health.json()["problem"]
        pointer.write_text(good)
        os.utime(pointer, None)
        assert running.client.get("/health").json()["status"] == "ok"
    pointer.write_text("{not json")
    fresh = QueryService(ws, ServiceSettings(anonymous=True))
    from ragtune.errors import DataError

    with pytest.raises(DataError, match="damaged publication record"):
        fresh.warm()  # `ragtune serve` refuses to start, with this message
    assert fresh.health()["status"] == "unavailable"


# -- the audit log --------------------------------------------------------------------------------------------------


def test_a_torn_audit_line_is_skipped_with_a_warning(served):
    res = post(served, {"question": "What are the core working hours?"})
    folder = served.service.workspace.home / "audit"
    path = sorted(folder.glob("*.jsonl"))[-1]
    with open(path, "a") as handle:
        handle.write('{"request_id": "torn", "question": "half a rec')  # a crash mid-line
    served.service.audit.write({"request_id": "after", "status": "answered"})
    result = CliRunner().invoke(cli, ["audit", "show", res.json()["request_id"], "--home",
                                      str(served.service.workspace.home)])
    assert result.exit_code == 0, result.output
    assert "damaged audit line, skipped" in result.output and f"{path.name}:" in result.output
    damaged = []
    ids = [r.get("request_id") for r in served.service.audit.records(damaged)]
    assert "after" in ids and "torn" not in ids and len(damaged) == 1


# -- caches that notice damage -------------------------------------------------------------------------------------


def _filled_cache(path, n=3000):
    import numpy as np

    from ragtune.cache import EmbeddingCache, text_hash

    cache = EmbeddingCache(path)
    vectors = np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32)
    cache.put_many("m", [(text_hash(str(i)), v) for i, v in enumerate(vectors)])
    con = cache._conn()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return vectors


@pytest.mark.parametrize("damage", ["truncate half", "overwrite pages"])
def test_a_damaged_embedding_cache_is_quarantined_not_served(tmp_path, damage):
    from ragtune.cache import EmbeddingCache, text_hash

    path = tmp_path / "embeddings.sqlite"
    vectors = _filled_cache(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate half":
        path.write_bytes(data[: len(data) // 2])
    else:
        data[len(data) // 3: len(data) // 3 + 50_000] = b"\x00" * 50_000
        path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="embedding cache .* is damaged"):
        cache = EmbeddingCache(path)
    assert cache.count() == 0  # a fresh file, not a half-read one
    assert list(tmp_path.glob("embeddings.sqlite.damaged-*")), "the damaged file is kept aside for inspection"
    cache.put_many("m", [(text_hash("0"), vectors[0])])
    assert cache.get_many("m", [text_hash("0")])[text_hash("0")].tolist() == vectors[0].tolist()


def test_damage_found_by_a_read_while_in_use_is_quarantined(tmp_path):
    from ragtune.cache import EmbeddingCache, text_hash

    path = tmp_path / "embeddings.sqlite"
    _filled_cache(path)
    cache = EmbeddingCache(path)  # sound when opened
    data = bytearray(path.read_bytes())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)  # damaged under the running process
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="is damaged"):
        found = cache.get_many("m", [text_hash(str(i)) for i in range(3000)])
    assert found == {} and cache.count() == 0


def test_a_damaged_answer_cache_is_replaced(tmp_path):
    from ragtune.service.answer_cache import AnswerCache

    path = tmp_path / "answers.sqlite"
    cache = AnswerCache(10, path)
    for i in range(10):
        cache.put(f"k{i}", {"answer": "x" * 2000})
    cache._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache._conn().close()
    path.write_bytes(path.read_bytes()[:2048] + b"garbage" * 500)
    with pytest.warns(RuntimeWarning, match="answer cache"):
        fresh = AnswerCache(10, path)
    assert fresh.get("k1") is None
    fresh.put("k1", {"answer": "y"})
    assert AnswerCache(10, path).get("k1") == {"answer": "y"}


def test_secrets_never_reach_a_wandb_run(tmp_path):
    """A question carrying a key, a config field naming a secret: the offline W&B run holds neither."""
    import pandas as pd

    from ragtune.experiments.tracking import _log_run
    from wandb_records import read_run

    frame = pd.DataFrame({"question": ["my key is sk-abc123, what now?", "fine"], "ndcg@10": [1.0, 0.5]})
    _log_run(tmp_path, "g", "eval", "secrets", "offline", "ragtune", {"per_query": frame}, {}, [],
             config={"generation": {"api_key": "plain-secret-value"}, "note": "token hf_abcdefgh12"},
             summary={"prompt_tokens": 12, "comment": "Bearer abc.def.ghi"})
    (run_dir,) = tmp_path.glob("wandb/offline-run-*")
    run = read_run(run_dir)  # waits for the run file's tail, so the bytes below are the whole run
    raw = b"".join(p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    for secret in (b"sk-abc123", b"plain-secret-value", b"hf_abcdefgh12", b"abc.def.ghi"):
        assert secret not in raw, secret
    assert run["summary"]["prompt_tokens"] == 12  # a count named like a token stays
