"""Word times from CTC frame paths."""

from __future__ import annotations

import pytest

from dmao.decoding.timing import OUTPUT_FRAME_SECONDS, WordTiming, word_timings

CHAR_SYMBOLS = ["<blk>", "|", "A", "C", "T"]
#                0        1    2    3    4


def test_output_frames_are_40_ms():
    """10 ms fbank hops and the frontend's two stride-2 pools: 4 x 10 ms."""
    assert abs(OUTPUT_FRAME_SECONDS - 0.04) < 1e-12


def test_char_path_gives_word_spans():
    # frames: _ C C A _ T | | _ A T T _  ->  "CAT AT"
    path = [0, 3, 3, 2, 0, 4, 1, 1, 0, 2, 4, 4, 0]
    words = word_timings(path, CHAR_SYMBOLS, frame_seconds=0.04)
    assert [w.word for w in words] == ["CAT", "AT"]
    assert words[0] == WordTiming("CAT", pytest.approx(0.04), pytest.approx(5 * 0.04))
    assert words[1] == WordTiming("AT", pytest.approx(9 * 0.04), pytest.approx(3 * 0.04))


def test_repeated_letter_needs_a_blank_and_leading_boundaries_are_ignored():
    # | A _ A T  ->  "AAT" (the blank separates two A's); A A T -> "AT"
    assert [w.word for w in word_timings([1, 2, 0, 2, 4], CHAR_SYMBOLS)] == ["AAT"]
    assert [w.word for w in word_timings([2, 2, 4], CHAR_SYMBOLS)] == ["AT"]
    assert word_timings([0, 0, 1, 0], CHAR_SYMBOLS) == []


def test_sentencepiece_pieces_start_words_with_the_marker():
    symbols = ["<blk>", "<unk>", "\u2581THE", "\u2581C", "AT", "\u2581"]
    # ▁THE _ ▁C AT ▁ AT -> "THE CAT AT"
    words = word_timings([2, 0, 3, 4, 5, 4], symbols, word_boundary=None, frame_seconds=1.0)
    assert [(w.word, w.start_s, w.duration_s) for w in words] == [
        ("THE", 0.0, 1.0),
        ("CAT", 2.0, 2.0),
        ("AT", 5.0, 1.0),
    ]
