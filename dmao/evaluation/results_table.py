"""Every scored decode below some folders in one table (``dmao results``), like ESPnet's
``show_asr_result.sh`` or the tables of icefall's RESULTS.md.

``dmao decode`` writes one ``result.json`` per decode (``RUN/decode/<split>-<decoder>/`` or its
``--out-dir``); this module finds them, reads what each says — the run, split, decoder,
checkpoint (or average), CTC prior, WER / CER with their error counts and, for a decode with
``--nbest``, the oracle WER of its N-best lists — and prints them as a Markdown table ready for a
RESULTS file, or as CSV. Nothing is recomputed.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import astuple, dataclass, fields
from pathlib import Path

__all__ = ["DecodeRow", "find_results", "format_csv", "format_markdown"]


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


def format_markdown(rows: list[DecodeRow]) -> str:
    """A GitHub Markdown table: run, split, decoder, checkpoint, WER, CER, errors, words; and the
    N-best oracle WER where some decode kept N-best lists (``–`` for the others)."""
    oracle = any(r.oracle_wer is not None for r in rows)
    lines = [
        "| run | split | decoder | checkpoint | WER % | CER % | ins / del / sub | words |"
        + (" N-best oracle WER % |" if oracle else ""),
        "|---|---|---|---|---:|---:|---:|---:|" + ("---:|" if oracle else ""),
    ]
    for r in rows:
        line = (
            f"| {r.run} | {r.split} | {r.decoder} | {r.checkpoint} | {r.wer:.2f} | {r.cer:.2f} "
            f"| {r.ins} / {r.dels} / {r.subs} | {r.ref_words:,} |"
        )
        if oracle:
            line += " – |" if r.oracle_wer is None else f" {r.oracle_wer:.2f} ({r.nbest}-best) |"
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
