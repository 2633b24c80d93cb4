"""``dmao tune``: choose decode settings on a dev split (docs/decoding.md, "Tuning on dev").

The model's posteriors of the split are computed once (and the CTC prior once, if a prior scale
is tuned); every point of the grid of search settings is then searched and scored on them, the LM
loaded once for all points. The best point has the lowest WER (ties: lower CER, then the earlier
point of the grid). Choose on dev, report on test: the chosen settings then decode the tuned split
(on the same posteriors) and the test splits once, as ``dmao decode`` does (``dmao tune --test``).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dmao.decoding.decode_run import (
    DecodeResult,
    build_lm_decoder,
    decode_loaded,
    decode_posteriors,
    decoder_label,
    lm_decoder_options,
)
from dmao.decoding.prior import DEFAULT_PRIOR_UTTERANCES
from dmao.decoding.run_loading import load_for_decoding
from dmao.evaluation.wer import score_corpus

__all__ = ["FIXED_LM_SETTINGS", "TUNABLE", "Trial", "TuneResult", "check_grid", "tune_split"]

TUNABLE: dict[str, str] = {
    "lm_weight": "--lm-weight",
    "word_score": "--word-score",
    "sil_score": "--sil-score",
    "prior_scale": "--prior-scale",
}
"""The settings a grid may vary, and their ``dmao decode`` flags. All but ``prior_scale`` are
LM-search settings (``--method lm``); ``word_score`` needs a lexicon."""

FIXED_LM_SETTINGS = ("lm_path", "lexicon_path", "beam_threshold", "beam_size_token")
"""The LM-search settings every point of a grid shares (``dmao tune --lm ...``)."""


@dataclass(frozen=True)
class Trial:
    """One grid point, scored."""

    settings: dict[str, float]
    wer: float
    cer: float
    word_errors: int
    ref_words: int
    search_seconds: float


@dataclass
class TuneResult:
    """Every grid point of one split, in grid order."""

    run_dir: Path
    split: str
    method: str
    """The decoder label (``greedy``, ``beam8``, ``lm-lexicon8``...)."""
    checkpoint: str
    trials: list[Trial]
    fixed: dict[str, Any]
    """The settings not on the grid that the points share (``lm_path``, ``beam_size``...)."""
    decodes: list[DecodeResult] = field(default_factory=list)
    """With ``decode_best``: the tuned split decoded with the best point, then each ``test``
    split (as :func:`dmao.decoding.decode_run.decode_split` writes them)."""

    @property
    def best(self) -> Trial:
        """Lowest WER; ties broken by CER, then by grid order."""
        return min(self.trials, key=lambda t: (t.wer, t.cer))

    def decode_flags(self) -> list[str]:
        """The best point as ``dmao decode`` flags (``--lm-weight 1.5 --word-score -1``)."""
        return [
            part
            for key, value in self.best.settings.items()
            for part in (TUNABLE[key], f"{value:g}")
        ]

    def table(self, limit: int = 10) -> str:
        """Markdown: the ``limit`` best points, best first."""
        keys = list(self.trials[0].settings)
        rows = [
            "| " + " | ".join([*keys, "WER %", "CER %", "errors / words"]) + " |",
            "|" + "---:|" * (len(keys) + 3),
        ]
        for t in sorted(self.trials, key=lambda t: (t.wer, t.cer))[:limit]:
            values = [f"{t.settings[k]:g}" for k in keys]
            rows.append(
                "| " + " | ".join(values) + f" | {100 * t.wer:.2f} | {100 * t.cer:.2f} | "
                f"{t.word_errors} / {t.ref_words} |"
            )
        return "\n".join(rows)

    def write(self, out_dir: Path) -> None:
        """``grid.csv`` (one row per point, grid order) and ``best.json``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        keys = list(self.trials[0].settings)
        with open(out_dir / "grid.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*keys, "wer", "cer", "word_errors", "ref_words", "search_seconds"])
            for t in self.trials:
                writer.writerow(
                    [
                        *(t.settings[k] for k in keys),
                        t.wer,
                        t.cer,
                        t.word_errors,
                        t.ref_words,
                        round(t.search_seconds, 3),
                    ]
                )
        best = self.best
        record = {
            "run": str(self.run_dir),
            "split": self.split,
            "method": self.method,
            "checkpoint": self.checkpoint,
            "points": len(self.trials),
            "settings": best.settings,
            "wer": best.wer,
            "cer": best.cer,
            "fixed": self.fixed,
            "decode_flags": self.decode_flags(),
        }
        (out_dir / "best.json").write_text(json.dumps(record, indent=1) + "\n")


def check_grid(grid: Mapping[str, Sequence[float]], method: str, lexicon: bool) -> None:
    """Raise a one-line :class:`ValueError` for a grid ``method`` cannot search."""
    if not grid:
        raise ValueError(f"nothing to tune: give values for at least one of {', '.join(TUNABLE)}")
    for key, values in grid.items():
        if key not in TUNABLE:
            raise ValueError(f"cannot tune {key!r}; tunable: {', '.join(TUNABLE)}")
        if not values:
            raise ValueError(f"{TUNABLE[key]}: no values")
        if key != "prior_scale" and method != "lm":
            raise ValueError(f"{TUNABLE[key]} applies to --method lm only (method: {method})")
    if "word_score" in grid and not lexicon:
        raise ValueError("--word-score applies with a lexicon only (lexicon-free: --sil-score)")
    if any(v < 0 for v in grid.get("prior_scale", ())):
        raise ValueError(f"--prior-scale values must be >= 0, got {list(grid['prior_scale'])}")


def tune_split(
    run_dir: str | Path,
    split: str,
    grid: Mapping[str, Sequence[float]],
    *,
    method: str | None = None,
    beam_size: int | None = None,
    checkpoint: str | None = None,
    device: str = "auto",
    decode_overrides: Mapping[str, Any] | None = None,
    avg: int | None = None,
    ema: bool = False,
    prior_utterances: int = DEFAULT_PRIOR_UTTERANCES,
    align: str = "kaldialign",
    progress_bar: bool = True,
    decode_best: bool = False,
    test: Sequence[str] = (),
    on_grid: Callable[[TuneResult], None] | None = None,
) -> TuneResult:
    """Search and score ``split`` at every point of ``grid`` (``{setting: [values]}``, settings
    from :data:`TUNABLE`; the points are the product of the value lists, in order).

    The other arguments are those of :func:`dmao.decoding.decode_run.decode_split`; a grid
    point's WER equals what ``decode_split`` gives with that point's settings.

    Args:
        decode_best: decode ``split`` with the best point (on the posteriors the grid was
            searched on) and write it where ``dmao decode`` would (``RUN/decode/...``), then
            each of the ``test`` splits.
        on_grid: called with the scored grid before the best point decodes anything (``dmao
            tune`` writes and prints the grid then).
    """
    if split in test:
        raise ValueError(f"--test {split}: the split tuned on cannot also be the one reported")
    if test and not decode_best:
        raise ValueError("test splits are decoded with the best point: decode_best=True")
    run_dir = Path(run_dir)
    loaded = load_for_decoding(
        run_dir,
        method=method,
        beam_size=beam_size,
        checkpoint=checkpoint,
        device=device,
        decode_overrides=decode_overrides,
        avg=avg,
        ema=ema,
        prior=any(grid.get("prior_scale", ())),
    )
    dec, tokenizer = loaded.dec, loaded.tokenizer
    check_grid(grid, dec.method, lexicon=bool(dec.lexicon_path))
    lm_decoder = build_lm_decoder(dec, tokenizer) if dec.method == "lm" else None
    posteriors = loaded.posteriors(split, progress_bar=progress_bar)
    prior = None
    if any(grid.get("prior_scale", ())):
        prior = loaded.ctc_prior(prior_utterances, progress_bar=progress_bar)
    log_prior = prior.log_prior if prior is not None else None
    keys = list(grid)
    trials = []
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = {k: float(v) for k, v in zip(keys, values, strict=True)}
        prior_scale = settings.get("prior_scale", 0.0)
        point = replace(dec, **{k: v for k, v in settings.items() if k != "prior_scale"})
        searcher = (
            None if lm_decoder is None else lm_decoder.with_options(lm_decoder_options(point))
        )
        decoded = decode_posteriors(
            posteriors,
            point,
            tokenizer,
            searcher,
            log_prior=log_prior if prior_scale else None,
            prior_scale=prior_scale,
        )
        score = score_corpus(posteriors.refs, decoded.hyps, aligner=align)
        trials.append(
            Trial(
                settings,
                score.wer,
                score.cer,
                score.word.errors,
                score.word.ref_len,
                decoded.decode_seconds,
            )
        )
    fixed = {
        "method": dec.method,
        "beam_size": dec.beam_size,
        **({k: getattr(dec, k) for k in FIXED_LM_SETTINGS} if dec.method == "lm" else {}),
        "avg": avg,
        "ema": ema,
        "aligner": align,
    }
    result = TuneResult(run_dir, split, decoder_label(dec), loaded.checkpoint_label, trials, fixed)
    if on_grid is not None:
        on_grid(result)
    if decode_best:
        settings = dict(result.best.settings)
        prior_scale = settings.pop("prior_scale", 0.0)
        chosen = loaded.with_decode(**settings)
        searcher = (
            None if lm_decoder is None else lm_decoder.with_options(lm_decoder_options(chosen.dec))
        )
        for part in [split, *test]:
            result.decodes.append(
                decode_loaded(
                    chosen,
                    posteriors
                    if part == split
                    else chosen.posteriors(part, progress_bar=progress_bar),
                    part,
                    lm_decoder=searcher,
                    prior=prior if prior_scale else None,
                    prior_scale=prior_scale,
                    align=align,
                )
            )
    return result
