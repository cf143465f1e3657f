"""Guardrails of the query path: input validation, prompt-injection detection, output scanning, rate limits.

The injection rules are the explainable layer: each rule family names what it saw (an instruction override, a
request for the hidden prompt, a role switch, chat-format tokens, text addressed to an AI, data exfiltration). Text
is normalised first (Unicode NFKC, zero-width characters dropped, spaced-out or dotted letters joined, common
digit-for-letter swaps undone), and base64 or reversed payloads are decoded and checked too. Rules miss paraphrases:
``ragtune.detectors.injection`` puts a learned classifier beside them, and that combined verdict is what the service
and ``ragtune guard`` use. Both are measured on public labelled sets in BENCHMARKS.md.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
import unicodedata
from collections import deque
from contextlib import contextmanager

from ragtune.errors import RagtuneError


class InputError(RagtuneError):
    """A request that is refused before any work, with the reason."""


# -- normalisation --------------------------------------------------------------------------------------------------

_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")
_SPACED = re.compile(r"\b(?:[a-z][ .\-_*]){3,}[a-z]\b", re.I)  # i g n o r e / i.g.n.o.r.e
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})


def normalise(text: str) -> str:
    text = _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text))
    text = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", "", text, flags=re.I)  # igno-re
    words = [w.translate(_LEET) if re.search(r"[a-z]", w, re.I) and re.search(r"[0-9@$]", w) else w
             for w in text.split(" ")]
    return " ".join(words).lower()


# -- injection rules ------------------------------------------------------------------------------------------------

_OVERRIDE_VERB = (r"(?:ignore|ignoring|disregard|forget|override|skip|cancel|discard|bypass|revoke[ds]?|"
                  r"stop following|do not follow|don'?t follow|no longer (?:apply|bound by)|are outdated)")
_INSTRUCTION = (r"(?:instructions?|directions?|directives?|rules|guidelines|(?:system )?prompt|system message|"
                r"constraints|restrictions|safety|filters|consignes|anweisungen|instrucciones|istruzioni|regeln)")
RULES: dict[str, list[re.Pattern]] = {
    "instruction override": [
        re.compile(rf"\b{_OVERRIDE_VERB}\b(?:\W+\w+){{0,6}}?\W+{_INSTRUCTION}\b"),
        re.compile(rf"\b{_INSTRUCTION}\b(?:\W+\w+){{0,4}}?\W+(?:have been revoked|no longer apply|are outdated|"
                   r"(?:is|was) a test)"),
        re.compile(r"\b(?:new|real|updated) (?:system )?(?:instructions?|task|goal|policy)\b\s*(?::|is\b)"),
        re.compile(r"\b(?:ignore|disregard|forget) (?:the |all |any |everything )?(?:above|previous|prior|"
                   r"earlier|context|documents?|handbook|question|passages?|what(?:ever)? (?:you|the))"),
        re.compile(r"\b(?:ignorier\w*|vergiss|ignore[sz]?|ignora|oublie)\b[^.!?\n]{0,40}\b(?:anweisungen|regeln|"
                   r"instructions|consignes|instrucciones|istruzioni)\b"),
        re.compile(r"\b(?:ignore|disregard|forget)(?: about)? (?:everything|all(?: of)?(?: that| this| the above)?)"
                   r"(?: (?:i|we|you) (?:said|told|wrote|discussed)\b| (?:before|above|previously|so far)\b|\s*[.!,:;]|$|"
                   r" and (?:just |only |instead )?(?:say|output|print|write|answer|tell|respond)\b)"),
        re.compile(r"\b(?:vergiss|vergessen sie|ignorier\w*)\b[^.!?\n]{0,30}\b(?:alles|obigen|vorherigen|bisherigen|davor|"
                   r"vorher)\b"),
        re.compile(r"\b(?:oublie[sz]?|ignore[sz]?)\b[^.!?\n]{0,30}\b(?:tout ce qui|précédente?s?|ci-dessus)\b"),
        re.compile(r"\b(?:olvida\w*|ignora\w*)\b[^.!?\n]{0,30}\b(?:todo lo|anterior(?:es|mente)?|lo de arriba)\b"),
    ],
    "prompt extraction": [
        re.compile(r"\b(?:reveal|print|show|output|repeat|echo|spell out|translate|summari[sz]e|quote|tell me|"
                   r"what (?:is|are|were)|gib|révèle|muestra|dimmi)\b.{0,60}\b(?:system ?prompt|"
                   r"(?:your|ton|dein|tu) (?:initial |hidden |original |full |actual |real |confidential )?"
                   r"(?:prompt|instructions|rules|configuration|developer message)|"
                   r"the (?:initial |hidden |original |confidential |secret )(?:prompt|instructions|rules)|"
                   r"the prompt\b|the (?:instructions|rules) (?:you|that) (?:were given|received|control)|text above|"
                   r"everything (?:that came )?before|prompt système|systemprompt|mensaje del sistema)"),
        re.compile(r"\bmy system prompt says\b|\bprompt template\b.{0,40}\bpassages\b"),
    ],
    "role switch": [
        re.compile(r"\byou are (?:now|no longer)\b"),
        re.compile(r"\b(?:enter|switch to|activate[ds]?|enable|you are (?:now )?in) (?:developer|maintenance|"
                   r"unrestricted|god|test|debug|dan) mode\b|\bin (?:developer|dan) mode,? you\b"),
        re.compile(r"\b(?:developer|maintenance|unrestricted|test) mode (?:activated|enabled|requires|is (?:now )?on)\b"),
        re.compile(r"\b(?:pretend|imagine|hypothetically)\b.{0,40}\b(?:no|without) (?:rules|restrictions|"
                   r"content filters|filters|policy|constraints)\b|\bjailbroken\b|\bdo anything now\b"),
        re.compile(r"\b(?:act as|roleplay as|play the role of|simulate)\b.{0,40}\b(?:hacker|unrestricted|"
                   r"unfiltered|terminal|shell|linux|evil\w*|grandmother)\b"),
        re.compile(r"\b(?:sudo|elevated privileges|admin(?:istrator)? rights)\b.{0,60}\b(?:reveal|respond without|"
                   r"print|show|ignore)\b"),
    ],
    "chat-format tokens": [
        re.compile(r"<\|im_(?:start|end)\|>|\[/?inst\]|<\|(?:system|assistant|user)\|>"),
        re.compile(r"(?:^|\n|###)\s*(?:system|assistant)\s*:"),
        re.compile(r"</?(?:system|context|instructions?)>"),
        re.compile(r"\b(?:system override|end of documents)\b"),
        re.compile(r"\"role\"\s*:\s*\"system\""),
    ],
    "addressed to an AI": [
        re.compile(r"\b(?:note|attention|instructions?|message|dear)\b(?: (?:to|for))?(?: any| all| the)? "
                   r"(?:ai|assistants?|models?|chatbots?|llms?|language models?)\b"),
        re.compile(r"\bif you are an? (?:ai|language model|llm|chatbot|assistant)\b"),
        re.compile(r"\b(?:ai|llm|language model|chatbot)s?(?: systems| agents)? (?:reading|processing|that reads?)\b"),
        re.compile(r"\b(?:note|message|instructions?|attention|hello|hi|dear)\b[^.\n]{0,20}\bto the (?:ai|model|"
                   r"assistant|chatbot)\b|(?:^|\n)\s*to the (?:ai|model|assistant|chatbot)\s*[:,]|"
                   r"\b(?:chatbots|llm agents|ai systems) must\b"),
        re.compile(r"\bhidden instruction\b|display\s*:\s*none"),
    ],
    "data exfiltration": [
        re.compile(r"!\[[^\]]*\]\(https?://[^)]*[?&=]"),
        re.compile(r"\b(?:send|forward|exfiltrate|transfer|email)\b.{0,60}\b[\w.+-]+@[\w-]+\.\w+"),
        re.compile(r"\bexfiltrat\w*\b|\bbase64[- ]encoded\b|\bappend\b.{0,40}\bto every answer\b"),
        re.compile(r"\b(?:all|any|every) (?:stored )?(?:secrets|api keys|passwords|credentials)\b"),
        re.compile(r"\b(?:call|use) the \w+ (?:api|tool)\b.{0,60}\b(?:change|transfer|delete|pay)\b"),
        re.compile(r"\b(?:execute|run) (?:this|the following) command\b|\brm -rf\b|\bcat /etc/"),
    ],
}


def _payloads(text: str) -> list[str]:
    """Hidden variants of ``text`` worth checking: base64 blobs decoded, the whole text reversed."""
    out = [text[::-1]]
    for blob in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable():
            out.append(decoded)
    return out


def rule_reasons(text: str) -> tuple[str, ...]:
    """Which rule families ``text`` (or a base64 / reversed payload in it) triggers."""
    reasons = []
    for variant in [text, *_payloads(text)]:
        norm = normalise(variant)
        for family, patterns in RULES.items():
            if family not in reasons and any(p.search(norm) for p in patterns):
                reasons.append(family)
    return tuple(reasons)


# -- input validation -------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 (but tab and line breaks), DEL, C1
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")  # embeddings, overrides and isolates: text that reads reordered
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` is not acceptable plain text (control characters, bidi overrides, lone surrogates), or None."""
    if _SURROGATE.search(text):
        return "contains a lone surrogate (not valid Unicode text)"
    if _CONTROL.search(text):
        return "contains control characters (binary data?)"
    if _BIDI.search(text):
        return "contains bidirectional override characters"
    if "\ufffd" in text:
        return "is not valid UTF-8 text"
    return None


def validate_question(question, max_chars: int = 2000) -> str:
    """The question, stripped; InputError naming what is wrong (type, empty, too long, characters)."""
    if not isinstance(question, str):
        raise InputError(f"question must be a string, got {type(question).__name__}")
    text = question.strip()
    if not text:
        raise InputError("question is empty")
    if len(text) > max_chars:
        raise InputError(f"question is {len(text)} characters long; the limit is {max_chars}")
    problem = text_problem(text)
    if problem:
        raise InputError(f"question {problem}")
    return text


# -- output scanning --------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d ()/-]{6,}\d(?!\w)")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
    return total % 10 == 0


def scan_output(text: str, context: str = "", prompt: str = "") -> tuple[str, list[str]]:
    """(text with card numbers (13-19 digits passing the Luhn check), e-mail addresses and phone numbers (8-15
    digits, as E.164 allows) redacted, findings). Addresses and numbers that
    appear verbatim in the retrieved ``context`` are the documents' own (a help-desk address) and are kept; card
    numbers never are. An answer repeating a run of 8 words of the ``prompt`` template is withheld (prompt leak)."""
    findings = []
    if prompt and _leaks(text, prompt):
        return "The answer was withheld: it repeated the system's instructions.", ["prompt leak"]

    def card(m):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits):
            findings.append("card number")
            return "[card number redacted]"
        return m.group(0)

    def keep_or(label):
        def sub(m):
            value = m.group(0)
            digits = len(re.sub(r"\D", "", value))
            if value in context or (label == "phone" and (_ISO_DATE.match(value) or not 8 <= digits <= 15)):
                return value
            findings.append(label)
            return f"[{label} redacted]"
        return sub

    text = _CARD.sub(card, text)
    text = _EMAIL.sub(keep_or("e-mail"), text)
    text = _PHONE.sub(keep_or("phone"), text)
    return text, findings


def _leaks(text: str, prompt: str, n: int = 8) -> bool:
    fixed = re.sub(r"\{[a-z_]+\}", " ", prompt)
    words, answer = fixed.lower().split(), " ".join(text.lower().split())
    return any(" ".join(words[i:i + n]) in answer for i in range(len(words) - n + 1))


# -- rate limit -------------------------------------------------------------------------------------------------


class RateLimiter:
    """At most ``limit`` requests per client in any ``window`` seconds (a sliding window); thread-safe."""

    def __init__(self, limit: int, window: float = 60.0):
        self.limit, self.window = limit, window
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._seen.setdefault(client, deque())
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            return True


class SharedRateLimiter:
    """The same sliding window, kept in SQLite so that several server processes (``ragtune serve --workers N``)
    enforce one limit per client. Rate-limit state is not worth an fsync: synchronous=OFF.

    Writers take an exclusive ``flock`` on a lock file (and a thread lock within the process) around each check, so
    SQLite never finds its database locked: its busy handler would sleep in steps of up to 100 ms, which was the
    slowest 5% of requests with two workers under load (measured)."""

    def __init__(self, path, limit: int, window: float = 60.0):
        from pathlib import Path

        self.path, self.limit, self.window = Path(path), limit, window
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()
        self._file_lock = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115 - lives with us
        self._con = None
        with self._locked() as con:
            con.execute("CREATE TABLE IF NOT EXISTS hits (client TEXT NOT NULL, t REAL NOT NULL)")
            con.execute("CREATE INDEX IF NOT EXISTS hits_client ON hits (client, t)")

    @contextmanager
    def _locked(self):
        import fcntl
        import sqlite3

        with self._thread_lock:
            fcntl.flock(self._file_lock, fcntl.LOCK_EX)
            try:
                if self._con is None:
                    self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                    self._con.execute("PRAGMA journal_mode=WAL")
                    self._con.execute("PRAGMA synchronous=OFF")
                yield self._con
            finally:
                fcntl.flock(self._file_lock, fcntl.LOCK_UN)

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._locked() as con:
            con.execute("BEGIN IMMEDIATE")  # count and insert atomically
            try:
                con.execute("DELETE FROM hits WHERE client = ? AND t <= ?", (client, now - self.window))
                (count,) = con.execute("SELECT COUNT(*) FROM hits WHERE client = ?", (client,)).fetchone()
                allowed = count < self.limit
                if allowed:
                    con.execute("INSERT INTO hits VALUES (?, ?)", (client, now))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return allowed
