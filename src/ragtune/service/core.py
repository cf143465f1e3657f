"""QueryService: a question in, an answer with citations out, through the published table and the configuration it
was published with. Every request, answered or not, leaves one audit record.

Order of a request: validate the question -> rate limit -> injection check on the question -> cache -> retrieve
-> injection check on every chunk (flagged chunks are dropped) -> generate (a failed generator gives a degraded
answer: the passages, with a notice) -> output scan (redaction, prompt leak) -> faithfulness -> human review when
unfaithful or on a high-stakes topic -> cache -> audit.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ragtune import store
from ragtune.config import GenerationConfig, RagConfig, format_validation_error, read_yaml
from ragtune.detectors.injection import detector
from ragtune.engine import Engine
from ragtune.errors import ConfigError, DataError, RagtuneError
from ragtune.generation import add_usage, cost_usd, make_generator
from ragtune.guard import InputError, RateLimiter, SharedRateLimiter, scan_output, validate_question
from ragtune.production.publish import POINTER, open_published, published
from ragtune.service.answer_cache import AnswerCache
from ragtune.service.audit import AuditLog, digest
from ragtune.service.batching import MicroBatcher
from ragtune.service.keys import KeyStore
from ragtune.service.review import ReviewQueue
from ragtune.workspace import Workspace


class ServiceSettings(BaseModel):
    """Operational settings of the query path (YAML via ``ragtune serve --settings``)."""

    model_config = ConfigDict(extra="forbid")
    max_question_chars: int = Field(2000, ge=1)
    anonymous: bool = Field(False, description="answer requests without an API key (identity: anonymous@<address>); "
                                               "otherwise every /query needs 'Authorization: Bearer <key>'")
    rate_limit: int = Field(60, ge=1, description="requests per identity (API key) per window")
    global_rate_limit: int = Field(1200, ge=1, description="requests per window from all identities together")
    rate_window_s: float = Field(60.0, gt=0)
    block_injection: bool = True
    injection_detector: str = Field("ngram", description="ngram (rules + the shipped classifier) | rules | "
                                    "hf:<folder> (a local Hugging Face sequence-classification model)")
    injection_threshold: float | None = Field(None, ge=0, le=1, description="flag from this score on; default: the "
                                              "detector's own (chosen on its validation split)")
    chunk_injection_detector: str = Field("ngram-documents", description="the check of every retrieved chunk: "
                                          "ngram-documents (rules + the classifier that scans chunks at indexing) | "
                                          "ngram | rules | hf:<folder>")
    review_below_faithfulness: float = Field(0.5, ge=0, le=1, description="answers less faithful are reviewed")
    high_stakes_topics: list[str] = Field(default_factory=list, description="words or phrases: a question "
                                          "mentioning one is reviewed before it is answered")
    redact: bool = True
    cache_size: int = Field(1024, ge=0)
    audit_fsync: bool = Field(False, description="fsync the audit log after every record (survives power loss; "
                                                 "costs milliseconds per request)")
    generation: GenerationConfig | None = Field(None, description="default: the published config's, else extractive")


log = logging.getLogger("ragtune.service")


class Unavailable(RagtuneError):
    """Nothing is published yet."""


@dataclass(frozen=True)
class Serving:
    """What one publication is served with; replaced as a whole when a new version is published."""

    record: dict
    engine: Engine
    retriever: object  # over the published table, checked out at the published version
    generator: object
    generation: GenerationConfig
    scorer: object
    embed_query: object
    flagged: dict = field(default_factory=dict)  # chunk id -> reasons, from the injection scan at ingest


class QueryService:
    def __init__(self, workspace: Workspace, settings: ServiceSettings | None = None, shared: bool = False):
        """``shared``: several processes serve this workspace, so the rate limit and the answer cache are kept in
        SQLite."""
        self.workspace, self.settings = workspace, settings or ServiceSettings()
        self.audit = AuditLog(workspace.home / "audit", fsync=self.settings.audit_fsync)
        self.reviews = ReviewQueue(workspace.home / "reviews.sqlite")
        def limiter(limit):
            return (SharedRateLimiter(workspace.home / "ratelimit.sqlite", limit, self.settings.rate_window_s)
                    if shared else RateLimiter(limit, self.settings.rate_window_s))

        self.limiter, self.all_limiter = limiter(self.settings.rate_limit), limiter(self.settings.global_rate_limit)
        self._lock = threading.Lock()
        self._state: Serving | None = None
        self._stamp = None
        self.answers = AnswerCache(self.settings.cache_size, workspace.home / "answers.sqlite" if shared else None)
        self.injection = detector(self.settings.injection_detector, self.settings.injection_threshold)
        self.chunk_injection = detector(self.settings.chunk_injection_detector)
        self.keys = KeyStore(workspace.home / "keys.sqlite")
        self.problem: str | None = None  # why the current publication cannot be loaded, while the last good one serves

    # -- the published version, switched without a restart -------------------------------------------------------
    def _pointer_stamp(self):
        try:
            st = (self.workspace.home / POINTER).stat()
            return st.st_mtime_ns, st.st_size, st.st_ino
        except FileNotFoundError:
            return None

    def current(self):
        """The serving state for the current publication; reloaded when ``published.json`` changes. Requests in
        flight keep the state they started with, so a switch drops none. A pointer that is damaged, missing or names
        a version that cannot be opened leaves the last good publication serving (``problem`` says why, /health
        reports it); with no good publication yet it is an error."""
        stamp = self._pointer_stamp()
        if stamp is not None and stamp == self._stamp and self._state is not None:
            return self._state
        with self._lock:
            stamp = self._pointer_stamp()
            if stamp == self._stamp and self._state is not None:
                return self._state
            try:
                state = self._load()
            except RagtuneError as exc:
                if self._state is None:
                    raise
                old = self._state.record
                self.problem = (f"{exc} (still serving the last good publication: {old['table']} version "
                                f"{old['version']})")
                log.error("publication not loaded: %s", self.problem)
                self._stamp = stamp  # tried once per change of the pointer, not once per request
                return self._state
            self._state, self._stamp, self.problem = state, stamp, None
            self.answers.forget_local()  # answers of the previous version are stale (their keys name it)
            return self._state

    def _load(self) -> Serving:
        record = published(self.workspace)
        if record is None:
            raise Unavailable(f"{self.workspace.home}: nothing is published yet; run `ploomber build`")
        if "config" not in record:
            raise DataError(f"{self.workspace.home / 'published.json'}: the publication has no configuration; "
                            "publish again with `ploomber build`")
        config = RagConfig.from_dict(record["config"], source="published.json")
        engine = Engine(config, self.workspace, cache_pairs=False)  # users' questions are not kept in a store
        gen_config = self.settings.generation or config.generation or GenerationConfig()
        generator = make_generator(gen_config, engine.embedder, engine.responses)
        try:
            table = open_published(self.workspace)
        except RagtuneError:
            raise
        except Exception as exc:  # LanceDB: the version is gone, the table is missing or damaged
            raise DataError(f"published table {record['table']} version {record['version']} cannot be opened: "
                            f"{exc}") from None
        # concurrent requests share one encoder call for their query vectors
        embed_query = MicroBatcher(lambda texts: list(engine.embedder.embed_queries(texts, cached=False)))
        flagged = {r["id"]: r["injection_reasons"] for r in store.flagged(table)}
        return Serving(record, engine, engine.retriever(table), generator, gen_config, engine.answer_scorer,
                       embed_query, flagged)

    def warm(self) -> None:
        """Load the publication and the models now, so that the first request does not wait for them."""
        state = self.current()
        state.engine.embedder.embedder.load()
        if state.engine.reranker is not None:
            state.engine.reranker.score("warm", ["up"])

    def health(self) -> dict:
        """``ok``, ``degraded`` (serving the last good publication; ``problem`` says why) or ``unavailable``."""
        try:
            record = self.current().record
        except RagtuneError as exc:
            return {"status": "unavailable", "problem": str(exc)}
        report = {"status": "degraded" if self.problem else "ok", "table": record["table"],
                  "version": record["version"], "published_at": record["published_at"],
                  "config_id": record.get("config_id"), "release": record.get("release"),
                  "documents": record.get("documents"),
                  "oldest_document_ingested_at": record.get("oldest_document_ingested_at")}
        return {**report, "problem": self.problem} if self.problem else report

    # -- one request ------------------------------------------------------------------------------------------------
    def ask(self, question, client_id: str = "anonymous", filters: dict | None = None, identity: str | None = None,
            record: dict | None = None) -> dict:
        """A response dict with ``status``: answered | degraded | pending_review | blocked | rate_limited.

        ``identity`` is who asks (an API key's name; the rate limit is kept per identity, ``client_id`` is only a
        label). The request's audit record is written here, unless the caller passes ``record`` to fill and writes
        it itself (the HTTP layer, which audits every request exactly once, whatever happens to it)."""
        t0 = time.perf_counter()
        own = record is None
        record = {} if own else record
        request_id = record.setdefault("request_id", uuid.uuid4().hex)
        identity = identity or client_id
        record.update(client_id=client_id, identity=identity, question=question, filters=filters)
        try:
            response = self._ask(request_id, question, identity, filters or {}, record, t0)
        except (InputError, RateLimited) as exc:
            status = "rate_limited" if isinstance(exc, RateLimited) else "blocked"
            response = {"request_id": request_id, "status": status, "reason": str(exc)}
            record.update(status=status, reason=str(exc))
        record["latency_ms"] = {**record.get("latency_ms", {}), "total": _ms(t0)}
        response["latency_ms"] = record["latency_ms"]
        if own:
            self.audit.write(record)
        return response

    def _ask(self, request_id, question, identity, filters, record, t0) -> dict:
        s = self.settings
        try:
            text = validate_question(question, s.max_question_chars)
        except InputError:
            record["question"] = digest(question) if isinstance(question, str) else repr(type(question))
            raise
        record["question"] = text
        if not self.limiter.allow(identity):
            raise RateLimited(f"rate limit: at most {s.rate_limit} requests per {s.rate_window_s:g} s per identity")
        if not self.all_limiter.allow("*"):
            raise RateLimited(f"the service is busy: at most {s.global_rate_limit} requests per "
                              f"{s.rate_window_s:g} s in all")
        verdict = self.injection.check(text)
        record["guards"] = {"question_injection": list(verdict.reasons), "question_injection_score":
                            round(verdict.score, 4)}
        if verdict.flagged and s.block_injection:
            raise InputError(f"the question looks like a prompt injection ({', '.join(verdict.reasons)})")
        state = self.current()
        pub, engine, generator, gen_config, scorer = (state.record, state.engine, state.generator, state.generation,
                                                      state.scorer)
        record.update(config_id=pub.get("config_id"), table=pub["table"], version=pub["version"],
                      prompt=generator.prompt_version, model=generator.model_id)
        key = AnswerCache.key(pub["table"], pub["version"], text, filters)
        cached = self.answers.get(key)
        if cached is not None:
            record.update(status=cached["status"], cached=True, answer=cached["answer"],
                          citations=cached["citations"], latency_ms={"cache": _ms(t0)})
            return {**cached, "request_id": request_id, "cached": True}

        t = time.perf_counter()
        k = gen_config.context_k
        qvec = None if not engine.config.embeds_queries else state.embed_query(text)
        timings = {"embed": _ms(t)}
        turn = engine.answer_one(text, state.retriever, qvec, filter=_filter(filters), flagged=state.flagged,
                                 check=lambda chunk: _chunk_verdict(self.chunk_injection, chunk).reasons,
                                 generator=generator, context_k=k)
        timings.update({stage[: -len("_ms")]: round(ms, 3) for stage, ms in turn.timings_ms.items()})
        hits, context, ans = turn.hits, turn.context, turn.answer
        record["guards"]["chunk_injection"] = turn.kept_out
        record["chunks"] = [{"chunk_id": h.chunk_id, "doc_id": h.doc_id, "score": h.score, "rank": h.rank,
                             "text_sha256": hashlib.sha256(h.text.encode()).hexdigest(),
                             "given_to_generator": h in context} for h in hits[: k + len(turn.kept_out)]]

        out_text, findings = ans.text, []
        if s.redact:
            template = getattr(generator, "template", "")
            out_text, findings = scan_output(ans.text, " ".join(h.text for h in context), template)
        record["guards"]["output"] = findings
        by_id = {h.chunk_id: h for h in context}
        citations = [{"n": n, "chunk_id": c, "doc_id": by_id[c].doc_id, "snippet": _snippet(by_id[c].text)}
                     for n, c in enumerate(ans.citations, 1) if c in by_id]
        t = time.perf_counter()
        faithfulness = None
        if not ans.degraded and context and generator.model_id != "extractive":  # extractive: context sentences
            faithfulness = scorer.score(text, ans, context, query_vector=qvec).get("faithfulness")
        timings["check"] = _ms(t)
        reasons = []
        if faithfulness is not None and faithfulness == faithfulness and faithfulness < s.review_below_faithfulness:
            reasons.append(f"faithfulness {faithfulness:.2f} below {s.review_below_faithfulness}")
        topic = _high_stakes(text, s.high_stakes_topics)
        if topic:
            reasons.append(f"high-stakes topic: {topic}")
        usage = add_usage(ans.usage, turn.found.usage)  # the question's rewriting counts too
        cost = cost_usd(usage, gen_config)
        record.update(answer=out_text, citations=[c["chunk_id"] for c in citations], usage=usage, cost_usd=cost,
                      faithfulness=faithfulness, notice=ans.notice, latency_ms=timings, cached=False)
        base = {"request_id": request_id, "cached": False,
                "version": {"table": pub["table"], "version": pub["version"], "config_id": pub.get("config_id")}}
        if reasons:
            review_id = self.reviews.add(request_id, text, out_text, citations, reasons)
            record.update(status="pending_review", review_id=review_id, reason="; ".join(reasons))
            return {**base, "status": "pending_review", "review_id": review_id, "answer": None, "citations": [],
                    "reason": "the answer is held for human review: " + "; ".join(reasons)}
        status = "degraded" if ans.degraded else "answered"
        record["status"] = status
        response = {**base, "status": status, "answer": out_text, "citations": citations,
                    **({"notice": ans.notice} if ans.notice else {})}
        if status == "answered":
            self.answers.put(key, response)
        return response

    def decide(self, review_id: str, approve: bool, reviewer: str, note: str = "") -> dict:
        decision = self.reviews.decide(review_id, approve, reviewer, note)
        self.audit.write({"request_id": decision["request_id"], "event": "review", "review_id": review_id,
                          "status": decision["status"], "reviewer": reviewer, "note": note})
        return decision


class RateLimited(RagtuneError):
    pass


@lru_cache(maxsize=16384)
def _chunk_verdict(injection, text: str):
    """Chunks come back request after request: check each text once (per detector)."""
    return injection.check(text)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def _snippet(text: str, n: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "…"


def _filter(filters: dict):
    """``{"doc_prefix": "hr/"}`` keeps chunks of documents whose id starts with it; ``{"doc_ids": [...]}`` those."""
    prefix, ids = filters.get("doc_prefix"), filters.get("doc_ids")
    if prefix is None and ids is None:
        return None
    return lambda h: (prefix is None or h.doc_id.startswith(prefix)) and (ids is None or h.doc_id in ids)


def _high_stakes(question: str, topics: list[str]) -> str | None:
    lowered = question.lower()
    return next((t for t in topics if re.search(rf"\b{re.escape(t.lower())}\b", lowered)), None)


def load_settings(path: Path | None) -> ServiceSettings:
    if path is None:
        return ServiceSettings()
    from pydantic import ValidationError


    try:
        return ServiceSettings.model_validate(read_yaml(path, "service settings") or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
