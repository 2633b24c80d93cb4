"""The best CTC frame path of a given token sequence (Viterbi forced alignment).

A prefix beam search returns tokens but no frame path, so it has no word times; the most likely
path that spells its hypothesis gives them, in the same form as greedy decoding's argmax path
(``dmao.decoding.timing.word_timings`` reads either). For the greedy hypothesis this path *is*
the argmax path, which is the best of all paths and spells it.

This is the textbook CTC Viterbi recursion (Graves et al., 2006) over the ``2U + 1`` states of the
blank-interleaved label sequence, vectorised over states; torchaudio's ``forced_align`` does the
same but does not install beside the pinned torch. O(T · U) time, O(T · U) bytes of back
pointers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ctc_best_path"]


def ctc_best_path(log_probs: torch.Tensor, tokens: Sequence[int], blank_id: int = 0) -> list[int]:
    """The most likely frame path of ``log_probs`` whose CTC collapse is ``tokens``.

    Args:
        log_probs: ``(T, V)`` CTC log-probabilities of one utterance (any per-frame scores).
        tokens: ``(U,)`` token ids, no blanks.
        blank_id: the CTC blank.

    Returns:
        ``T`` token ids, one per frame (blanks and repeats included), that collapse to ``tokens``.
        Ties go to the path that stays in a state longest.

    Raises:
        ValueError: ``tokens`` holds the blank, or needs more frames than there are (``U`` plus
            one per repeated neighbour).
    """
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (T, V), got shape {tuple(log_probs.shape)}")
    labels = [int(t) for t in tokens]
    if blank_id in labels:
        raise ValueError(f"tokens must not contain the blank ({blank_id}): {labels}")
    T = log_probs.shape[0]
    needed = len(labels) + sum(a == b for a, b in itertools.pairwise(labels))
    if needed > T:
        raise ValueError(f"{len(labels)} tokens need at least {needed} frames, got {T}")
    if not labels:
        return [blank_id] * T
    states = np.full(2 * len(labels) + 1, blank_id, dtype=np.int64)  # (S,) blank, l1, blank, ...
    states[1::2] = labels
    S = len(states)
    scores = log_probs.detach().float().cpu().numpy()[:, states]  # (T, S)
    # A label state may be entered from two states back (skipping the blank between) unless
    # that state holds the same label: repeats need a blank between them.
    may_skip = np.zeros(S, dtype=bool)
    may_skip[2:] = (states[2:] != blank_id) & (states[2:] != states[:-2])
    best = np.full(S, -np.inf)
    best[:2] = scores[0, :2]  # a path starts with a blank or the first label
    back = np.zeros((T, S), dtype=np.int8)  # 0 = stayed, 1 = from s-1, 2 = from s-2
    for t in range(1, T):
        came = np.full((3, S), -np.inf)  # (stay, from s-1, from s-2) × S
        came[0] = best
        came[1, 1:] = best[:-1]
        came[2, 2:] = np.where(may_skip[2:], best[:-2], -np.inf)
        back[t] = came.argmax(axis=0)
        best = came[back[t], np.arange(S)] + scores[t]
    state = S - 1 if best[S - 1] >= best[S - 2] else S - 2  # ends in the last blank or label
    path = [0] * T
    for t in range(T - 1, -1, -1):
        path[t] = int(states[state])
        state -= int(back[t, state])
    return path
