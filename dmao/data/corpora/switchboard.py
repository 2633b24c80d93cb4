"""Switchboard-1 (300 h) and Hub5'00 (eval2000) → cuts, through lhotse's recipes.

Layouts::

    <corpus_dir>/**/sw0NNNN.sph                         # LDC97S62: 2-channel 8 kHz mu-law SPHERE
    <transcripts_dir>/**/swNNNN{A,B}-ms98-a-trans.text  # ISIP/MS-State "swb_ms98_transcriptions":
                                                        # "<seg-id> <start> <end> words" per line
    <eval2000_dir>/LDC2002S09/hub5e_00/english/{sw,en}_NNNN.sph      # Hub5'00 audio
    <eval2000_dir>/LDC2002T43/reference/english/{sw,en}_NNNN.txt     # "<start> <end> A: words"

:func:`lhotse.recipes.switchboard.prepare_switchboard` and
:func:`lhotse.recipes.eval2000.prepare_eval2000` read them (one recording per conversation, one
supervision per transcript line on the side's channel); dmao checks the layout first, normalises
the text with :func:`normalize_switchboard`, and cuts one single-channel utterance per segment.

Parts: ``train`` and ``dev`` (Switchboard-1 split by conversation: the first conversations, in id
order, holding at least ``dev_utterances`` segments form ``dev``, as Kaldi's ``train_dev`` takes the
first 4000 utterances), ``eval2000-swbd`` and ``eval2000-callhome`` (the two halves of Hub5'00,
reported separately in the literature).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSegment
from lhotse.recipes.eval2000 import prepare_eval2000 as lhotse_prepare_eval2000
from lhotse.recipes.switchboard import prepare_switchboard as lhotse_prepare_switchboard
from lhotse.utils import fastcopy

from dmao.data.bad_audio import BadAudio, BadAudioLog, scan_audio, staged_tree, unstage_recordings
from dmao.data.corpora.common import normalised_supervisions, segment_cuts
from dmao.data.manifests import load_or_prepare

__all__ = [
    "EVAL2000_PARTS",
    "HESITATIONS",
    "SWITCHBOARD_LAYOUT",
    "SWITCHBOARD_PARTS",
    "normalize_switchboard",
    "prepare_switchboard",
]

log = logging.getLogger(__name__)

SWITCHBOARD_PARTS = ("train", "dev")
EVAL2000_PARTS = ("eval2000-swbd", "eval2000-callhome")
SWITCHBOARD_LAYOUT = (
    "LDC97S62 audio <corpus-dir>/**/sw0NNNN.sph and the ISIP transcripts "
    "swb_ms98_transcriptions/**/swNNNN{A,B}-ms98-a-trans.text"
)
EVAL2000_LAYOUT = (
    "<eval2000-dir>/LDC2002S09/hub5e_00/english/*.sph and "
    "<eval2000-dir>/LDC2002T43/reference/english/*.txt"
)
DEV_UTTERANCES = 4000
"""Kaldi's ``swbd/s5c`` holds out the first 4000 utterances as ``train_dev``."""

HESITATIONS = frozenset(
    ("uh", "um", "eh", "mm", "hm", "hmm", "ah", "huh", "ha", "er", "oof", "hee", "ach", "eee", "ew")
)
"""The words NIST's Hub5 GLM maps to ``%HESITATION`` (optionally deletable in scoring)."""

# Non-speech events written in curly braces in the Hub5'00 transcripts ({breath}, {laugh}, ...).
_NON_SPEECH_BRACED = frozenset(
    {
        *("breath", "laugh", "laughter", "lipsmack", "cough", "sneeze", "sigh", "click"),
        *("noise", "static", "sniff", "yawn", "throat_clear", "inhale", "exhale", "beep"),
    }
)
_CONTRACTION_TAG = re.compile(r'<contraction\s+e_form="[^"]*">')
_TAG = re.compile(r"<[^<>]*>")
_LAUGHTER_WORD = re.compile(r"\[laughter-([^\]\s]+)\]")
_MISPRONOUNCED = re.compile(r"\[[^\]\s/]*/([^\]\s]+)\]")
_OMITTED_PART = re.compile(r"(?<=[\w'])\[[^\]\s]*\]|\[[^\]\s]*\](?=[\w'])")
_BRACKETED = re.compile(r"\[[^\]]*\]")
_BRACED = re.compile(r"\{([^}]*)\}")
_ALTERNATE_SPELLING = re.compile(r"_\d+\b")


def normalize_switchboard(text: str, *, keep_hesitations: bool = False) -> str:
    """Switchboard (MS-State) or Hub5'00 transcript text → words, before
    :func:`~dmao.data.text.normalize_transcript`.

    One function for both conventions (their mark-ups do not collide), so training targets and
    eval2000 references are written the same way. In the spirit of Kaldi's
    ``swbd1_map_words.pl`` / ``eval2000_data_prep.sh`` and NIST's Hub5 GLM, in order:

    1. Lower case. Hub5'00 mark-up tags go: ``<contraction e_form="...">we're`` → ``we're``,
       ``<b_aside>``, ``<e_aside>``, any other ``<...>``.
    2. ``[laughter-word]`` (a word said laughing) → ``word``.
    3. ``[wrong/right]`` (a mispronunciation with the intended word) → ``right``.
    4. Partial words: the unspoken part in brackets is dropped (``abso[lutely]-`` → ``abso-``,
       ``-[ab]solutely`` → ``-solutely``) and so is the hyphen marking the fragment
       (→ ``abso``, ``solutely``): the fragment stays as the letters actually spoken.
    5. Noise and silence markers are removed: ``[noise]``, ``[laughter]``,
       ``[vocalized-noise]``, ``[silence]`` and any other ``[...]``; Hub5'00 ``{breath}``,
       ``{laugh}``, ``{lipsmack}``, ... (other ``{word}`` keep the word).
    6. Hub5'00 uncertain transcriptions ``((word))`` keep the word; ``(( ))`` goes.
    7. Hesitations (:data:`HESITATIONS`, and any ``%word`` of Hub5'00) are removed unless
       ``keep_hesitations``. NIST scores them as optionally deletable; dmao's scorer has no
       optional words, so removing them from training targets and references alike is the
       closest match (the model learns not to write them, and nothing is charged for them).
    8. ``_1``-style alternate-spelling suffixes and ``~`` go; whitespace collapses.

    Word-internal hyphens stay (``uh-huh``; ``normalize_transcript`` then splits them), as do
    apostrophes. A segment left empty (only noise or hesitations) is dropped by the preparation.
    Example: ``"[noise] uh i was abso[lutely]- [laughter-sure] <b_aside> {breath}"`` →
    ``"i was abso sure"``.
    """
    text = text.lower()
    text = _CONTRACTION_TAG.sub("", text)
    text = _TAG.sub(" ", text)
    text = _LAUGHTER_WORD.sub(r"\1", text)
    text = _MISPRONOUNCED.sub(r"\1", text)
    text = _OMITTED_PART.sub("", text)
    text = _BRACKETED.sub(" ", text)
    text = _BRACED.sub(
        lambda m: " " if m.group(1).strip() in _NON_SPEECH_BRACED else f" {m.group(1)} ", text
    )
    text = text.replace("(", " ").replace(")", " ").replace("~", "")
    text = _ALTERNATE_SPELLING.sub("", text)
    words = []
    for word in text.split():
        word = word.strip("-")  # fragment markers: "abso-", "-solutely"
        if not word:
            continue
        bare = word.lstrip("%").strip(".,?!")
        if not keep_hesitations and (word.startswith("%") or bare in HESITATIONS):
            continue
        words.append(word.lstrip("%"))
    return " ".join(words)


def prepare_switchboard(
    corpus_dir: Path | str | None,
    out_dir: Path | str,
    parts: Sequence[str] = SWITCHBOARD_PARTS,
    *,
    transcripts_dir: Path | str | None = None,
    eval2000_dir: Path | str | None = None,
    dev_utterances: int = DEV_UTTERANCES,
    sampling_rate: int = 8000,
    compute_features: bool = True,
    num_jobs: int = 2,
    bad_audio: str = "strict",
    max_bad_audio_fraction: float = 0.01,
) -> dict[str, CutSet]:
    """Switchboard-1 and Hub5'00 parts → single-channel cuts with cached 8 kHz fbank features.

    Cut ids are the segment ids: MS-State's ``swNNNN{A,B}-ms98-a-NNNN`` for Switchboard,
    lhotse's ``{sw,en}_NNNN-<index>`` for Hub5'00. Each cut holds one side (channel 0 = A,
    1 = B) of the call. Idempotent per part, like :func:`~dmao.data.manifests.prepare_manifests`.

    Args:
        corpus_dir: the LDC97S62 copy (``.sph`` files anywhere below it); only needed for
            ``train``/``dev``.
        out_dir: manifest directory.
        parts: any of ``train``, ``dev``, ``eval2000-swbd``, ``eval2000-callhome``.
        transcripts_dir: ``swb_ms98_transcriptions``; by default looked up in ``corpus_dir`` and
            beside it.
        eval2000_dir: the folder holding ``LDC2002S09`` and ``LDC2002T43``.
        dev_utterances: ``dev`` is the first conversations holding at least this many segments.
        sampling_rate: feature rate; Switchboard is 8 kHz telephone speech (METHOD.md §6).
        compute_features: compute and store fbank features.
        num_jobs: processes for feature extraction.
        bad_audio: ``strict`` or ``skip`` (:mod:`dmao.data.bad_audio`); an unreadable ``.sph``
            is one report entry standing for the segments of its conversation (skip mode leaves
            the conversation out). Switchboard's dev split is made after that, so bad
            Switchboard-1 conversations are reported under ``train``.
        max_bad_audio_fraction: skip mode's error budget, a fraction of the part's segments.

    Raises:
        FileNotFoundError: a corpus folder is missing (the message names it).
        ValueError: conversations without transcripts, unknown parts, unreadable SPHERE
            (strict; all listed) or more of it than the budget (skip).
    """
    known = SWITCHBOARD_PARTS + EVAL2000_PARTS
    for part in parts:
        if part not in known:
            raise ValueError(f"unknown Switchboard part {part!r}; expected one of {known}")
    if dev_utterances < 1:
        raise ValueError(f"dev_utterances must be >= 1, got {dev_utterances}")

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        # Check and pre-scan everything first, so strict mode lists the bad files of all parts.
        readers = []
        if set(missing) & set(SWITCHBOARD_PARTS):
            readers.append(_read_switchboard(corpus_dir, transcripts_dir, dev_utterances, bad))
        if set(missing) & set(EVAL2000_PARTS):
            readers.append(_read_eval2000(eval2000_dir, bad))
        bad.check(missing, stage="pre-scan of the audio headers")
        by_part: dict[str, CutSet] = {}
        for reader in readers:
            by_part.update(reader())
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


def _scan_conversations(
    audio: list[Path], part_of: dict[Path, str], segments_of: dict[Path, int], bad: BadAudioLog
) -> list[Path]:
    """Pre-scan the ``.sph`` headers and record the bad files in ``bad`` (each standing for its
    segments, which count against the budget of its part); returns the good files."""
    found = scan_audio(audio)
    for path in audio:
        part = part_of[path]
        bad.listed[part] = bad.listed.get(part, 0) + segments_of[path]
    for path in audio:
        if path in found:
            entry = BadAudio(
                part_of[path], path.stem, str(path), *found[path], utterances=segments_of[path]
            )
            bad.add(entry)
    return [path for path in audio if path not in found]


def _count_lines(paths: list[Path], skip: str) -> int:
    """Transcript lines (segments) of ``paths``, not counting those holding ``skip``."""
    return sum(
        1
        for path in paths
        if path.is_file()
        for line in path.read_text(errors="replace").splitlines()
        if line.strip() and skip not in line
    )


def find_transcripts_dir(corpus_dir: Path, transcripts_dir: Path | str | None) -> Path:
    """The ``swb_ms98_transcriptions`` folder: as given, or inside/beside ``corpus_dir``."""
    if transcripts_dir is not None:
        path = Path(transcripts_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"Switchboard transcripts directory {path} does not exist")
        return path
    candidates = [
        corpus_dir / "swb_ms98_transcriptions",
        corpus_dir.parent / "swb_ms98_transcriptions",
    ]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        "Switchboard transcripts not found: none of "
        + ", ".join(str(p) for p in candidates)
        + " exists; pass the unpacked swb_ms98_transcriptions folder (--transcripts-dir, "
        "data.transcripts_dir)"
    )


def _read_switchboard(
    corpus_dir: Path | str | None,
    transcripts_dir: Path | str | None,
    dev_utterances: int,
    bad: BadAudioLog,
) -> Callable[[], dict[str, CutSet]]:
    """Check the layout and pre-scan the audio now; return the step that reads the good
    conversations (``train`` and ``dev``)."""
    if corpus_dir is None:
        raise FileNotFoundError("the Switchboard parts train/dev need the LDC97S62 corpus_dir")
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(
            f"Switchboard corpus directory {corpus_dir} does not exist; "
            f"expected {SWITCHBOARD_LAYOUT}"
        )
    transcripts = find_transcripts_dir(corpus_dir, transcripts_dir)
    audio = sorted(corpus_dir.rglob("*.sph"))
    if not audio:
        raise ValueError(f"no .sph files under {corpus_dir}; expected {SWITCHBOARD_LAYOUT}")
    texts = {p.name.split("-")[0] for p in transcripts.rglob("*trans.text")}
    no_text = [
        f"{p.name} (needs {p.stem.replace('sw0', 'sw')}{side}-ms98-a-trans.text)"
        for p in audio
        for side in "AB"
        if f"{p.stem.replace('sw0', 'sw')}{side}" not in texts
    ]
    if no_text:
        raise ValueError(
            f"{len(no_text)} conversation side(s) under {corpus_dir} have no transcript in "
            f"{transcripts} (first: {', '.join(no_text[:3])}); expected {SWITCHBOARD_LAYOUT}"
        )
    text_of = {p.name.split("-")[0]: p for p in transcripts.rglob("*trans.text")}
    good = _scan_conversations(
        audio,
        dict.fromkeys(audio, "train"),
        {
            p: _count_lines(
                [text_of[f"{p.stem.replace('sw0', 'sw')}{side}"] for side in "AB"], "[silence]"
            )
            for p in audio
        },
        bad,
    )

    def read() -> dict[str, CutSet]:
        if len(good) == len(audio):
            manifests = lhotse_prepare_switchboard(
                audio_dir=corpus_dir, transcripts_dir=transcripts, absolute_paths=True
            )
        else:  # the recipe reads every .sph below audio_dir: give it only the good ones
            links = [(p, p.relative_to(corpus_dir)) for p in good]
            with staged_tree(bad.out_dir, links) as staging:
                manifests = lhotse_prepare_switchboard(
                    audio_dir=staging, transcripts_dir=transcripts, absolute_paths=True
                )
                recordings = unstage_recordings(manifests["recordings"], staging, corpus_dir)
                manifests = {**manifests, "recordings": recordings}
        # lhotse names both sides' speaker "<call>A"; a side is one speaker.
        segments = [
            fastcopy(sup, speaker=f"{sup.recording_id}-{'AB'[sup.channel]}")
            for sup in manifests["supervisions"]
        ]
        supervisions, dropped = normalised_supervisions(segments, normalize_switchboard)
        log.info(
            "Switchboard: %d segments, %d empty after normalisation dropped",
            len(supervisions),
            dropped,
        )
        dev_ids = _dev_conversations(supervisions, dev_utterances)
        recordings: RecordingSet = manifests["recordings"]
        _check_rate(recordings, corpus_dir)
        return {
            "train": segment_cuts(
                recordings, [s for s in supervisions if s.recording_id not in dev_ids]
            ),
            "dev": segment_cuts(recordings, [s for s in supervisions if s.recording_id in dev_ids]),
        }

    return read


def _dev_conversations(supervisions: list[SupervisionSegment], dev_utterances: int) -> set[str]:
    """The first conversations (by id) holding at least ``dev_utterances`` segments; at least one
    conversation stays for training."""
    per_call: dict[str, int] = {}
    for sup in supervisions:
        per_call[sup.recording_id] = per_call.get(sup.recording_id, 0) + 1
    calls = sorted(per_call)
    if len(calls) < 2:
        raise ValueError(
            f"Switchboard has {len(calls)} conversation(s) with transcribed speech; at least 2 "
            "are needed to hold out a dev set"
        )
    dev, count = set(), 0
    for call in calls[:-1]:
        if count >= dev_utterances:
            break
        dev.add(call)
        count += per_call[call]
    return dev


def find_eval2000_dirs(eval2000_dir: Path | str | None) -> tuple[Path, Path]:
    """``(audio_dir, transcript_dir)`` of Hub5'00 under ``eval2000_dir``, or a clear error."""
    if eval2000_dir is None:
        raise FileNotFoundError(
            "the eval2000 parts need --eval2000-dir (data.eval2000_dir): the folder holding "
            f"LDC2002S09 and LDC2002T43; expected {EVAL2000_LAYOUT}"
        )
    root = Path(eval2000_dir)
    audio = root / "LDC2002S09" / "hub5e_00" / "english"
    text = root / "LDC2002T43" / "reference" / "english"
    for path in (root, audio, text):
        if not path.is_dir():
            raise FileNotFoundError(f"{path} does not exist; expected {EVAL2000_LAYOUT}")
    return audio, text


def _read_eval2000(
    eval2000_dir: Path | str | None, bad: BadAudioLog
) -> Callable[[], dict[str, CutSet]]:
    """Check the layout and pre-scan the audio now; return the step that reads the good
    conversations (both eval2000 parts)."""
    audio_dir, text_dir = find_eval2000_dirs(eval2000_dir)
    audio = {p.stem: p for p in audio_dir.rglob("*.sph")}
    texts = {p.stem: p for p in text_dir.rglob("*.txt")}
    if not audio:
        raise ValueError(f"no .sph files in {audio_dir}; expected {EVAL2000_LAYOUT}")
    for what, names, where in (
        ("transcript (.txt)", sorted(audio.keys() - texts.keys()), text_dir),
        ("audio (.sph)", sorted(texts.keys() - audio.keys()), audio_dir),
    ):
        if names:
            raise ValueError(
                f"{len(names)} eval2000 conversation(s) have no {what} in {where} "
                f"(first: {', '.join(names[:5])})"
            )
    files = sorted(audio.values())
    good = _scan_conversations(
        files,
        {p: "eval2000-swbd" if p.stem.startswith("sw") else "eval2000-callhome" for p in files},
        {p: _count_lines([texts[p.stem]], "#") for p in files},
        bad,
    )

    def read() -> dict[str, CutSet]:
        with tempfile.TemporaryDirectory() as scratch:  # lhotse's recipe insists on writing files
            if len(good) == len(files):
                manifests = lhotse_prepare_eval2000(
                    corpus_dir=Path(eval2000_dir), output_dir=scratch, absolute_paths=True
                )
            else:  # the recipe reads every .sph of the audio folder: give it only the good ones
                root = Path(eval2000_dir)
                links = [(p, p.relative_to(root)) for p in good]
                with staged_tree(bad.out_dir, links) as staging:
                    (staging / audio_dir.relative_to(root)).mkdir(parents=True, exist_ok=True)
                    manifests = lhotse_prepare_eval2000(
                        corpus_dir=staging,
                        output_dir=scratch,
                        transcript_path=text_dir,
                        absolute_paths=True,
                    )
                    recordings = unstage_recordings(manifests["recordings"], staging, root)
                    manifests = {**manifests, "recordings": recordings}
        recordings: RecordingSet = manifests["recordings"]
        _check_rate(recordings, audio_dir)
        supervisions, dropped = normalised_supervisions(
            manifests["supervisions"], normalize_switchboard
        )
        log.info(
            "eval2000: %d segments, %d empty after normalisation dropped",
            len(supervisions),
            dropped,
        )
        return {
            "eval2000-swbd": segment_cuts(
                recordings, [s for s in supervisions if s.recording_id.startswith("sw")]
            ),
            "eval2000-callhome": segment_cuts(
                recordings, [s for s in supervisions if s.recording_id.startswith("en")]
            ),
        }

    return read


def _check_rate(recordings: RecordingSet, where: Path) -> None:
    """Switchboard and Hub5'00 are 8 kHz two-channel telephone calls; anything else is a wrong
    folder or a converted copy, which would silently change the features."""
    bad = [r for r in recordings if r.sampling_rate != 8000 or r.num_channels != 2]
    if bad:
        r = bad[0]
        raise ValueError(
            f"{len(bad)} recording(s) under {where} are not 2-channel 8 kHz telephone audio "
            f"(first: {r.id}: {r.num_channels} channel(s), {r.sampling_rate} Hz)"
        )
