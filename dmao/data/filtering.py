"""Exclude utterances CTC cannot train on, and say which ones and why.

Silently dropping data hides corpus problems and changes results, so every excluded cut is listed
with its reason in a :class:`FilterReport` that the training recipe logs and saves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise

from lhotse import CutSet
from lhotse.utils import compute_num_frames

from dmao.data.features import FRAME_SHIFT_S
from dmao.data.manifests import cut_transcript
from dmao.data.tokenizer import Tokenizer

__all__ = [
    "CTC_INFEASIBLE",
    "EMPTY_TRANSCRIPT",
    "REASONS",
    "TOO_LONG",
    "TOO_SHORT",
    "UNTOKENIZABLE",
    "ExcludedCut",
    "FilterReport",
    "ctc_min_frames",
    "filter_cuts",
]

EMPTY_TRANSCRIPT = "empty_transcript"
UNTOKENIZABLE = "untokenizable"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
CTC_INFEASIBLE = "ctc_infeasible"
# In the order the checks run; a cut is reported under the first reason that applies.
REASONS = (EMPTY_TRANSCRIPT, UNTOKENIZABLE, TOO_SHORT, TOO_LONG, CTC_INFEASIBLE)


@dataclass(frozen=True)
class ExcludedCut:
    """One excluded cut: its id, the reason (one of :data:`REASONS`) and the numbers behind it."""

    cut_id: str
    reason: str
    detail: str
    duration_s: float


@dataclass
class FilterReport:
    """What :func:`filter_cuts` kept and excluded, with every excluded cut listed by id."""

    num_input: int = 0
    num_kept: int = 0
    input_duration_s: float = 0.0
    kept_duration_s: float = 0.0
    excluded: list[ExcludedCut] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Number of excluded cuts per reason, every reason listed (zeros included)."""
        counts = dict.fromkeys(REASONS, 0)
        for item in self.excluded:
            counts[item.reason] += 1
        return counts

    def examples(self, max_per_reason: int = 3) -> dict[str, list[ExcludedCut]]:
        """Up to ``max_per_reason`` excluded cuts per reason (reasons with none are omitted)."""
        out: dict[str, list[ExcludedCut]] = {}
        for item in self.excluded:
            bucket = out.setdefault(item.reason, [])
            if len(bucket) < max_per_reason:
                bucket.append(item)
        return out

    def summary(self, max_per_reason: int = 3) -> str:
        """A few human-readable lines: totals, then counts and example ids per reason."""
        excluded_s = self.input_duration_s - self.kept_duration_s
        lines = [
            f"kept {self.num_kept}/{self.num_input} cuts "
            f"({self.kept_duration_s / 3600:.2f} h of {self.input_duration_s / 3600:.2f} h); "
            f"excluded {self.num_input - self.num_kept} ({excluded_s:.1f} s)"
        ]
        examples = self.examples(max_per_reason)
        for reason, count in self.counts.items():
            if count:
                shown = "; ".join(f"{e.cut_id}: {e.detail}" for e in examples[reason])
                more = f" (+{count - len(examples[reason])} more)" if count > max_per_reason else ""
                lines.append(f"  {reason}: {count} — {shown}{more}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The full report (every excluded cut) as a JSON document."""
        return json.dumps(
            {
                "num_input": self.num_input,
                "num_kept": self.num_kept,
                "input_duration_s": round(self.input_duration_s, 3),
                "kept_duration_s": round(self.kept_duration_s, 3),
                "counts": self.counts,
                "excluded": [asdict(e) for e in self.excluded],
            },
            indent=1,
            ensure_ascii=False,
        )


def ctc_min_frames(labels: list[int]) -> int:
    """Fewest encoder output frames a CTC alignment of ``labels`` needs.

    One frame per label, plus one blank between each pair of equal adjacent labels (CTC merges
    repeats that are not separated by a blank): ``len(labels) + #{i : labels[i] == labels[i-1]}``.
    """
    repeats = sum(1 for prev, cur in pairwise(labels) if prev == cur)
    return len(labels) + repeats


def filter_cuts(
    cuts: CutSet,
    tokenizer: Tokenizer,
    *,
    subsampled_length: Callable[[int], int],
    frame_shift_s: float = FRAME_SHIFT_S,
    min_duration_s: float = 0.0,
    max_duration_s: float | None = None,
) -> tuple[CutSet, FilterReport]:
    """Split cuts into the trainable ones and a report of the rest.

    Checks, in order (a cut is reported under the first that fails):

    1. ``empty_transcript``: the normalised transcript (:func:`~dmao.data.manifests.cut_transcript`)
       is empty, e.g. it was punctuation only;
    2. ``untokenizable``: ``tokenizer.can_encode`` is False (a character the tokeniser has no unit
       for; training on ``<unk>`` targets would teach the model to emit ``<unk>``);
    3. ``too_short`` / ``too_long``: duration outside ``[min_duration_s, max_duration_s]``;
    4. ``ctc_infeasible``: ``subsampled_length(num_frames) < ctc_min_frames(labels)``, i.e. the
       encoder emits fewer frames than any CTC alignment of the labels needs (the loss would be
       infinite).

    Args:
        cuts: input cuts (eager or lazy); ``num_frames`` comes from their features if they have
            them, else from ``duration`` and ``frame_shift_s``.
        tokenizer: the tokeniser that produces the training targets.
        subsampled_length: encoder output length for an input of ``num_frames`` frames (injected,
            e.g. ``dmao.models.frontend.subsampled_length``, so data does not import models).
        frame_shift_s: feature frame shift in seconds, for cuts without features.
        min_duration_s: shortest duration kept, in seconds.
        max_duration_s: longest duration kept, in seconds; None keeps any length.

    Returns:
        ``(kept, report)``: the kept cuts in their input order, and the report.
    """
    report = FilterReport()
    excluded_ids: set[str] = set()
    for cut in cuts:
        report.num_input += 1
        report.input_duration_s += cut.duration
        reason, detail = _check(
            cut, tokenizer, subsampled_length, frame_shift_s, min_duration_s, max_duration_s
        )
        if reason is None:
            report.num_kept += 1
            report.kept_duration_s += cut.duration
        else:
            report.excluded.append(ExcludedCut(cut.id, reason, detail, round(cut.duration, 3)))
            excluded_ids.add(cut.id)
    return cuts.filter(_IdNotIn(excluded_ids)), report


class _IdNotIn:
    """Picklable predicate (a lambda would stop lazy CutSets from going to worker processes)."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    def __call__(self, cut) -> bool:
        return cut.id not in self.ids


def _check(
    cut,
    tokenizer: Tokenizer,
    subsampled_length: Callable[[int], int],
    frame_shift_s: float,
    min_duration_s: float,
    max_duration_s: float | None,
) -> tuple[str | None, str]:
    text = cut_transcript(cut)
    if not text:
        # The transcript as written (prepare_manifests keeps it) says more than "" would.
        raw = " ".join(
            (s.custom or {}).get("original_text", s.text or "") for s in cut.supervisions
        )
        return EMPTY_TRANSCRIPT, f"transcript {raw!r} is empty after normalisation"
    if not tokenizer.can_encode(text):
        return UNTOKENIZABLE, f"{text!r} has characters the tokenizer cannot encode"
    if cut.duration < min_duration_s:
        return TOO_SHORT, f"{cut.duration:.2f} s < min_duration_s={min_duration_s}"
    if max_duration_s is not None and cut.duration > max_duration_s:
        return TOO_LONG, f"{cut.duration:.2f} s > max_duration_s={max_duration_s}"
    if cut.has_features:
        num_frames = cut.num_frames
    else:
        num_frames = compute_num_frames(cut.duration, frame_shift_s, cut.sampling_rate)
    output_frames = subsampled_length(num_frames)
    labels = tokenizer.encode(text)
    needed = ctc_min_frames(labels)
    if output_frames < needed:
        return (
            CTC_INFEASIBLE,
            f"{output_frames} output frames ({num_frames} input) < {len(labels)} labels + "
            f"{needed - len(labels)} repeats",
        )
    return None, ""
