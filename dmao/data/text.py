"""Transcript normalisation: the single definition shared by training targets and WER scoring.

Training targets (tokenisers, filtering, batches) and the scorer's references and hypotheses all go
through :func:`normalize_transcript`, so a word counts as correct exactly when the model could have
produced it.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["APOSTROPHES", "HYPHENS", "normalize_transcript"]

# Typographic variants of the apostrophe. NFKC leaves them alone, but "DON’T" and "DON'T" are the
# same word, so they all become the ASCII apostrophe.
APOSTROPHES = frozenset("'\u2018\u2019\u02bc\u2032\uff07")

# Hyphen and dash variants. They join or separate words ("WELL-KNOWN", "WAIT—WHAT"), so they become
# word boundaries rather than disappearing (which would glue two words into a new one).
HYPHENS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")

_REPEATED_APOSTROPHES = re.compile("'+")


def normalize_transcript(text: str) -> str:
    """Normalise a transcript for CTC targets and for scoring.

    The rules, applied in this order:

    1. Unicode NFKC (compatibility forms fold to their plain letters and digits: "ﬁ" → "fi",
       "²" → "2", full-width "Ａ" → "A"; "e" + combining acute composes to "é").
    2. Upper-case, as LibriSpeech transcripts are (Python's full case mapping: "ß" → "SS").
    3. Character classes:

       - letters (any script, ``str.isalpha``) and decimal digits (``str.isdigit``) are kept;
         digits are not spelled out, since no rule for that is both simple and correct;
       - apostrophes (ASCII and the typographic variants in :data:`APOSTROPHES`) become ``'``;
       - hyphens and dashes (:data:`HYPHENS`) and all whitespace become a space;
       - everything else (other punctuation, symbols, control characters, combining marks left
         over after NFKC) is dropped without a space: "U.S.A." → "USA".

    4. Apostrophes are kept only inside a word: leading and trailing ones are stripped
       ("'TIS" → "TIS", "JAMES'" → "JAMES", "'N'" → "N"); a run of them inside a word becomes one.
    5. Whitespace collapses to single spaces, with none at either end.

    The result is idempotent (``f(f(x)) == f(x)``) and may be empty (a transcript of punctuation
    only); :func:`dmao.data.filtering.filter_cuts` excludes such utterances from training.

    Example: ``"Well-known, isn’t it?  ‘Yes’ — 42!"`` → ``"WELL KNOWN ISN'T IT YES 42"``.

    Args:
        text: a transcript in any case, with any punctuation.

    Returns:
        The normalised transcript: upper-case words of letters, digits and inner apostrophes,
        separated by single spaces.
    """
    text = unicodedata.normalize("NFKC", text).upper()
    kept = []
    for ch in text:
        if ch.isalpha() or ch.isdigit():
            kept.append(ch)
        elif ch in APOSTROPHES:
            kept.append("'")
        elif ch in HYPHENS or ch.isspace():
            kept.append(" ")
        # Anything else is punctuation or a symbol: dropped.
    words = []
    for word in "".join(kept).split():
        word = _REPEATED_APOSTROPHES.sub("'", word).strip("'")
        if word:
            words.append(word)
    return " ".join(words)
