from __future__ import annotations

import random

import pytest

from dmao.data.text import normalize_transcript


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hello world", "HELLO WORLD"),
        ("HELLO WORLD", "HELLO WORLD"),
        # Apostrophes inside words stay; typographic ones become ASCII.
        ("don't", "DON'T"),
        ("don\u2019t", "DON'T"),
        ("o''brien", "O'BRIEN"),
        # ...but not at word edges.
        ("'tis the dogs' bone", "TIS THE DOGS BONE"),
        ("rock 'n' roll", "ROCK N ROLL"),
        ("' '' '", ""),
        # Hyphens and dashes separate words.
        ("well-known", "WELL KNOWN"),
        ("wait\u2014what", "WAIT WHAT"),
        ("a - b", "A B"),
        # Other punctuation disappears without leaving a space.
        ("u.s.a.", "USA"),
        ('Hello, world! (yes) "quoted"; a/b', "HELLO WORLD YES QUOTED AB"),
        # Whitespace of any kind collapses.
        ("  a\tb\n c\u00a0d  ", "A B C D"),
        # NFKC folds compatibility characters; letters of any script are kept.
        ("\ufb01ne \uff21\uff22 x\u00b2", "FINE AB X2"),
        ("cafe\u0301 na\u00efve", "CAF\u00c9 NA\u00cfVE"),
        ("stra\u00dfe", "STRASSE"),
        # Digits are kept, not spelled out.
        ("chapter 42", "CHAPTER 42"),
        # Punctuation only or nothing at all: empty.
        ("... !?", ""),
        ("", ""),
    ],
)
def test_normalize_transcript_examples(raw: str, expected: str) -> None:
    assert normalize_transcript(raw) == expected


def test_docstring_example_holds() -> None:
    raw = "Well-known, isn\u2019t it?  \u2018Yes\u2019 \u2014 42!"
    assert normalize_transcript(raw) == "WELL KNOWN ISN'T IT YES 42"


def _random_texts(n: int, seed: int) -> list[str]:
    """Random strings over ASCII, Latin-1, typographic punctuation, combining marks, CJK, etc."""
    rng = random.Random(seed)
    pools = [
        [chr(c) for c in range(32, 127)],
        [chr(c) for c in range(0xA0, 0x250)],
        list("\u2018\u2019\u201c\u201d\u2010\u2013\u2014\u2212\u00a0\u2009\t\n\ufb01\uff21\u00b2"),
        [chr(c) for c in range(0x300, 0x370)],  # combining marks
        [chr(c) for c in range(0x390, 0x3D0)],  # Greek, incl. letters with odd case mappings
        ["\u01f0", "\u0390", "\u1e9e", "\u4e2d", "\u0130", "\u0149"],
    ]
    return [
        "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 40))) for _ in range(n)
    ]


def test_normalize_transcript_is_idempotent_and_clean_on_random_text() -> None:
    for raw in _random_texts(2000, seed=0):
        out = normalize_transcript(raw)
        assert normalize_transcript(out) == out, raw
        assert out == out.strip() and "  " not in out, raw
        for word in out.split(" ") if out else []:
            assert word and not word.startswith("'") and not word.endswith("'"), raw
            assert all(ch.isalpha() or ch.isdigit() or ch == "'" for ch in word), raw
            assert word == word.upper(), raw
