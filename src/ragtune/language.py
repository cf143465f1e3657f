"""The language of a corpus, for the full-text analyser's stemmer and stop words (``retrieval.fts.language``).

LanceDB's full-text index stems and drops stop words for the languages below; ``auto`` names the one most of the
corpus's text is written in, found by py3langid (a language identifier that ships its model) over a sample of the
table's chunks. A corpus in a language the index cannot stem gets the analyser without stemming or stop words (an
English stemmer on Arabic or Japanese text would only do harm).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

#: ISO 639-1 code -> the language name LanceDB's full-text index takes
FTS_LANGUAGES = {
    "ar": "Arabic", "da": "Danish", "nl": "Dutch", "en": "English", "fi": "Finnish", "fr": "French", "de": "German",
    "el": "Greek", "hu": "Hungarian", "it": "Italian", "no": "Norwegian", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "es": "Spanish", "sv": "Swedish", "ta": "Tamil", "tr": "Turkish",
}
AUTO = "auto"


def detect(texts: Sequence[str], sample: int = 400, chars: int = 1000) -> str:
    """The ISO 639-1 code of the language most of the text is in (each of the first ``sample`` texts votes with
    its length, up to ``chars`` characters of it)."""
    import py3langid

    votes: Counter[str] = Counter()
    for text in texts[:sample]:
        text = text[:chars].strip()
        if text:
            votes[py3langid.classify(text)[0]] += len(text)
    return votes.most_common(1)[0][0] if votes else "en"


def fts_analyser(language: str, texts: Sequence[str]) -> dict:
    """The FTS index's language settings for a configured ``language`` (a name, or ``auto``): ``language`` and,
    for a detected language the index cannot stem, ``stem`` and ``remove_stop_words`` off."""
    if language != AUTO:
        return {"language": language}
    code = detect(texts)
    if code in FTS_LANGUAGES:
        return {"language": FTS_LANGUAGES[code]}
    return {"language": "English", "stem": False, "remove_stop_words": False}
