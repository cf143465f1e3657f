"""Small text utilities shared by the extractive generator and the answer metrics: sentences, content words, F1."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

# a sentence ends at . ! ? (optionally closed by a quote or bracket) before whitespace and a capital, digit or
# opening mark; a line break always ends one (Markdown lines, list items and headings stand alone)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+|>\s*)")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


def _units(text: str, headings: bool = True) -> list[str]:
    """Paragraphs, headings and list items, each on one line: hard-wrapped lines are joined, since a line break
    inside a paragraph does not end a sentence, while a blank line, a heading or a list marker does."""
    units: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        starts_block = bool(_MARKUP.match(line))
        if not line.strip() or starts_block:
            if current:
                units.append(" ".join(current))
            current = []
        if line.strip():
            current.append(_MARKUP.sub("", line).strip())
        if re.match(r"\s*#{1,6}\s", line):  # a heading is a unit of its own
            if headings:
                units.append(" ".join(current))
            current = []
    if current:
        units.append(" ".join(current))
    return units


def split_sentences(text: str, headings: bool = True) -> list[str]:
    """Sentences of ``text``: paragraphs, headings (unless ``headings=False``) and list items split at sentence
    ends; list and heading marks and citation markers like [2] removed."""
    out = []
    for unit in _units(text, headings):
        for sentence in _SENTENCE_END.split(unit):
            sentence = _CITATION.sub("", sentence).strip()
            if sentence:
                out.append(sentence)
    return out


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem import PorterStemmer

    return PorterStemmer()


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return word if word[0].isdigit() else _stemmer().stem(word)


def words(text: str) -> list[str]:
    """Lower-case word tokens (numbers kept whole: 1,500 and 2.5 are one token each)."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """Stemmed words that carry content: stop words dropped."""
    stop = _stopwords()
    return [_stem(w) for w in words(text) if w not in stop]


_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_SMALL.update({"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
               "ninety": 90})
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}


def _spelled(tokens: list[str]) -> set[str]:
    """Values of runs of number words: "two hundred" -> 200, "twenty five" -> 25, "five" -> 5."""
    out, total, current, active = set(), 0, 0, False
    for w in [*tokens, ""]:
        if w in _SMALL:
            current, active = current + _SMALL[w], True
        elif w in _SCALES and (active or w != "hundred"):
            scale = _SCALES[w]
            if scale == 100:
                current = max(current, 1) * 100
            else:
                total, current = total + max(current, 1) * scale, 0
            active = True
        elif w == "and" and active:
            continue
        else:
            if active:
                out.add(str(total + current))
            total, current, active = 0, 0, False
    return out
_NAME = re.compile(r"(?<=[^\s.!?:;])(\s+)([A-Z][\w'-]*)")


def numbers(text: str) -> set[str]:
    """Numbers in ``text``, separators removed (1,500 -> 1500), number words as digits (two hundred -> 200)."""
    found = {re.sub(r",(?=\d{3}\b)", "", n) for n in _NUMBER.findall(text)}
    return found | _spelled(words(text))


_CAPITALISED_RUN = re.compile(r"(?<=[^\s.!?:;])\s+((?:[A-Z][\w'-]*)(?:\s+(?:of\s+|for\s+|and\s+)?[A-Z][\w'-]*)*)")
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9&]{1,7}s?\b")


def name_runs(text: str) -> list[list[str]]:
    """Runs of capitalised words inside a sentence (not at its start), lower-cased: "World Health Organization"."""
    return [[w for w in words(m.group(1)) if w not in ("of", "for", "and")] for m in _CAPITALISED_RUN.finditer(text)]


def acronyms(text: str) -> set[str]:
    """Acronyms in ``text`` and the initials of its capitalised runs, lower-cased: "WHO" and "World Health
    Organization" both give "who"."""
    found = {a.lower().rstrip("s") for a in _ACRONYM.findall(text)}
    runs = re.findall(r"\b[A-Z][\w'-]*(?:\s+(?:of\s+|for\s+|and\s+)?[A-Z][\w'-]*)+", text)
    return found | {"".join(w[0] for w in words(r) if w not in ("of", "for", "and", "the", "a", "an")) for r in runs}


def names(text: str) -> set[str]:
    """Capitalised words inside a sentence (not at its start), lower-cased: names of people, places, products,
    organisations. With numbers, the facts an answer most often gets wrong."""
    return {w for m in _NAME.finditer(text) for w in words(m.group(2))}


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style F1 over content words."""
    pred, ref = Counter(content_words(prediction)), Counter(content_words(reference))
    common = sum((pred & ref).values())
    if not pred or not ref or not common:
        return float(not pred and not ref)
    precision, recall = common / sum(pred.values()), common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)
