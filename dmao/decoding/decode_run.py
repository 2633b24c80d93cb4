"""Decode a corpus split with a trained run and score it (``dmao decode``).

The model's log-probabilities are computed once per split
(:func:`dmao.decoding.run_loading.compute_posteriors`) and then
decoded (:func:`decode_posteriors`) greedily, by prefix beam search or by LM beam search
(:mod:`dmao.decoding.lm_decoder`); ``dmao tune`` (:mod:`dmao.decoding.tune`) reuses the two steps
for a grid of search settings. Options: the model can be the average of the last checkpoints
(``avg``, :mod:`dmao.training.averaging`), a CTC prior can be divided out of the posteriors
(``prior_scale``, :mod:`dmao.decoding.prior`), N-best lists can be kept (``nbest``),
and the errors can be counted as NIST sclite counts them (``align="sclite"``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dmao.config import DecodeConfig
from dmao.data.tokenizer import Tokenizer
from dmao.decoding.alignment import ctc_best_path
from dmao.decoding.confidence import ConfidenceMeasure, frame_confidence
from dmao.decoding.ctc import greedy_decode, prefix_beam_search
from dmao.decoding.lm_decoder import (
    LM_OPTION_FIELDS,
    CTCLMDecoder,
    LMDecoderOptions,
    token_symbols,
    word_boundary_symbol,
)
from dmao.decoding.prior import DEFAULT_PRIOR_UTTERANCES, CTCPrior, apply_prior
from dmao.decoding.run_loading import LoadedForDecoding, SplitPosteriors, load_for_decoding
from dmao.decoding.timing import WordTiming, word_timings
from dmao.evaluation.confidence import (
    ConfidenceQuality,
    calibration_on,
    labelled_words,
    quality_of,
)
from dmao.evaluation.nbest import (
    NBest,
    OracleScore,
    distinct_texts,
    oracle_score,
    write_nbest,
)
from dmao.evaluation.sclite import find_sclite, score_with_sclite, trn_id, write_ctm, write_trn
from dmao.evaluation.wer import ALIGNERS, ScoreResult, write_hypotheses

__all__ = [
    "DecodeResult",
    "Decoded",
    "build_lm_decoder",
    "decode_loaded",
    "decode_posteriors",
    "decode_split",
    "decoder_label",
    "default_decode_dir",
    "lm_decoder_options",
]

log = logging.getLogger(__name__)


@dataclass
class DecodeResult:
    """Score of one decoded split plus where the hypotheses were written."""

    split: str
    method: str
    score: ScoreResult
    hypotheses_path: Path
    real_time_factor: float
    """Decoding wall time divided by the audio duration."""
    checkpoint: str
    confidence: ConfidenceQuality | None = None
    """How well the words' confidences (in ``hyp.ctm``) tell correct words from errors."""
    confidence_measure: str = ""
    """How they were computed (:attr:`dmao.decoding.confidence.ConfidenceMeasure.label`)."""
    oracle: OracleScore | None = None
    """With ``nbest``: the oracle WER of the N-best lists (:mod:`dmao.evaluation.nbest`)."""


def decoder_label(dec: DecodeConfig) -> str:
    """How a decode is named in folders and tables: ``greedy``, ``beam8``, ``lm-lexicon50``."""
    if dec.method == "greedy":
        return "greedy"
    if dec.method == "beam":
        return f"beam{dec.beam_size}"
    return f"lm-{'lexicon' if dec.lexicon_path else 'lexfree'}{dec.beam_size}"


def lm_decoder_options(dec: DecodeConfig) -> LMDecoderOptions:
    """The LM search settings of ``dec`` (its fields named in ``LM_OPTION_FIELDS``)."""
    return LMDecoderOptions(**{key: getattr(dec, key) for key in LM_OPTION_FIELDS})


def build_lm_decoder(dec: DecodeConfig, tokenizer: Tokenizer) -> CTCLMDecoder:
    """The LM decoder that the ``lm_*`` fields of ``dec`` describe."""
    if not dec.lm_path:
        raise ValueError("decode.method=lm needs decode.lm_path (dmao decode --lm FILE)")
    options = lm_decoder_options(dec)
    return CTCLMDecoder.from_tokenizer(tokenizer, dec.lm_path, dec.lexicon_path, options)


@dataclass
class Decoded:
    """Hypotheses of a split, with the word times of each (from its frame path)."""

    hyps: list[str]
    timings: list[list[WordTiming]]
    decode_seconds: float
    paths: list[list[int]]
    """Each utterance's frame path (``(T',)`` token per frame) that spells its hypothesis."""
    nbests: list[NBest] | None = None
    """With ``nbest``: each utterance's best hypotheses with different texts, best first."""


def decode_posteriors(
    posteriors: SplitPosteriors,
    dec: DecodeConfig,
    tokenizer: Tokenizer,
    lm_decoder: CTCLMDecoder | None = None,
    *,
    log_prior: torch.Tensor | None = None,
    prior_scale: float = 0.0,
    confidence: ConfidenceMeasure | None = None,
    nbest: int = 0,
) -> Decoded:
    """Decode precomputed log-probabilities with the method of ``dec`` (``lm_decoder`` reuses an
    already built LM decoder for ``method=lm``).

    Args:
        log_prior, prior_scale: a ``(V,)`` CTC log-prior; each utterance is decoded from
            ``log_probs - prior_scale · log_prior`` (:func:`dmao.decoding.prior.apply_prior`).
        confidence: how each word's confidence is computed from the model's posteriors (before
            the prior; :mod:`dmao.decoding.confidence`); default
            :meth:`~dmao.decoding.confidence.ConfidenceMeasure.for_method`.
        nbest: also keep each utterance's ``nbest`` best hypotheses with different texts
            (``beam``: the prefix beam's, at most ``beam_size``; ``lm``: the LM search's final
            ones); the first is the hypothesis decoded without it.
    """
    if nbest and dec.method == "greedy":
        raise ValueError("greedy search keeps one hypothesis: N-best needs --method beam or lm")
    if nbest < 0:
        raise ValueError(f"nbest must be >= 0, got {nbest}")
    confidence = confidence or ConfidenceMeasure.for_method(dec.method)
    if prior_scale and log_prior is None:
        raise ValueError("prior_scale needs a log_prior (dmao.decoding.prior.ctc_prior_for_run)")
    symbols = token_symbols(tokenizer)
    boundary = word_boundary_symbol(tokenizer)
    hyps: list[str] = []
    timings: list[list[WordTiming]] = []
    paths: list[list[int]] = []
    nbests: list[NBest] = []
    if dec.method == "lm" and lm_decoder is None:
        lm_decoder = build_lm_decoder(dec, tokenizer)
    start = time.perf_counter()
    for log_probs in posteriors.log_probs:
        frame_conf = frame_confidence(log_probs, confidence).tolist()  # (T',)
        if prior_scale:
            log_probs = apply_prior(log_probs, log_prior, prior_scale)  # (T', V)
        if dec.method == "greedy":
            path = log_probs.argmax(dim=-1).tolist()  # (T',)
            lengths = torch.tensor([log_probs.shape[0]])
            hyps.append(
                tokenizer.decode(greedy_decode(log_probs[None], lengths, tokenizer.blank_id)[0])
            )
        elif dec.method == "beam":
            beam = prefix_beam_search(log_probs, dec.beam_size, tokenizer.blank_id)
            tokens = beam[0][0]  # the best prefix, as beam_search_batch returns it
            hyps.append(tokenizer.decode(tokens))
            if nbest:
                scored = ((tokenizer.decode(prefix), score) for prefix, score in beam)
                nbests.append(distinct_texts(scored, lambda hypothesis: hypothesis[0], nbest))
            # The search keeps no frame path: the best one that spells its hypothesis.
            path = ctc_best_path(log_probs, tokens, tokenizer.blank_id)
        else:
            found = lm_decoder.decode_nbest(log_probs, max(nbest, 1))
            hypothesis = found[0]
            if nbest:
                nbests.append([(h.text, h.score) for h in found])
            path = hypothesis.frame_tokens
            hyps.append(hypothesis.text)
        paths.append(list(path))
        timings.append(
            word_timings(
                path,
                symbols,
                tokenizer.blank_id,
                boundary,
                frame_confidence=frame_conf,
                aggregation=confidence.aggregation,
            )
        )
    return Decoded(hyps, timings, time.perf_counter() - start, paths, nbests if nbest else None)


def decode_split(
    run_dir: str | Path,
    split: str,
    *,
    method: str | None = None,
    beam_size: int | None = None,
    checkpoint: str | None = None,
    device: str = "auto",
    progress_bar: bool = True,
    decode_overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    align: str = "kaldialign",
    avg: int | None = None,
    prior_scale: float = 0.0,
    prior_utterances: int = DEFAULT_PRIOR_UTTERANCES,
    ema: bool = False,
    confidence: ConfidenceMeasure | None = None,
    nbest: int = 0,
) -> DecodeResult:
    """Decode corpus part ``split`` with the run's model and score it.

    Writes into ``out_dir`` (default ``RUN/decode/<split>-<method>/``): ``hypotheses.txt`` (per
    utterance TSV), ``result.json``, sclite ``ref.trn`` / ``hyp.trn`` and ``hyp.ctm`` (word
    times from the decoder's frame path, or the best path of a beam hypothesis).

    Args:
        method, beam_size, checkpoint: override ``decode.*`` of the run's config.
        decode_overrides: further ``DecodeConfig`` fields, e.g. ``{"lm_path": ..., "lm_weight":
            0.8}``.
        out_dir: where to write instead of the run folder.
        align: how errors are counted: ``kaldialign`` (minimum edit distance) or ``sclite``
            (NIST sclite's weighted alignment; where the ``sclite`` binary is installed its
            corpus counts on the written trn files are recorded next to ours).
        avg: decode the average of the newest ``avg`` step checkpoints with the final
            architecture, ending at ``checkpoint`` (default ``last``); see
            :func:`dmao.training.averaging.averaged_checkpoint`.
        prior_scale: divide the CTC prior out of the posteriors with this scale (0 = off); the
            prior is estimated from ``prior_utterances`` training utterances once per checkpoint
            and kept in ``RUN/ctc_prior.pt``.
        ema: decode the checkpoint's running average of the weights (``train.ema_decay``) instead
            of its live weights; written to ``RUN/decode/<split>-<method>-ema/`` by default.
        confidence: how the words' confidences in ``hyp.ctm`` are computed (default
            :meth:`~dmao.decoding.confidence.ConfidenceMeasure.for_method`).
        nbest: also write each utterance's ``nbest`` best hypotheses (``nbest.txt``; beam and
            LM search) and record their oracle WER.
    """
    if prior_scale < 0:
        raise ValueError(f"--prior-scale must be >= 0, got {prior_scale}")
    if align not in ALIGNERS:
        raise ValueError(f"--align must be one of {ALIGNERS}, got {align!r}")
    loaded = load_for_decoding(
        Path(run_dir),
        method=method,
        beam_size=beam_size,
        checkpoint=checkpoint,
        device=device,
        decode_overrides=decode_overrides,
        avg=avg,
        ema=ema,
        prior=bool(prior_scale),
    )
    # Build the LM decoder before the forward pass so that a bad LM/lexicon fails fast.
    lm_decoder = (
        build_lm_decoder(loaded.dec, loaded.tokenizer) if loaded.dec.method == "lm" else None
    )
    posteriors = loaded.posteriors(split, progress_bar=progress_bar)
    prior = None
    if prior_scale:
        prior = loaded.ctc_prior(prior_utterances, progress_bar=progress_bar)
    return decode_loaded(
        loaded,
        posteriors,
        split,
        lm_decoder=lm_decoder,
        prior=prior,
        prior_scale=prior_scale,
        out_dir=out_dir,
        align=align,
        confidence=confidence,
        nbest=nbest,
    )


def default_decode_dir(loaded: LoadedForDecoding, split: str) -> Path:
    """``RUN/decode/<split>-<method>`` (``-ema`` for the running average of the weights)."""
    return loaded.run_dir / "decode" / f"{split}-{loaded.dec.method}{'-ema' if loaded.ema else ''}"


def decode_loaded(
    loaded: LoadedForDecoding,
    posteriors: SplitPosteriors,
    split: str,
    *,
    lm_decoder: CTCLMDecoder | None = None,
    prior: CTCPrior | None = None,
    prior_scale: float = 0.0,
    out_dir: str | Path | None = None,
    align: str = "kaldialign",
    confidence: ConfidenceMeasure | None = None,
    nbest: int = 0,
) -> DecodeResult:
    """Decode the posteriors of ``split`` with ``loaded.dec``'s search, score them and write what
    :func:`decode_split` writes (which calls it after the forward pass; ``dmao tune`` calls it
    on the posteriors its grid was searched on).

    Args:
        lm_decoder: an LM decoder already built for ``loaded.dec`` (else built here).
        prior, prior_scale: the model's CTC prior (:meth:`LoadedForDecoding.ctc_prior`) and the
            scale it is divided out with.
        out_dir: default :func:`default_decode_dir`.
    """
    dec, tokenizer, run_dir = loaded.dec, loaded.tokenizer, loaded.run_dir
    confidence = confidence or ConfidenceMeasure.for_method(dec.method)
    decoded = decode_posteriors(
        posteriors,
        dec,
        tokenizer,
        lm_decoder,
        log_prior=prior.log_prior if prior is not None else None,
        prior_scale=prior_scale,
        confidence=confidence,
        nbest=nbest,
    )
    elapsed = posteriors.forward_seconds + decoded.decode_seconds
    refs, hyps, ids = posteriors.refs, decoded.hyps, posteriors.ids
    checkpoint_label = loaded.checkpoint_label

    label = decoder_label(dec)
    out_dir = Path(out_dir) if out_dir is not None else default_decode_dir(loaded, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    hyp_path = out_dir / "hypotheses.txt"
    score = write_hypotheses(hyp_path, ids, refs, hyps, aligner=align)
    # sclite ids: speaker first (LibriSpeech-style ids already are), so -i rm reports per speaker.
    speakers = posteriors.speakers or [None] * len(ids)
    trn_ids = [trn_id(i, spk) for i, spk in zip(ids, speakers, strict=True)]
    utterances = score.utterances
    write_trn(out_dir / "ref.trn", {i: u.ref for i, u in zip(trn_ids, utterances, strict=True)})
    write_trn(out_dir / "hyp.trn", {i: u.hyp for i, u in zip(trn_ids, utterances, strict=True)})
    write_ctm(out_dir / "hyp.ctm", dict(zip(trn_ids, decoded.timings, strict=True)))
    # How well the words' confidences tell right from wrong, and their Platt scaling fitted on
    # this split (for `dmao export --confidence-from` of a dev decode).
    labelled = labelled_words(
        [u.ref for u in utterances],
        [[w.word for w in words] for words in decoded.timings],
        [[w.confidence for w in words] for words in decoded.timings],
    )
    quality = quality_of(*labelled)
    calibration = calibration_on(*labelled)
    oracle = None
    if decoded.nbests is not None:
        write_nbest(out_dir / "nbest.txt", ids, decoded.nbests)  # ids as in hypotheses.txt
        oracle = oracle_score(refs, decoded.nbests, aligner=align)
    result = DecodeResult(
        split=split,
        method=label,
        score=score,
        hypotheses_path=hyp_path,
        real_time_factor=elapsed / max(posteriors.audio_seconds, 1e-9),
        checkpoint=checkpoint_label,
        confidence=quality,
        confidence_measure=confidence.label,
        oracle=oracle,
    )
    record = {
        "run": str(run_dir),
        "split": split,
        "method": result.method,
        "checkpoint": result.checkpoint,
        **score.as_record(align),
        "audio_seconds": posteriors.audio_seconds,
        "decode_seconds": elapsed,
        "real_time_factor": result.real_time_factor,
    }
    if align == "sclite" and find_sclite() is not None:
        record["sclite_binary"] = _sclite_check(out_dir, score)
    if loaded.averaged_from is not None:
        record["averaged_from"] = loaded.averaged_from
    if prior is not None:
        record["prior"] = {
            "scale": prior_scale,
            "file": "ctc_prior.pt",
            "checkpoint": prior.checkpoint,
            "num_utterances": prior.num_utterances,
            "num_frames": prior.num_frames,
            "parts": prior.parts,
        }
    record["word_confidence"] = {
        "measure": result.confidence_measure,
        **quality.as_dict(),
        "calibration": None if calibration is None else asdict(calibration),
    }
    if oracle is not None:
        record["nbest"] = {
            "n": nbest,
            "file": "nbest.txt",
            "mean_hypotheses": oracle.mean_length,
            "oracle_wer": oracle.wer,
            "oracle_word_counts": oracle.word.as_record(),
            "oracle_not_first": sum(r > 1 for r in oracle.chosen_ranks) / max(len(refs), 1),
        }
    if dec.method == "lm":
        record["lm"] = {
            key: getattr(dec, key) for key in ("lm_path", "lexicon_path", *LM_OPTION_FIELDS)
        }
    with open(out_dir / "result.json", "w") as f:
        json.dump(record, f, indent=1)
    return result


def _sclite_check(out_dir: Path, score: ScoreResult) -> dict[str, Any]:
    """The real ``sclite``'s word counts on the written trn files, and whether they equal ours
    (a mismatch is logged: it would be a bug in :mod:`dmao.evaluation.sclite_align`)."""
    theirs = score_with_sclite(out_dir / "ref.trn", out_dir / "hyp.trn")
    counts = {
        "substitutions": theirs.substitutions,
        "deletions": theirs.deletions,
        "insertions": theirs.insertions,
        "ref_len": theirs.num_words,
    }
    equal = counts == score.word.as_record()
    if not equal:
        log.warning("sclite counts %s, dmao's sclite alignment %s", counts, score.word.as_record())
    return {"command": " ".join(find_sclite()), "word_counts": counts, "equal": equal}
