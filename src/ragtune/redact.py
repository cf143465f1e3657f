"""Secrets kept out of every record the project writes (audit log, W&B runs): API-key and token shapes of any length,
and the values of fields whose names say secret."""

from __future__ import annotations

import re

#: API-key and token shapes, of any length: OpenAI-style sk-/pk-/rk- keys, GitHub and Slack tokens, Bearer
#: credentials, AWS access key ids, Hugging Face tokens, W&B keys (40 hex digits), ragtune's own keys (rt-)
_SECRET = re.compile(
    r"\b(?:sk|pk|rk|rt)-[A-Za-z0-9_\-]{4,}|\b(?:ghp|gho|ghs|ghu|xox[abprs])[-_][A-Za-z0-9_\-]{4,}|"
    r"\bBearer\s+[A-Za-z0-9._~+/\-]+=*|\b(?:AKIA|ASIA)[0-9A-Z]{12,}\b|\bhf_[A-Za-z0-9]{8,}\b|\b[0-9a-f]{40}\b",
    re.I)
#: field names whose values are secrets whatever they look like ("prompt_tokens" is a count, not one)
_SECRET_FIELD = re.compile(r"^(?:.*_)?(?:api_?key|secret|password|passwd|authorization|"
                           r"(?:access|auth|refresh|id|bearer)_?token|token)$", re.I)


def scrub(value):
    """Replace API-key and token patterns, recursively, and any value of a key naming a secret."""
    if isinstance(value, str):
        return _SECRET.sub("[secret redacted]", value)
    if isinstance(value, dict):
        return {k: "[secret redacted]" if isinstance(k, str) and _SECRET_FIELD.match(k) else scrub(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
