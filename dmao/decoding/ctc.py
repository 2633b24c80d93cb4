"""CTC decoding: greedy (best path) and prefix beam search, without a language model.

Both decoders take the model's log-probabilities, ``(B, T', V)`` for a batch or ``(T', V)`` for
one utterance, with the blank at ``blank_id`` (0 in every dmao tokenizer), and return token ids.

Why the prefix beam search is written here rather than imported: no maintained library that we
may depend on provides the *exact* CTC prefix beam search. torchaudio's decoder is ruled out (the
project never depends on torchaudio); flashlight-text's ``LexiconFreeDecoder`` (``pip install
flashlight-text``) and pyctcdecode are token/word-level beam searches built around LM fusion whose
hypothesis scores are not the sum over all alignments of a prefix; k2 needs a matching compiled
build. The reference algorithm (Hannun et al., 2014, "First-Pass Large Vocabulary Continuous
Speech Recognition using Bi-Directional Recurrent DNNs"; the same recursion as ESPnet/WeNet
``ctc_prefix_beam_search``) is about forty lines, so it lives here, in log space, and its tests
compare it against exhaustive enumeration of all alignments.
"""

from __future__ import annotations

import math

import torch

__all__ = ["beam_search_batch", "greedy_decode", "prefix_beam_search"]

_NEG_INF = -math.inf


def _check_batch(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    if log_probs.dim() != 3:
        raise ValueError(
            f"log_probs must be (B, T, V), got a tensor of shape {tuple(log_probs.shape)}"
        )
    B, T, _ = log_probs.shape
    if lengths.shape != (B,):
        raise ValueError(
            f"lengths must be (B,) = ({B},) to match log_probs {tuple(log_probs.shape)}, "
            f"got shape {tuple(lengths.shape)}"
        )
    if B > 0 and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(
            f"lengths must lie in [0, T={T}], got min {int(lengths.min())}, "
            f"max {int(lengths.max())}"
        )


def greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int = 0
) -> list[list[int]]:
    """Best-path decoding: frame-wise argmax, collapse repeats, drop blanks.

    Args:
        log_probs: ``(B, T, V)`` CTC log-probabilities (any scores with the same argmax work).
        lengths: ``(B,)`` number of valid frames per utterance; frames ``t >= lengths[b]`` are
            ignored.
        blank_id: index of the blank token.

    Returns:
        ``B`` lists of token ids.
    """
    _check_batch(log_probs, lengths)
    B, T, _ = log_probs.shape
    best = log_probs.argmax(dim=-1)  # (B, T)
    # A frame emits a token when it is not blank and differs from the previous frame; the first
    # frame's "previous" is a sentinel that matches no token id.
    previous = torch.cat([best.new_full((B, 1), -1), best[:, :-1]], dim=1)  # (B, T)
    frame_index = torch.arange(T, device=best.device).unsqueeze(0)  # (1, T)
    valid = frame_index < lengths.to(best.device).unsqueeze(1)  # (B, T)
    keep = (best != previous) & (best != blank_id) & valid  # (B, T)
    best, keep = best.cpu(), keep.cpu()
    return [best[b][keep[b]].tolist() for b in range(B)]


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for Python floats, exact for -inf operands."""
    if a < b:
        a, b = b, a
    if b == _NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def prefix_beam_search(
    log_probs: torch.Tensor,
    beam_size: int = 8,
    blank_id: int = 0,
    token_prune_threshold: float | None = None,
) -> list[tuple[list[int], float]]:
    """CTC prefix beam search without a language model (Hannun et al., 2014).

    Every hypothesis is a label prefix with two log-probabilities: of all alignments of the
    frames so far that collapse to the prefix and end in blank (``pb``) or in its last label
    (``pnb``). Per frame each prefix is carried over by a blank or by repeating its last label,
    and extended by candidate labels; prefixes reached in several ways are merged by summing, and
    the ``beam_size`` most probable survive. The returned scores are therefore the log of the sum
    over all alignments of each prefix (exact when no prefix is pruned, i.e. for a beam at least
    as large as the number of distinct prefixes).

    Candidate labels per frame are the ``beam_size`` most probable non-blank tokens (as in WeNet's
    ``ctc_prefix_beam_search``): a lower-ranked token extends a prefix to something less probable
    than ``beam_size`` other extensions of the same prefix, which the beam would drop anyway
    (except where extensions merge with other prefixes or repeat the last label). Unlike WeNet,
    carrying a prefix over by repeating its last label does not depend on that label being a
    candidate.

    Args:
        log_probs: ``(T, V)`` CTC log-probabilities of one utterance (already cut to its length).
        beam_size: number of prefixes kept per frame, and of candidate tokens per frame.
        blank_id: index of the blank token.
        token_prune_threshold: optional speed setting, a probability. Tokens whose probability at
            a frame is below it do not extend prefixes at that frame. Since the non-blank
            probabilities sum to ``1 - p(blank)``, ``1e-3`` also skips the extension step of every
            frame with ``p(blank) > 0.999`` (most frames of a trained CTC model), leaving only the
            blank/repeat carry-over there. ``None`` (default) prunes only to the top tokens.

    Returns:
        Up to ``beam_size`` pairs ``(token_ids, log_prob)``, most probable first. For ``T = 0``
        this is ``[([], 0.0)]``.
    """
    if log_probs.dim() != 2:
        raise ValueError(
            f"log_probs must be (T, V) for one utterance, got shape {tuple(log_probs.shape)}; "
            "use beam_search_batch for (B, T, V)"
        )
    T, V = log_probs.shape
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 0 <= blank_id < V:
        raise ValueError(f"blank_id {blank_id} is outside the vocabulary [0, {V})")
    if token_prune_threshold is not None and not 0.0 <= token_prune_threshold <= 1.0:
        raise ValueError(
            f"token_prune_threshold is a probability in [0, 1], got {token_prune_threshold}"
        )

    # Python floats (double) from here on: per-frame tensor ops on a handful of prefixes would be
    # dominated by dispatch overhead.
    log_probs = log_probs.detach().to("cpu", torch.float64)
    # Candidate tokens per frame, chosen in one vectorised step over all frames.
    non_blank = log_probs.clone()
    non_blank[:, blank_id] = _NEG_INF
    k = min(beam_size, V - 1)
    top_values, top_ids = non_blank.topk(k, dim=-1)  # (T, k)
    keep = top_values > _NEG_INF
    if token_prune_threshold is not None and token_prune_threshold > 0.0:
        keep &= top_values >= math.log(token_prune_threshold)
    candidates = [ids[mask].tolist() for ids, mask in zip(top_ids, keep, strict=True)]
    frames = log_probs.tolist()

    # prefix -> [log p(prefix, ending in blank), log p(prefix, ending in its last label)]
    beam: dict[tuple[int, ...], list[float]] = {(): [0.0, _NEG_INF]}
    for t, (lp, tokens) in enumerate(zip(frames, candidates, strict=True)):
        p_blank = lp[blank_id]
        next_beam: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beam.items():
            p_total = _logaddexp(pb, pnb)
            # Carry over by a blank frame.
            entry = next_beam.setdefault(prefix, [_NEG_INF, _NEG_INF])
            entry[0] = _logaddexp(entry[0], p_total + p_blank)
            last = prefix[-1] if prefix else None
            if last is not None:
                # Carry over by repeating the last label: only from alignments that already
                # end in it (a blank in between would start a new label instead).
                entry[1] = _logaddexp(entry[1], pnb + lp[last])
            for token in tokens:
                extended = next_beam.setdefault((*prefix, token), [_NEG_INF, _NEG_INF])
                # A repeated label is a new label only after a blank ("a_a" -> "aa").
                from_score = pb if token == last else p_total
                extended[1] = _logaddexp(extended[1], from_score + lp[token])
        scored = [(_logaddexp(pb, pnb), prefix) for prefix, (pb, pnb) in next_beam.items()]
        # Impossible prefixes (e.g. "aa" from two frames) have probability 0: never keep them.
        scored = [item for item in scored if item[0] > _NEG_INF]
        if not scored:
            raise ValueError(
                f"no prefix has a finite log-probability after frame {t} of {T}: log_probs "
                "contain NaN or a frame whose tokens are all -inf"
            )
        scored.sort(key=lambda item: item[0], reverse=True)
        beam = {prefix: next_beam[prefix] for _, prefix in scored[:beam_size]}

    return [(list(prefix), _logaddexp(pb, pnb)) for prefix, (pb, pnb) in beam.items()]


def beam_search_batch(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    beam_size: int = 8,
    blank_id: int = 0,
    token_prune_threshold: float | None = None,
) -> list[list[int]]:
    """Run :func:`prefix_beam_search` on each utterance of a batch and keep the best prefix.

    Args:
        log_probs: ``(B, T, V)`` CTC log-probabilities.
        lengths: ``(B,)`` number of valid frames per utterance.
        beam_size, blank_id, token_prune_threshold: as in :func:`prefix_beam_search`.

    Returns:
        ``B`` lists of token ids.
    """
    _check_batch(log_probs, lengths)
    log_probs = log_probs.detach().cpu()
    return [
        prefix_beam_search(
            log_probs[b, : int(length)],
            beam_size=beam_size,
            blank_id=blank_id,
            token_prune_threshold=token_prune_threshold,
        )[0][0]
        for b, length in enumerate(lengths.tolist())
    ]
