"""Long recordings: CTC log-probabilities in overlapping windows, without attention over the
whole file, and search between pauses (``dmao transcribe --chunk-seconds``).

Self-attention costs time and memory with the square of the length, and a model trained on
utterances of seconds has never attended over an hour. A long file (``dmao transcribe``: longer
than ``--long-file-seconds``) is therefore cut into *chunks* of ``chunk`` feature frames; each
chunk is run with ``context`` frames of the neighbouring audio on both sides (its *window*), and
only the chunk's own output frames are kept. The kept frames, concatenated, cover every output
frame of the file exactly once, in order, so greedy or beam search and word times (global frame
indices) work on them as on a whole file — the buffered CTC inference of NeMo's
``FrameBatchASR``, without its streaming.

Alignment: the frontend (``dmao.models.frontend``) maps input frames to output frames by two
floor-halving max-pools after "same"-padded convolutions, so output frame ``j`` depends on input
frames around ``4j .. 4j + 3``. Chunk and context lengths are multiples of 4 and windows start on a
multiple of 4, which makes a window's local output frame ``k`` the file's output frame
``start / 4 + k``. What differs from one pass over the whole file is only what attention (and
the convolutions near a window's edge) do not see: for a function with the frontend's frame
mapping and no wider view (tests/export/test_chunking.py), chunked and whole are equal exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from dmao.decoding.timing import SUBSAMPLING_FACTOR

__all__ = [
    "Window",
    "chunk_windows",
    "chunked_log_probs",
    "pause_segments",
]


@dataclass(frozen=True)
class Window:
    """One pass of the model: input frames ``[start, end)``, of which the output frames
    ``[keep_from, keep_to)`` (local to the window's output) belong to its chunk."""

    start: int
    end: int
    keep_from: int
    keep_to: int | None  # None: to the end of the window's output (the last chunk)


def chunk_windows(num_frames: int, chunk: int, context: int) -> list[Window]:
    """The windows that cover ``num_frames`` input frames in chunks of ``chunk`` frames with
    ``context`` frames on both sides; one window (the whole file) when its output frames
    (``T' = T // 4``) fit in the output of one window of ``chunk + 2 * context`` frames.

    Raises:
        ValueError: ``chunk`` is not a positive multiple of the subsampling factor (4) or
            ``context`` not a non-negative one.
    """
    factor = SUBSAMPLING_FACTOR
    if chunk <= 0 or chunk % factor or context < 0 or context % factor:
        raise ValueError(
            f"chunk ({chunk}) and context ({context}) must be multiples of {factor} feature "
            "frames, chunk > 0"
        )
    if num_frames // factor <= (chunk + 2 * context) // factor:
        return [Window(0, num_frames, 0, None)]
    windows = []
    for start in range(0, num_frames, chunk):
        first = max(0, start - context)
        last = num_frames - (start + chunk) < factor  # a tail too short for a window joins
        end = num_frames if last else min(num_frames, start + chunk + context)
        keep_from = (start - first) // factor
        keep_to = None if last else keep_from + chunk // factor
        windows.append(Window(first, end, keep_from, keep_to))
        if last:
            break
    return windows


def chunked_log_probs(
    run: Callable[[Tensor], Tensor], features: Tensor, chunk: int, context: int
) -> Tensor:
    """``features (T, F)`` of one file → ``(T', V)`` log-probabilities, ``T' = (T // 2) // 2``,
    computed window by window (:func:`chunk_windows`).

    Args:
        run: the acoustic model on one window: ``(T_w, F)`` → ``(T_w', V)``.
        features: the file's features.
        chunk: input frames of one chunk (a multiple of 4).
        context: input frames of context on each side (a multiple of 4).
    """
    windows = chunk_windows(features.shape[0], chunk, context)
    if len(windows) == 1:
        return run(features)
    parts = [run(features[w.start : w.end])[w.keep_from : w.keep_to] for w in windows]
    return torch.cat(parts)


def pause_segments(log_probs: Tensor, blank: int, min_frames: int) -> list[tuple[int, int]]:
    """Output-frame ranges ``[start, end)`` of ``log_probs (T', V)`` between pauses: runs of at
    least ``min_frames`` frames whose best label is the blank, cut in their middle. Runs at the
    very start or end separate nothing. The ranges cover ``[0, T')`` in order.

    A model trained on segmented utterances has never seen a word boundary at an utterance's
    edge, so in a long recording it emits none in the pause between two sentences and the words
    on either side run together; searching each range alone and joining the texts with a space
    puts the boundary back (docs/export.md, "Long recordings").
    """
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1, got {min_frames}")
    is_blank = (log_probs.argmax(dim=-1) == blank).tolist()  # (T',)
    cuts, run_start = [0], None
    for t, b in enumerate([*is_blank, False]):  # a sentinel ends a trailing run
        if b and run_start is None:
            run_start = t
        elif not b and run_start is not None:
            if t - run_start >= min_frames and run_start > 0 and t < len(is_blank):
                cuts.append((run_start + t) // 2)
            run_start = None
    cuts.append(len(is_blank))
    return list(itertools.pairwise(cuts))
