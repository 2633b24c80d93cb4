"""CTC decoders against exhaustive enumeration of alignments."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dmao.decoding import beam_search_batch, greedy_decode, prefix_beam_search


def _collapse(path: tuple[int, ...], blank_id: int) -> tuple[int, ...]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    labels = [token for i, token in enumerate(path) if i == 0 or token != path[i - 1]]
    return tuple(token for token in labels if token != blank_id)


def _exhaustive(log_probs: torch.Tensor, blank_id: int) -> dict[tuple[int, ...], float]:
    """log p(labels) for every label sequence, summing all V^T alignments (float64)."""
    lp = log_probs.double()
    T, V = lp.shape
    per_label: dict[tuple[int, ...], list[float]] = {}
    for path in itertools.product(range(V), repeat=T):
        score = float(lp[torch.arange(T), torch.tensor(path)].sum()) if T else 0.0
        per_label.setdefault(_collapse(path, blank_id), []).append(score)
    return {
        labels: torch.tensor(s, dtype=torch.float64).logsumexp(0).item()
        for labels, s in per_label.items()
    }


def _random_log_probs(T: int, V: int, generator: torch.Generator) -> torch.Tensor:
    # Scaled logits give a mix of peaky and flat frames; float64 so that the probabilities of
    # all label sequences sum to one within rounding.
    logits = 3.0 * torch.randn(T, V, generator=generator, dtype=torch.float64)
    return logits.log_softmax(dim=-1)


@pytest.mark.parametrize("blank_id", [0, 2])
def test_prefix_beam_search_matches_exhaustive_enumeration(blank_id: int) -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(40):
        T = 1 + trial % 6
        V = 3 + trial % 2
        log_probs = _random_log_probs(T, V, generator)
        exact = _exhaustive(log_probs, blank_id)
        # A beam larger than the number of distinct prefixes (at most sum_l (V-1)^l) prunes
        # nothing, so every returned score must be exact, not only the best one.
        nbest = prefix_beam_search(log_probs, beam_size=2000, blank_id=blank_id)
        best_labels, best_score = max(exact.items(), key=lambda item: item[1])
        assert nbest[0][1] == pytest.approx(best_score, abs=1e-5)
        assert tuple(nbest[0][0]) == best_labels
        assert len(nbest) == len(exact)
        for labels, score in nbest:
            assert score == pytest.approx(exact[tuple(labels)], abs=1e-5)
        scores = [score for _, score in nbest]
        assert scores == sorted(scores, reverse=True)
        # Label sequences partition the alignments, so their probabilities sum to one.
        assert torch.tensor(scores, dtype=torch.float64).logsumexp(0).item() == pytest.approx(
            0.0, abs=1e-9
        )


def test_small_beam_scores_are_lower_bounds() -> None:
    """A pruned search drops alignments, so each score is at most its prefix's exact one."""
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        log_probs = _random_log_probs(6, 4, generator)
        exact = _exhaustive(log_probs, blank_id=0)
        for labels, score in prefix_beam_search(log_probs, beam_size=3):
            assert score <= exact[tuple(labels)] + 1e-12


def test_prefix_beam_search_returns_beam_size_hypotheses() -> None:
    log_probs = _random_log_probs(20, 6, torch.Generator().manual_seed(2))
    nbest = prefix_beam_search(log_probs, beam_size=5)
    assert len(nbest) == 5
    assert len({tuple(labels) for labels, _ in nbest}) == 5


def test_empty_input_gives_empty_hypothesis() -> None:
    assert prefix_beam_search(torch.zeros(0, 5)) == [([], 0.0)]
    lengths = torch.tensor([0, 0])
    assert greedy_decode(torch.zeros(2, 0, 5), lengths) == [[], []]
    assert beam_search_batch(torch.zeros(2, 3, 5), lengths) == [[], []]


def _peaky(path: list[int], V: int, peak: float = 0.99) -> torch.Tensor:
    """(T, V) log-probs that put ``peak`` on ``path[t]`` at each frame."""
    probs = torch.full((len(path), V), (1.0 - peak) / (V - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = peak
    return probs.log()


def test_greedy_collapses_repeats_and_drops_blanks() -> None:
    # "a a _ a b b _ _ c" -> a a b c
    path = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    log_probs = _peaky(path, V=5).unsqueeze(0)
    assert greedy_decode(log_probs, torch.tensor([len(path)])) == [[1, 1, 2, 3]]
    assert greedy_decode(log_probs, torch.tensor([len(path)]), blank_id=2) == [[1, 0, 1, 0, 3]]


def test_greedy_equals_beam_search_on_peaky_distributions() -> None:
    generator = torch.Generator().manual_seed(3)
    B, T, V = 6, 30, 7
    paths = torch.randint(0, V, (B, T), generator=generator)
    paths[paths > 3] = 0  # plenty of blanks, as in a trained model
    log_probs = torch.stack([_peaky(p.tolist(), V) for p in paths])
    lengths = torch.tensor([30, 25, 1, 17, 30, 9])
    greedy = greedy_decode(log_probs, lengths)
    assert beam_search_batch(log_probs, lengths, beam_size=4) == greedy
    # Pruning settings must not change the answer where the model is confident.
    assert beam_search_batch(log_probs, lengths, token_prune_threshold=1e-3) == greedy
    assert beam_search_batch(log_probs, lengths, beam_size=1) == greedy


def test_lengths_are_respected() -> None:
    generator = torch.Generator().manual_seed(4)
    log_probs = (3.0 * torch.randn(3, 12, 5, generator=generator)).log_softmax(-1)
    lengths = torch.tensor([12, 7, 3])
    greedy = greedy_decode(log_probs, lengths)
    beam = beam_search_batch(log_probs, lengths, beam_size=4)
    for b, length in enumerate(lengths.tolist()):
        # Changing frames past the length must not change the result.
        altered = log_probs.clone()
        altered[b, length:] = torch.randn(12 - length, 5).log_softmax(-1)
        assert greedy_decode(altered, lengths)[b] == greedy[b]
        assert beam_search_batch(altered, lengths, beam_size=4)[b] == beam[b]
        # And each item equals decoding it alone, cut to its length.
        alone = log_probs[b : b + 1, :length]
        assert greedy_decode(alone, torch.tensor([length]))[0] == greedy[b]
        assert prefix_beam_search(log_probs[b, :length], beam_size=4)[0][0] == beam[b]


def test_token_prune_threshold_skips_confident_blank_frames() -> None:
    """With threshold 1e-3 a frame with p(blank) > 0.999 only carries prefixes over, and the
    scores stay within the pruned probability mass of the unpruned search."""
    path = [0, 0, 1, 0, 0, 2, 2, 0, 3, 0]
    log_probs = _peaky(path, V=4, peak=0.9995)
    exact = prefix_beam_search(log_probs, beam_size=8)
    pruned = prefix_beam_search(log_probs, beam_size=8, token_prune_threshold=1e-3)
    assert pruned[0][0] == exact[0][0] == [1, 2, 3]
    assert pruned[0][1] <= exact[0][1]
    assert math.exp(exact[0][1]) - math.exp(pruned[0][1]) < 1e-2


def test_input_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        prefix_beam_search(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="blank_id"):
        prefix_beam_search(torch.zeros(3, 4), blank_id=4)
    with pytest.raises(ValueError, match="lengths"):
        greedy_decode(torch.zeros(2, 3, 4), torch.tensor([3, 4]))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        beam_search_batch(torch.zeros(2, 3, 4), torch.tensor([3]))
    with pytest.raises(ValueError, match="NaN"):
        prefix_beam_search(torch.full((3, 4), float("nan")))
