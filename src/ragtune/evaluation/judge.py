"""An LLM judge of answers on any OpenAI-compatible endpoint: faithfulness (a verdict per claim) and relevance (1-5).

Judge replies are cached by the hash of (endpoint, model, prompt, input), so rerunning an evaluation makes no calls.
A reply that cannot be parsed into the expected JSON is *unmeasured*: the score is NaN and the query is counted in
``judge_unmeasured``; it is never averaged in as a number. A judge that cannot be reached is unmeasured too.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence

from ragtune.errors import BackendError
from ragtune.generation import chat, load_prompt, number_context
from ragtune.types import Hit

NAN = math.nan


def parse_json_object(text: str) -> dict | None:
    """The first JSON object in a reply (code fences and prose around it allowed), or None."""
    text = re.sub(r"```(?:json)?", "", text)
    start = text.find("{")
    while start != -1:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
            if isinstance(value, dict):
                return value
        except json.JSONDecodeError:
            pass
        start = text.find("{", start + 1)
    return None


def parse_verdicts(text: str, n: int) -> list[bool] | None:
    """``n`` booleans from {"verdicts": [{"statement": i, "supported": bool}, ...]}, or None when malformed."""
    data = parse_json_object(text)
    verdicts = data.get("verdicts") if data else None
    if not isinstance(verdicts, list) or len(verdicts) != n:
        return None
    out = []
    for v in verdicts:
        if not isinstance(v, dict) or not isinstance(v.get("supported"), bool):
            return None
        out.append(v["supported"])
    return out


def parse_score(text: str) -> float | None:
    """A 1-5 score from {"score": n}, scaled to 0-1, or None."""
    data = parse_json_object(text)
    score = data.get("score") if data else None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 5:
        return None
    return (float(score) - 1) / 4


class Judge:
    def __init__(self, config, cache=None):
        self.config, self.cache = config, cache
        self.model = config.backend.partition(":")[2]
        base = config.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.url = base.rstrip("/") + "/chat/completions"
        self.calls = 0  # requests actually sent (cache misses)
        self.faithfulness_prompt, self.faithfulness_version = load_prompt("judge-faithfulness-v1")
        self.relevance_prompt, self.relevance_version = load_prompt("judge-relevance-v1")

    def _ask(self, prompt: str) -> str | None:
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
        try:
            reply = chat(self.url, payload, self.config, self.cache)
        except BackendError:
            return None
        self.calls += not reply.get("cached", False)
        return reply["text"]

    def score(self, question: str, answer_text: str, claims: Sequence[str], hits: Sequence[Hit]) -> dict[str, float]:
        """judge_faithfulness, judge_hallucination, judge_relevance (NaN where unmeasured), judge_unmeasured (0/1)."""
        row = {"judge_faithfulness": NAN, "judge_hallucination": NAN, "judge_relevance": NAN}
        unmeasured = False
        if claims:
            statements = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1))
            reply = self._ask(self.faithfulness_prompt.format(context=number_context(hits), statements=statements))
            verdicts = None if reply is None else parse_verdicts(reply, len(claims))
            if verdicts is None:
                unmeasured = True
            else:
                row["judge_faithfulness"] = sum(verdicts) / len(verdicts)
                row["judge_hallucination"] = float(not all(verdicts))
        reply = self._ask(self.relevance_prompt.format(question=question, answer=answer_text))
        relevance = None if reply is None else parse_score(reply)
        if relevance is None:
            unmeasured = True
        else:
            row["judge_relevance"] = relevance
        row["judge_unmeasured"] = float(unmeasured)
        return row
