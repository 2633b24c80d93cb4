"""Word times from a CTC frame path (greedy best path or an LM search path), for CTM files.

The encoder sees 10 ms fbank frames (``dmao.data.features.FRAME_SHIFT_S``) and its frontend
keeps one frame in four (two stride-2 max-pools, ``dmao.models.frontend.subsampled_length``), so
output frame ``t`` starts at ``t · 40 ms``. A word starts at the first frame of its first token
and ends after the last frame of its last token (the frames in which CTC emits, or repeats, the
token; blanks around it are not part of the word). CTC emissions are peaky, so these are the
times at which the model *recognised* the tokens — good for ordering and rough location, not a
forced alignment.

With ``frame_confidence`` each word also gets a confidence: the frame confidences of its tokens'
frames (those same frames), aggregated (:mod:`dmao.decoding.confidence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dmao.data.features import FRAME_SHIFT_S
from dmao.decoding.confidence import aggregate
from dmao.models.frontend import subsampled_length

__all__ = ["OUTPUT_FRAME_SECONDS", "SUBSAMPLING_FACTOR", "WordTiming", "word_timings"]

SUBSAMPLING_FACTOR = 100 // subsampled_length(100)
"""Feature frames per encoder output frame: 4 (the frontend's two stride-2 pools)."""
OUTPUT_FRAME_SECONDS = FRAME_SHIFT_S * SUBSAMPLING_FACTOR
"""Duration of one encoder output frame: 0.04 s."""


@dataclass(frozen=True)
class WordTiming:
    """One word with its time span, in seconds from the start of the utterance, and its
    confidence in [0, 1] where one was computed."""

    word: str
    start_s: float
    duration_s: float
    confidence: float | None = None


def word_timings(
    frame_tokens: Sequence[int],
    symbols: Sequence[str],
    blank_id: int = 0,
    word_boundary: str | None = "|",
    frame_seconds: float = OUTPUT_FRAME_SECONDS,
    frame_confidence: Sequence[float] | None = None,
    aggregation: str = "min",
) -> list[WordTiming]:
    """Words and their spans from a per-frame CTC token path.

    Args:
        frame_tokens: ``(T,)`` token id per output frame (blanks and repeats included), e.g. the
            frame-wise argmax, or :attr:`dmao.decoding.lm_decoder.LMHypothesis.frame_tokens`.
        symbols: symbol of each token id (``dmao.decoding.lm_decoder.token_symbols``).
        blank_id: the CTC blank.
        word_boundary: the boundary symbol between words (``|``); ``None`` for sentencepiece
            pieces, where a piece starting with ``▁`` begins a new word.
        frame_seconds: duration of one frame.
        frame_confidence: ``(T,)`` confidence of every frame
            (:func:`dmao.decoding.confidence.frame_confidence`); None: no word confidence.
        aggregation: how a word's frame confidences become one (``min``, ``mean``, ``prod``).

    Returns:
        The words in order, with non-decreasing start times; their texts joined by spaces equal
        the collapsed path's text (the decoded hypothesis).
    """
    if frame_confidence is not None and len(frame_confidence) != len(frame_tokens):
        raise ValueError(
            f"frame_confidence has {len(frame_confidence)} frames, the path {len(frame_tokens)}"
        )
    # (symbol, first frame, last frame, its frames) of every emitted token.
    spans: list[list] = []
    previous = None
    for t, token in enumerate(frame_tokens):
        token = int(token)
        if token != blank_id:
            if token == previous:
                spans[-1][2] = t
                spans[-1][3].append(t)
            else:
                spans.append([symbols[token], t, t, [t]])
        previous = token

    # [text, first frame, last frame, its tokens' frames] per word.
    words: list[list] = []
    new_word = True
    for symbol, start, end, frames in spans:
        if word_boundary is not None and symbol == word_boundary:
            new_word = True
            continue
        if word_boundary is None and symbol.startswith("\u2581"):
            new_word, symbol = True, symbol[1:]
        if not symbol:
            continue
        if new_word:
            words.append([symbol, start, end, list(frames)])
            new_word = False
        else:
            words[-1][0] += symbol
            words[-1][2] = end
            words[-1][3] += frames
    return [
        WordTiming(
            text,
            first * frame_seconds,
            (last + 1 - first) * frame_seconds,
            None
            if frame_confidence is None
            else aggregate([float(frame_confidence[t]) for t in frames], aggregation),
        )
        for text, first, last, frames in words
    ]
