"""Every scored decode below some folders in one table (``dmao results``), like ESPnet's
``show_asr_result.sh`` or the tables of icefall's RESULTS.md.

``dmao decode`` writes one ``result.json`` per decode (``RUN/decode/<split>-<decoder>/`` or its
``--out-dir``); this module finds them, reads what each says — the run, split, decoder,
checkpoint (or average), CTC prior, WER / CER with their error counts and, for a decode with
``--nbest``, the oracle WER of its N-best lists — and prints them as a Markdown table ready for a
RESULTS file, or as CSV. Nothing is recomputed, except with a reference decode
(:func:`against_reference`, ``dmao results --against``): then each decode of the same utterances
is compared with it by the paired bootstrap (:mod:`dmao.evaluation.significance`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path

import numpy as np

__all__ = ["DecodeRow", "against_reference", "find_results", "format_csv", "format_markdown"]


@dataclass(frozen=True)
class DecodeRow:
    """One scored decode."""

    run: str
    split: str
    decoder: str  # greedy, beam8, lm-lexicon8, ... with "+prior0.3" when a prior was divided out
    checkpoint: str  # the checkpoint file (avg-N-step-K.pt: an average of N)
    wer: float  # %
    cer: float  # %
    ins: int
    dels: int
    subs: int
    ref_words: int
    utterances: int
    path: str  # the result.json
    oracle_wer: float | None = None  # %, of the N-best lists (dmao decode --nbest N)
    nbest: int | None = None  # their N
    delta_wer: float | None = None  # points, this decode − the reference decode (--against)
    delta_low: float | None = None  # its 95 % bootstrap interval
    delta_high: float | None = None
    prob_better: float | None = None  # share of paired resamples on which this WER is lower
    reference: bool = False  # the decode the others are compared with


def _row(path: Path, roots: list[Path]) -> DecodeRow:
    record = json.loads(path.read_text())
    try:
        run = record.get("run") or str(_run_of_old_result(path))
        decoder = record["method"]
        if record.get("prior"):
            decoder += f"+prior{record['prior']['scale']:g}"
        counts = record["word_counts"]
        nbest = record.get("nbest")
        return DecodeRow(
            run=_shortest(run, roots),
            split=record["split"],
            decoder=decoder,
            checkpoint=record["checkpoint"],
            wer=100 * record["wer"],
            cer=100 * record["cer"],
            ins=counts["insertions"],
            dels=counts["deletions"],
            subs=counts["substitutions"],
            ref_words=counts["ref_len"],
            utterances=record["num_utterances"],
            path=str(path),
            oracle_wer=None if nbest is None else 100 * nbest["oracle_wer"],
            nbest=None if nbest is None else nbest["n"],
        )
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a dmao decode result (missing or bad field {err})") from None


def _run_of_old_result(path: Path) -> Path:
    """The run of a result.json written before it named its run: ``RUN`` for
    ``RUN/decode/<split>-<decoder>/result.json``, else (``--out-dir``) the folder holding it."""
    return path.parent.parent.parent if path.parent.parent.name == "decode" else path.parent


def _shortest(run: str, roots: list[Path]) -> str:
    """``run`` relative to the root it lies under (the root's name kept), else as written."""
    absolute = Path(run).resolve()
    for root in roots:
        root = root.resolve()
        if absolute == root or root in absolute.parents:
            return str(Path(root.name) / absolute.relative_to(root))
    return run


def find_results(folders: list[Path], split: str | None = None) -> list[DecodeRow]:
    """Every ``result.json`` below ``folders`` (or ``split``'s only), sorted by split, then WER.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: a ``result.json`` is not one ``dmao decode`` wrote (names the file).
    """
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
    paths = sorted({p.resolve() for folder in folders for p in folder.rglob("result.json")})
    rows = [_row(path, folders) for path in paths]
    rows = [r for r in rows if split is None or r.split == split]
    return sorted(rows, key=lambda r: (r.split, r.wer, r.run, r.decoder))


def against_reference(
    rows: list[DecodeRow], reference: Path, *, resamples: int = 2000, seed: int = 0
) -> list[DecodeRow]:
    """``rows`` with the paired bootstrap of each decode's WER against ``reference`` (a decode
    folder or its ``result.json``) filled in, for the decodes of the same utterances (the same
    split: the others keep ``None``); the reference itself gets a difference of 0.

    Raises:
        FileNotFoundError: ``reference`` is not a decode folder with ``ref.trn``/``hyp.trn``.
    """
    from dmao.evaluation.significance import paired_bootstrap, read_paired_decodes

    folder = reference.parent if reference.name == "result.json" else reference
    texts = ("hypotheses.txt",), ("ref.trn", "hyp.trn")
    if not any(all((folder / name).is_file() for name in names) for names in texts):
        raise FileNotFoundError(
            f"--against {reference}: no hypotheses.txt, nor ref.trn and hyp.trn; expected a "
            f"decode folder written by dmao decode (e.g. RUN/decode/test-greedy) or its "
            f"result.json"
        )
    aligner = "kaldialign"
    if (folder / "result.json").is_file():
        aligner = json.loads((folder / "result.json").read_text()).get("aligner", aligner)
    out = []
    for row in rows:
        try:
            decodes = read_paired_decodes(folder, Path(row.path).parent, aligner=aligner)
        except (ValueError, FileNotFoundError):  # other utterances, or no trn files: no pair
            out.append(row)
            continue
        lengths = np.array([u.word.ref_len for u in decodes.a.utterances])
        result = paired_bootstrap(
            np.array([u.word.errors for u in decodes.a.utterances]),
            np.array([u.word.errors for u in decodes.b.utterances]),
            lengths,
            resamples=resamples,
            seed=seed,
        )
        out.append(
            replace(
                row,
                delta_wer=result.delta.value,
                delta_low=result.delta.low,
                delta_high=result.delta.high,
                prob_better=result.prob_b_better,
                reference=Path(row.path).parent.resolve() == folder.resolve(),
            )
        )
    return out


def format_markdown(rows: list[DecodeRow]) -> str:
    """A GitHub Markdown table: run, split, decoder, checkpoint, WER, CER, errors, words; the
    N-best oracle WER where some decode kept N-best lists, and the paired difference to the
    reference decode where :func:`against_reference` filled it in (``–`` for the others)."""
    oracle = any(r.oracle_wer is not None for r in rows)
    paired = any(r.delta_wer is not None for r in rows)
    lines = [
        "| run | split | decoder | checkpoint | WER % | CER % | ins / del / sub | words |"
        + (" N-best oracle WER % |" if oracle else "")
        + (" ΔWER vs ref. [95 % CI] | P(better) |" if paired else ""),
        "|---|---|---|---|---:|---:|---:|---:|"
        + ("---:|" if oracle else "")
        + ("---:|---:|" if paired else ""),
    ]
    for r in rows:
        line = (
            f"| {r.run} | {r.split} | {r.decoder} | {r.checkpoint} | {r.wer:.2f} | {r.cer:.2f} "
            f"| {r.ins} / {r.dels} / {r.subs} | {r.ref_words:,} |"
        )
        if oracle:
            line += " – |" if r.oracle_wer is None else f" {r.oracle_wer:.2f} ({r.nbest}-best) |"
        if paired:
            if r.reference:
                line += " reference | – |"
            elif r.delta_wer is None:
                line += " – | – |"
            else:
                line += (
                    f" {r.delta_wer:+.2f} [{r.delta_low:+.2f}, {r.delta_high:+.2f}] "
                    f"| {100 * r.prob_better:.1f} % |"
                )
        lines.append(line)
    return "\n".join(lines)


def format_csv(rows: list[DecodeRow]) -> str:
    """One CSV line per decode, every field of :class:`DecodeRow` (WER and CER in %)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in fields(DecodeRow)])
    for r in rows:
        writer.writerow(astuple(r))
    return out.getvalue()
