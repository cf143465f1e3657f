"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis): valid and invalid requests to
every operation, 5,000 in all; none may be a 5xx, and each leaves exactly one audit line."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from ragtune.service.app import create_app
from ragtune.service.core import QueryService, ServiceSettings
from test_service import audit_records, make_home

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402

# requests per (operation, mode); RAGTUNE_FUZZ_SCALE multiplies them (say 0.1 for a quick local run)
# (a negative path parameter cannot be generated, any text being a valid review id; /health takes no input at all)
PLAN = [("/query", "POST", GenerationMode.POSITIVE, 2600), ("/query", "POST", GenerationMode.NEGATIVE, 2000),
        ("/review/{review_id}", "GET", GenerationMode.POSITIVE, 400)]


def test_fuzzed_requests_never_5xx_and_are_each_audited_once(tmp_path, workspace, sample):
    scale = float(os.environ.get("RAGTUNE_FUZZ_SCALE", "1"))
    ws = make_home(tmp_path / "home", workspace.cache.path, sample.documents)
    service = QueryService(ws, ServiceSettings(rate_limit=100_000, global_rate_limit=1_000_000, cache_size=0))
    key = service.keys.create("fuzzer")
    app = create_app(service)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    before = len(audit_records(ws))
    calls, errors, statuses = 0, [], {}
    for path, method, mode, n in PLAN:
        examples = max(1, int(n * scale))
        done = 0

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=schema[path][method].as_strategy(generation_mode=mode))
        def run(case):
            nonlocal calls, done
            headers = {"authorization": f"Bearer {key}"} if calls % 10 else {}  # one in ten without a key
            response = case.call(headers=headers)
            calls, done = calls + 1, done + 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                errors.append((case.method, case.path, case.body, response.status_code, response.text[:300]))

        run()
        assert done >= min(examples, 50), f"{method} {path} {mode}: only {done} examples generated"
    records = audit_records(ws)[before:]
    print(f"fuzz: {calls} requests, statuses {dict(sorted(statuses.items()))}")
    assert not errors, errors[:5]
    assert calls >= 4500 * scale
    assert len(records) == calls  # exactly one audit line per request
    assert len({r["request_id"] for r in records}) == calls
    assert all(r.get("http_status") for r in records)
