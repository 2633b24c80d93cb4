"""TED-LIUM release 2 → cuts with normalised transcripts, through lhotse's ``tedlium2`` recipe.

Layout (the unpacked ``TEDLIUM_release2.tar.gz``)::

    TEDLIUM_release2/{train,dev,test}/sph/<talk>.sph  # 16 kHz 16-bit mono NIST SPHERE
    TEDLIUM_release2/{train,dev,test}/stm/<talk>.stm  # "<talk> 1 <talk> <start> <end> <label> text"

:func:`lhotse.recipes.tedlium2.prepare_tedlium2` reads it (one recording per talk, one supervision
per STM line, ``ignore_time_segment_in_scoring`` lines skipped, ``{NOISE}`` rewritten ``[NOISE]``);
dmao checks the layout first (lhotse would assert or silently drop talks), then normalises the
text with :func:`normalize_tedlium` and cuts one utterance per segment.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from lhotse import CutSet
from lhotse.recipes.tedlium2 import prepare_tedlium2 as lhotse_prepare_tedlium2

from dmao.data.bad_audio import BadAudio, BadAudioLog, scan_audio, staged_tree, unstage_recordings
from dmao.data.corpora.common import normalised_supervisions, segment_cuts
from dmao.data.manifests import load_or_prepare

__all__ = ["TEDLIUM_LAYOUT", "TEDLIUM_PARTS", "normalize_tedlium", "prepare_tedlium2"]

log = logging.getLogger(__name__)

TEDLIUM_PARTS = ("train", "dev", "test")
TEDLIUM_LAYOUT = (
    "TEDLIUM_release2/<part>/sph/<talk>.sph and TEDLIUM_release2/<part>/stm/<talk>.stm "
    "(one of each per talk; parts train, dev, test)"
)
_IGNORE = "ignore_time_segment_in_scoring"
# Non-speech and filler markers: {NOISE} {BREATH} {SMACK} {COUGH} {UH} {UM} (lhotse rewrites
# {NOISE} as [NOISE]), <unk> (a word outside the release's vocabulary) and <sil>.
_MARKER = re.compile(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>")
# Pronunciation variants in the STM text: "the(2)" is the word "the".
_VARIANT = re.compile(r"(\S)\(\d+\)")
# The release tokenises clitics off their word: "it 's", "don 't", "we 're".
_DETACHED_CLITIC = re.compile(r"(\S) ('\S)")
# ... and sometimes leaves a dangling apostrophe before a word: "' cause", "' 60s".
_DANGLING_APOSTROPHE = re.compile(r"(^|\s)' (?=\S)")


def normalize_tedlium(text: str) -> str:
    """TED-LIUM 2 STM text → words, before :func:`~dmao.data.text.normalize_transcript`.

    Rules (those of Kaldi's ``tedlium/s5_r2`` data preparation and its ``join_suffix.py``, and of
    lhotse's ``normalize_text_tedlium(..., "kaldi")``), in order:

    1. ``ignore_time_segment_in_scoring`` (a segment not to be scored) → empty.
    2. Markers are removed: ``{NOISE}``, ``{BREATH}``, ``{SMACK}``, ``{COUGH}`` and the fillers
       ``{UH}``/``{UM}``, their ``[...]`` spellings, ``<sil>`` and ``<unk>``. ``<unk>`` stands for a
       spoken word outside the release's vocabulary: it is removed from training targets (a CTC
       model cannot learn one symbol for every unknown word) and from dev/test references, so a
       recogniser that writes the real word is charged an insertion rather than a certain
       substitution (Kaldi keeps ``<unk>`` in references; the difference is ~0.1 % of words).
    3. Pronunciation variant marks go: ``the(2)`` → ``the``.
    4. Clitics are joined to their word: ``it 's`` → ``it's``, ``don 't`` → ``don't`` (every token
       that starts with an apostrophe, as Kaldi's ``join_suffix.py``); then a lone apostrophe
       joins the next word: ``' cause`` → ``'cause`` (which ``normalize_transcript`` writes
       ``CAUSE``).
    5. Whitespace collapses.

    A segment whose text is empty afterwards (noise or ``<unk>`` only) is dropped by the
    preparation. Case and remaining punctuation are left to ``normalize_transcript``.
    Example: ``"{NOISE} it 's the(2) <unk> thing"`` → ``"it's the thing"``.
    """
    if text.strip() == _IGNORE:
        return ""
    text = _MARKER.sub(" ", text)
    text = _VARIANT.sub(r"\1", text)
    text = " ".join(text.split())
    joined = _DETACHED_CLITIC.sub(r"\1\2", text)
    while joined != text:  # "a 'b 'c": matches cannot overlap, so repeat until nothing changes
        text, joined = joined, _DETACHED_CLITIC.sub(r"\1\2", joined)
    # After the clitics, so "know ' cause" becomes "know 'cause", not "know'cause".
    text = _DANGLING_APOSTROPHE.sub(r"\1'", text)
    return " ".join(text.split())


def prepare_tedlium2(
    corpus_dir: Path | str,
    out_dir: Path | str,
    parts: Sequence[str] = TEDLIUM_PARTS,
    *,
    sampling_rate: int = 16000,
    compute_features: bool = True,
    num_jobs: int = 2,
    bad_audio: str = "strict",
    max_bad_audio_fraction: float = 0.01,
) -> dict[str, CutSet]:
    """TED-LIUM 2 parts → cuts (one per STM segment) with cached fbank features.

    Cut ids are lhotse's supervision ids, ``<talk>-<line index>``; the cut covers the segment's
    time span of the talk; ``custom["original_text"]`` keeps the text as lhotse's recipe returns
    it (the STM text with ``{NOISE}`` spelled ``[NOISE]``). Idempotent per part, like
    :func:`~dmao.data.manifests.prepare_manifests`.

    Args:
        corpus_dir: ``TEDLIUM_release2`` or the folder holding it.
        out_dir: manifest directory.
        parts: any of ``train``, ``dev``, ``test``.
        sampling_rate: features are computed at this rate (the release is 16 kHz).
        compute_features: compute and store fbank features.
        num_jobs: threads for reading the STM files, processes for features.
        bad_audio: ``strict`` or ``skip`` (:mod:`dmao.data.bad_audio`); a talk whose ``.sph``
            is unreadable is one entry of the report that stands for all its segments (skip
            mode leaves the whole talk out).
        max_bad_audio_fraction: skip mode's error budget, a fraction of the part's segments.

    Raises:
        FileNotFoundError: the corpus, a part, or its ``sph``/``stm`` folder is missing.
        ValueError: talks without transcript or audio, malformed STM lines, unreadable SPHERE
            (strict; all listed) or more of it than the budget (skip).
    """
    for part in parts:
        if part not in TEDLIUM_PARTS:
            raise ValueError(f"unknown TED-LIUM part {part!r}; expected one of {TEDLIUM_PARTS}")

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        # Only here: cached parts load without the corpus.
        root = resolve_tedlium_dir(corpus_dir)
        talks = {part: _check_part(root, part) for part in missing}
        found = scan_audio([sph for by_talk in talks.values() for sph, _ in by_talk.values()])
        for part, by_talk in talks.items():
            bad.listed[part] = sum(n for _, n in by_talk.values())
            for talk, (sph, segments) in sorted(by_talk.items()):
                if sph in found:
                    bad.add(BadAudio(part, talk, str(sph), *found[sph], utterances=segments))
        bad.check(missing, stage="pre-scan of the audio headers")
        manifests = _read_tedlium(root, missing, bad, talks, num_jobs)
        by_part = {}
        for part in missing:
            supervisions, dropped = normalised_supervisions(
                manifests[part]["supervisions"], normalize_tedlium
            )
            log.info(
                "TED-LIUM %s: %d segments, %d empty after normalisation dropped",
                part,
                len(supervisions),
                dropped,
            )
            by_part[part] = segment_cuts(manifests[part]["recordings"], supervisions)
        return by_part

    return load_or_prepare(
        out_dir,
        parts,
        read,
        sampling_rate=sampling_rate,
        compute_features=compute_features,
        num_jobs=num_jobs,
        bad_audio=bad_audio,
        max_bad_audio_fraction=max_bad_audio_fraction,
    )


def _read_tedlium(
    root: Path,
    parts: list[str],
    bad: BadAudioLog,
    talks: dict[str, dict[str, tuple[Path, int]]],
    num_jobs: int,
) -> dict[str, dict]:
    """lhotse's recipe; a part with excluded talks (skip mode) is read from a staging tree of
    symlinks without them (the recipe reads every ``.sph`` header of the folder and would crash
    on a bad one), and its recordings are pointed back at the real files."""
    dirty = [part for part in parts if bad.excluded(part)]
    clean = [part for part in parts if part not in dirty]
    manifests: dict = {}
    if clean:
        manifests.update(
            lhotse_prepare_tedlium2(
                root, dataset_parts=clean, num_jobs=num_jobs, normalize_text="none"
            )
        )
    if not dirty:
        return manifests
    links = [
        (root / part / sub / f"{talk}.{sub}", Path(part, sub, f"{talk}.{sub}"))
        for part in dirty
        for talk in sorted(talks[part].keys() - bad.excluded(part))
        for sub in ("sph", "stm")
    ]
    with staged_tree(bad.out_dir, links) as staging:
        for part in dirty:  # an empty sph/stm folder still has to exist for the recipe
            for sub in ("sph", "stm"):
                (staging / part / sub).mkdir(parents=True, exist_ok=True)
        staged = lhotse_prepare_tedlium2(
            staging, dataset_parts=dirty, num_jobs=num_jobs, normalize_text="none"
        )
        for part in dirty:
            recordings = unstage_recordings(staged[part]["recordings"], staging, root)
            manifests[part] = {**staged[part], "recordings": recordings}
    return manifests


def resolve_tedlium_dir(corpus_dir: Path | str) -> Path:
    """``corpus_dir`` itself or its ``TEDLIUM_release2`` sub-folder (where the tarball unpacks)."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(
            f"TED-LIUM corpus directory {corpus_dir} does not exist; expected {TEDLIUM_LAYOUT}"
        )
    if (corpus_dir / "TEDLIUM_release2").is_dir():
        return corpus_dir / "TEDLIUM_release2"
    return corpus_dir


def _check_part(corpus_dir: Path, part: str) -> dict[str, tuple[Path, int]]:
    """Name what is missing or malformed; lhotse's recipe asserts on a count mismatch and
    silently drops segments whose talk has no audio.

    Returns:
        ``{talk: (.sph path, number of scored segments)}``.
    """
    part_dir = corpus_dir / part
    for sub in ("sph", "stm"):
        if not (part_dir / sub).is_dir():
            found = sorted(p.name for p in corpus_dir.iterdir() if p.is_dir())
            raise FileNotFoundError(
                f"TED-LIUM part {part!r}: {part_dir / sub} does not exist (folders in "
                f"{corpus_dir}: {found or 'none'}); expected {TEDLIUM_LAYOUT}"
            )
    audio = {p.stem: p for p in (part_dir / "sph").glob("*.sph")}
    stms = {p.stem: p for p in (part_dir / "stm").glob("*.stm")}
    if not stms:
        raise ValueError(f"TED-LIUM part {part!r}: no .stm files in {part_dir / 'stm'}")
    for what, names, where in (
        ("audio (.sph)", sorted(stms.keys() - audio.keys()), part_dir / "sph"),
        ("transcript (.stm)", sorted(audio.keys() - stms.keys()), part_dir / "stm"),
    ):
        if names:
            raise ValueError(
                f"TED-LIUM part {part!r}: {len(names)} talk(s) have no {what} in {where} "
                f"(first: {', '.join(names[:5])})"
            )
    segments = dict.fromkeys(stms, 0)
    for talk, stm in sorted(stms.items()):
        for line_no, line in enumerate(stm.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split()
            if not fields or line.startswith(";;"):
                raise ValueError(
                    f"{stm}:{line_no}: empty or comment line; lhotse's reader expects "
                    "'<talk> <channel> <speaker> <start> <end> <label> words' on every line"
                )
            if len(fields) < 6 or fields[0] != talk:
                raise ValueError(
                    f"{stm}:{line_no}: expected '{talk} <channel> <speaker> <start> <end> "
                    f"<label> words', got {line!r}"
                )
            try:
                start, end = float(fields[3]), float(fields[4])
            except ValueError:
                raise ValueError(
                    f"{stm}:{line_no}: start/end times must be numbers, got {fields[3:5]}"
                ) from None
            if end <= start:
                raise ValueError(f"{stm}:{line_no}: segment ends ({end}) before it starts")
            segments[talk] += " ".join(fields[6:]) != _IGNORE
    return {talk: (audio[talk], segments[talk]) for talk in sorted(stms)}
