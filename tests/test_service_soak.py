"""A soak: 32 clients for 60 s (RAGTUNE_SOAK_SECONDS) against `ragtune serve --workers 2`, valid, invalid and hostile
requests mixed: no 5xx, one audit line per request, and the servers' memory flat (its curve: BENCHMARKS.md)."""

from __future__ import annotations

import os

from soak import soak
from test_service import audit_records, make_home, serving


def test_soak_against_two_workers(tmp_path, workspace, sample):
    seconds = float(os.environ.get("RAGTUNE_SOAK_SECONDS", "60"))
    ws = make_home(tmp_path / "home", workspace.cache.path, sample.documents)
    (tmp_path / "settings.yaml").write_text("rate_limit: 1000000\nglobal_rate_limit: 10000000\n")
    from ragtune.service.keys import KeyStore

    key = KeyStore(ws.home / "keys.sqlite").create("soak")
    with serving(ws, tmp_path / "settings.yaml") as (url, server):
        soak(url, key, server.pid, seconds=10, clients=32, seed=1)  # warm-up: both workers load their models
        before = len(audit_records(ws))
        result = soak(url, key, server.pid, seconds=seconds, clients=32)
    statuses, rss = result["statuses"], [b for _, b in result["rss"] if b]
    print(f"soak: {result['requests']} requests, statuses {statuses}, kinds {result['kinds']}, "
          f"client errors {len(result['failures'])}, RSS MB {[round(b / 2**20) for b in rss]}")
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0 and statuses.get(401, 0) > 0  # it served, too
    records = audit_records(ws)[before:]
    # every request reached the server, including those whose connection it closed after refusing a large body
    assert len(records) == result["requests"], (len(records), result["requests"], result["failures"][:5])
    # after the warm-up, memory must stay flat: the last third of the samples against the first
    third = max(1, len(rss) // 3)
    assert max(rss[-third:]) <= max(rss[:third]) * 1.05 + 30 * 2**20, "server memory grew during the soak"
