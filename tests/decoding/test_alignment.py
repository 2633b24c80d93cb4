"""The CTC Viterbi path of a given token sequence, against every path enumerated."""

from __future__ import annotations

import itertools

import pytest
import torch

from dmao.decoding.alignment import ctc_best_path
from dmao.decoding.ctc import greedy_decode


def _collapse(path: list[int], blank: int = 0) -> list[int]:
    out, previous = [], None
    for token in path:
        if token != blank and token != previous:
            out.append(token)
        previous = token
    return out


@pytest.mark.parametrize("seed", range(20))
def test_it_is_the_best_of_all_paths_that_spell_the_tokens(seed):
    generator = torch.Generator().manual_seed(seed)
    T, V = 6, 3
    log_probs = torch.log_softmax(torch.randn(T, V, generator=generator), dim=-1)  # (T, V)
    tokens = [[1], [2, 1], [1, 1], [2, 2, 1], []][seed % 5]
    path = ctc_best_path(log_probs, tokens)
    assert len(path) == T and _collapse(path) == tokens
    spelling = [p for p in itertools.product(range(V), repeat=T) if _collapse(list(p)) == tokens]
    score = lambda p: float(sum(log_probs[t, k] for t, k in enumerate(p)))  # noqa: E731
    assert score(path) == pytest.approx(max(score(p) for p in spelling), abs=1e-5)


def test_for_the_greedy_hypothesis_it_is_the_argmax_path():
    log_probs = torch.log_softmax(
        torch.randn(40, 6, generator=torch.Generator().manual_seed(1)), -1
    )
    tokens = greedy_decode(log_probs[None], torch.tensor([40]))[0]
    assert ctc_best_path(log_probs, tokens) == log_probs.argmax(dim=-1).tolist()


def test_impossible_requests_are_refused():
    log_probs = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="need at least 4 frames, got 3"):
        ctc_best_path(log_probs, [1, 1, 2])  # the repeat needs a blank between
    with pytest.raises(ValueError, match="must not contain the blank"):
        ctc_best_path(log_probs, [0, 1])
    assert ctc_best_path(log_probs, []) == [0, 0, 0]
