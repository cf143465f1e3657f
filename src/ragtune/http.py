"""One small, careful JSON-over-HTTP helper for hosted backends: timeouts, retries with backoff, clear errors."""

from __future__ import annotations

import time
from typing import Any

from ragtune.errors import BackendError

RETRY_STATUS = {429, 500, 502, 503, 504}


def post_json(
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 0.5,
) -> Any:
    import httpx

    last = ""
    for attempt in range(retries + 1):
        try:
            resp = httpx.post(url, json=payload, headers=headers or {}, timeout=timeout)
        except httpx.TimeoutException:
            last = f"timed out after {timeout:g} s"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status_code < 400:
                try:
                    return resp.json()
                except ValueError:
                    raise BackendError(f"{url}: response is not valid JSON") from None
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            if resp.status_code not in RETRY_STATUS:
                break
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    raise BackendError(f"{url}: request failed ({last})")
