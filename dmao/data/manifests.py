"""Corpus directory → lhotse cuts with normalised transcripts and cached log-mel fbank features.

Every corpus, the built-in synthetic one included, is read through lhotse's own LibriSpeech recipe
(:func:`lhotse.recipes.prepare_librispeech`), so the path that real data takes is the path the tests
exercise. The expected layout is LibriSpeech's::

    <corpus_dir>/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <corpus_dir>/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt  # "<utt-id> <TEXT>"

Outputs, per part, in ``out_dir``: ``cuts_<part>.jsonl.gz`` (one cut per utterance, cut id = the
LibriSpeech utterance id, sorted by id) and, when features are computed, ``feats_<part>*`` (lilcom
archives referenced by the cuts); ``bad_audio.json`` lists the audio that could not be used
(:mod:`dmao.data.bad_audio`). The features and their extraction are in :mod:`dmao.data.features`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from lhotse import CutSet, SupervisionSegment
from lhotse.cut import Cut
from lhotse.recipes import prepare_librispeech
from lhotse.utils import fastcopy

from dmao.data.bad_audio import (
    BadAudio,
    BadAudioLog,
    audio_error_message,
    scan_audio,
    staged_tree,
    unstage_recordings,
)
from dmao.data.features import (
    feature_executor,
    store_features,
)
from dmao.data.folder_lock import folder_lock
from dmao.data.sphere import install_audio_backend
from dmao.data.text import normalize_transcript

__all__ = [
    "LIBRISPEECH_LAYOUT",
    "cut_transcript",
    "cuts_path",
    "load_cuts",
    "load_or_prepare",
    "prepare_manifests",
]

log = logging.getLogger(__name__)

LIBRISPEECH_LAYOUT = (
    "<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac and "
    "<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt with lines '<utt-id> <TRANSCRIPT>'"
)


def cuts_path(out_dir: Path | str, part: str) -> Path:
    """Where :func:`prepare_manifests` writes the cuts of ``part``."""
    return Path(out_dir) / f"cuts_{part}.jsonl.gz"


def cut_transcript(cut: Cut) -> str:
    """The normalised transcript of a cut: its supervisions' texts, normalised and space-joined.

    Normalising again is a no-op for cuts from :func:`prepare_manifests` (the normalisation is
    idempotent) and makes cuts from any other source safe to train and score on.
    """
    texts = (normalize_transcript(s.text or "") for s in cut.supervisions)
    return " ".join(t for t in texts if t)


def load_cuts(out_dir: Path | str, part: str, *, lazy: bool = False) -> CutSet:
    """Load the cuts :func:`prepare_manifests` wrote for ``part``.

    Args:
        out_dir: the manifest directory given to :func:`prepare_manifests`.
        part: corpus part name, e.g. ``"train"`` or ``"dev-clean"``.
        lazy: stream the cuts from disk instead of reading them all (for large corpora).

    Raises:
        FileNotFoundError: the cuts file does not exist.
    """
    path = cuts_path(out_dir, part)
    if not path.is_file():
        raise FileNotFoundError(
            f"no cuts for part {part!r}: {path} does not exist. Prepare them first with "
            "dmao.data.manifests.prepare_manifests (CLI: `dmao prepare`)."
        )
    cuts = CutSet.from_jsonl_lazy(path)
    return cuts if lazy else cuts.to_eager()


def prepare_manifests(
    corpus_dir: Path | str,
    out_dir: Path | str,
    parts: Sequence[str],
    *,
    sampling_rate: int = 16000,
    compute_features: bool = True,
    num_jobs: int = 2,
    bad_audio: str = "strict",
    max_bad_audio_fraction: float = 0.01,
) -> dict[str, CutSet]:
    """Read a LibriSpeech-layout corpus into cuts, normalise transcripts, cache fbank features.

    Idempotent per part: when ``out_dir/cuts_<part>.jsonl.gz`` exists it is loaded instead of
    recomputed (features are added to it if ``compute_features`` and it has none). The cuts file
    is written last and atomically, so an interrupted run never leaves a file that looks complete.

    Each cut is one utterance: ``cut.id`` is the utterance id (``<spk>-<chapter>-<utt>``), its one
    supervision's ``text`` is :func:`~dmao.data.text.normalize_transcript` of the transcript and
    ``custom["original_text"]`` keeps the transcript as written. Cuts are sorted by id, so the order
    does not depend on the file system.

    Args:
        corpus_dir: corpus root holding one folder per part (see :data:`LIBRISPEECH_LAYOUT`).
        out_dir: where cuts and feature archives are written (created if missing).
        parts: part names, i.e. folder names under ``corpus_dir`` (e.g. ``["train", "dev"]``).
        sampling_rate: audio at another rate is resampled to this on load.
        compute_features: compute and store :func:`~dmao.data.features.fbank_extractor`
            features; without them, :class:`~dmao.data.dataset.AsrBatchDataset` computes them on
            the fly.
        num_jobs: threads for reading transcripts and processes for feature extraction.
        bad_audio: ``strict`` or ``skip``: what missing/corrupt audio does
            (:mod:`dmao.data.bad_audio`).
        max_bad_audio_fraction: skip mode's error budget: the largest fraction of a part's
            utterances that may be left out.

    Returns:
        ``{part: CutSet}`` for every requested part, in memory, in the order of ``parts``.

    Raises:
        FileNotFoundError: ``corpus_dir`` or a part folder does not exist.
        ValueError: a part has no transcripts, a transcript line is malformed, or audio is
            missing/unreadable (strict mode: all such files listed) or too often so (skip mode).
    """
    corpus_dir = Path(corpus_dir)

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        listed = _check_corpus(corpus_dir, missing)
        found = scan_audio([path for utts in listed.values() for _, path in utts])
        for part, utts in listed.items():
            bad.listed[part] = len(utts)
            for utt_id, path in utts:
                if path in found:
                    bad.add(BadAudio(part, utt_id, str(path), *found[path]))
        bad.check(missing, stage="pre-scan of the audio headers")
        manifests = _read_librispeech(corpus_dir, missing, bad, num_jobs)
        by_part = {}
        for part in missing:
            cuts = CutSet.from_manifests(
                recordings=manifests[part]["recordings"],
                supervisions=manifests[part]["supervisions"],
            )
            # One recording holds one utterance in LibriSpeech: name the cut after it rather than
            # lhotse's position-dependent "<recording-id>-<index>".
            by_part[part] = CutSet.from_cuts(
                fastcopy(cut, id=cut.recording_id, supervisions=_normalised(cut)) for cut in cuts
            )
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


def _read_librispeech(
    corpus_dir: Path, parts: list[str], bad: BadAudioLog, num_jobs: int
) -> dict[str, dict]:
    """lhotse's recipe on the parts; a part with excluded (skip-mode) utterances is read from a
    staging tree.

    lhotse's recipe reads the directory itself (every ``*.trans.txt`` line, every file's header,
    crashing on the first unreadable one), so excluded utterances must not be in what it reads:
    :func:`~dmao.data.bad_audio.staged_tree` mirrors such a part under
    ``<manifest_dir>/.bad_audio_staging`` with symlinks to the good files and ``*.trans.txt``
    files without the excluded lines; the recordings' paths are then resolved back to the real
    files and the staging tree is removed.
    """
    dirty = [part for part in parts if bad.excluded(part)]
    clean = [part for part in parts if part not in dirty]
    manifests: dict = {}
    if clean:
        manifests.update(prepare_librispeech(corpus_dir, dataset_parts=clean, num_jobs=num_jobs))
    if not dirty:
        return manifests
    links: list[tuple[Path, Path]] = []
    texts: list[tuple[Path, str]] = []
    for part in dirty:
        part_dir, excluded = corpus_dir / part, bad.excluded(part)
        for trans in sorted(part_dir.rglob("*.trans.txt")):
            lines = trans.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if line.split(maxsplit=1)[0] not in excluded]
            if kept:
                texts.append((trans.relative_to(corpus_dir), "\n".join(kept) + "\n"))
            for line in kept:
                audio = _audio_path(part_dir, line.split(maxsplit=1)[0])
                links.append((audio, audio.relative_to(corpus_dir)))
    with staged_tree(bad.out_dir, links, texts) as staging:
        staged = prepare_librispeech(staging, dataset_parts=dirty, num_jobs=num_jobs)
        for part in dirty:
            recordings = unstage_recordings(staged[part]["recordings"], staging, corpus_dir)
            manifests[part] = {**staged[part], "recordings": recordings}
    return manifests


def _audio_path(part_dir: Path, utt_id: str) -> Path:
    """Where lhotse's recipe looks for an utterance: ``<part>/<spk>/<chapter>/<utt-id>.flac``."""
    return part_dir / Path(utt_id.replace("-", "/")).parent / f"{utt_id}.flac"


def load_or_prepare(
    out_dir: Path | str,
    parts: Sequence[str],
    read: Callable[[list[str], BadAudioLog], dict[str, CutSet]],
    *,
    sampling_rate: int = 16000,
    compute_features: bool = True,
    num_jobs: int = 2,
    bad_audio: str = "strict",
    max_bad_audio_fraction: float = 0.01,
) -> dict[str, CutSet]:
    """The caching, resampling, feature and writing steps shared by every corpus.

    Parts whose ``out_dir/cuts_<part>.jsonl.gz`` exists are loaded; ``read(missing_parts, bad)``
    builds the others (``{part: CutSet}``, one supervision per cut, normalised transcripts),
    recording what it finds in ``bad`` (:class:`~dmao.data.bad_audio.BadAudioLog`: a pre-scan of
    the audio headers; it sets ``bad.listed[part]``, the utterance count the error budget is a
    fraction of, and leaves excluded utterances out in skip mode). New cuts are
    sorted by id (so the order does not depend on the file system) and resampled to
    ``sampling_rate``; features are computed where missing; each cuts file is written last and
    atomically, so an interrupted run never leaves a file that looks complete. Processes calling
    it at once on the same ``out_dir`` take turns (``out_dir/.prepare.lock``).

    Args:
        out_dir: manifest directory (created if missing).
        parts: part names to return.
        read: builds the cuts of the parts that are not cached yet.
        sampling_rate: the rate features are computed at (Hz); audio at another rate is
            resampled on load. Cached cuts at another rate are an error (mixing rates in one
            manifest directory would silently change the features).
        compute_features: compute and store :func:`~dmao.data.features.fbank_extractor` features.
        num_jobs: processes for feature extraction.
        bad_audio: ``strict`` or ``skip`` (``data.bad_audio``, see :mod:`dmao.data.bad_audio`).
            Cuts whose audio cannot be decoded or holds NaN/inf samples get no features; strict
            mode then writes no cuts file for their part and raises listing them all, skip mode
            leaves them out.
        max_bad_audio_fraction: skip mode's error budget per part.

    Returns:
        ``{part: CutSet}`` for every requested part, in memory, in the order of ``parts``.

    Raises:
        ValueError: bad audio (strict) or more than the budget of it (skip); the report
            ``out_dir/bad_audio.json`` lists every bad file either way.
    """
    out_dir = Path(out_dir)
    bad = BadAudioLog(out_dir, bad_audio, max_bad_audio_fraction)
    if isinstance(parts, str):
        raise TypeError(f"parts must be a sequence of part names, got the string {parts!r}")
    if num_jobs < 1:
        raise ValueError(f"num_jobs must be >= 1, got {num_jobs}")
    # .sph corpora need dmao's SPHERE reader (lhotse's default wants the sph2pipe program).
    install_audio_backend()
    # Runs started side by side (dmao compare --jobs) wait for the one that prepares the
    # folder, then load what it wrote.
    with folder_lock(out_dir, "manifests"):
        return _load_or_prepare(
            out_dir, list(parts), read, bad, sampling_rate, compute_features, num_jobs
        )


def _load_or_prepare(
    out_dir: Path,
    parts: list[str],
    read: Callable[[list[str], BadAudioLog], dict[str, CutSet]],
    bad: BadAudioLog,
    sampling_rate: int,
    compute_features: bool,
    num_jobs: int,
) -> dict[str, CutSet]:
    result: dict[str, CutSet] = {}
    missing = []
    for part in parts:
        if cuts_path(out_dir, part).is_file():
            log.info("Loading cached cuts for %s from %s", part, cuts_path(out_dir, part))
            result[part] = load_cuts(out_dir, part)
            rates = {cut.sampling_rate for cut in result[part]}
            if rates - {sampling_rate}:
                raise ValueError(
                    f"{cuts_path(out_dir, part)} holds cuts at {sorted(rates)} Hz but "
                    f"{sampling_rate} Hz was asked for (data.sampling_rate); prepare this "
                    "sampling rate in another manifest directory"
                )
        else:
            missing.append(part)
    if missing:
        fresh = read(missing, bad)
        out_dir.mkdir(parents=True, exist_ok=True)
        for part in missing:
            cuts = CutSet.from_cuts(sorted(fresh[part], key=lambda cut: cut.id))
            bad.listed.setdefault(part, len(cuts) + bad.num_bad(part))
            if any(cut.sampling_rate != sampling_rate for cut in cuts):
                cuts = cuts.resample(sampling_rate)
            result[part] = cuts
    need_features = [
        part
        for part in parts
        if compute_features and not all(cut.has_features for cut in result[part])
    ]
    with feature_executor(num_jobs if need_features else 1) as executor:
        for part in need_features:
            result[part], lost = store_features(
                result[part], out_dir, part, sampling_rate, num_jobs, executor
            )
            bad.listed.setdefault(part, len(result[part]) + len(lost))
            for cut in lost:
                bad.add(_diagnose(part, cut))
    fresh_parts = [part for part in parts if part in missing or part in need_features]
    failed = set(bad.failed_parts(fresh_parts))
    for part in fresh_parts:
        if part not in failed:
            _write_atomically(result[part], cuts_path(out_dir, part))
    if fresh_parts:
        bad.write_report(fresh_parts)
    bad.check(fresh_parts, stage="feature extraction")
    return {part: result[part] for part in parts}  # in the order asked, cached or not


def _diagnose(part: str, cut: Cut) -> BadAudio:
    """Why a cut got no features: its audio does not decode (the library's message), holds
    NaN/inf samples, or (finite but huge samples) gives non-finite features."""
    path = ", ".join(str(src.source) for src in cut.recording.sources) if cut.has_recording else "-"
    try:
        samples = cut.load_audio()
    except Exception as err:  # lhotse's AudioLoadingError, soundfile's errors, ...
        return BadAudio(part, cut.id, path, "unreadable_audio", audio_error_message(err))
    non_finite = int((~np.isfinite(samples)).sum())
    if non_finite:
        detail = f"{non_finite} NaN or inf samples"
        return BadAudio(part, cut.id, path, "non_finite_samples", detail)
    return BadAudio(part, cut.id, path, "non_finite_features", "fbank features are NaN or inf")


def _normalised(cut: Cut) -> list[SupervisionSegment]:
    return [
        fastcopy(
            sup,
            text=normalize_transcript(sup.text or ""),
            custom={**(sup.custom or {}), "original_text": sup.text},
        )
        for sup in cut.supervisions
    ]


def _check_corpus(corpus_dir: Path, parts: Sequence[str]) -> dict[str, list[tuple[str, Path]]]:
    """Fail early with messages that name the path and layout; lhotse's recipe would assert or
    crash on an unpacking error deep inside a thread pool instead.

    Returns:
        ``{part: [(utterance id, audio path)]}`` of every transcribed utterance (the audio may be
        missing: the bad-audio pre-scan reports it).
    """
    if not corpus_dir.is_dir():
        raise FileNotFoundError(
            f"corpus directory {corpus_dir} does not exist; expected {LIBRISPEECH_LAYOUT}"
        )
    available = sorted(p.name for p in corpus_dir.iterdir() if p.is_dir())
    listed: dict[str, list[tuple[str, Path]]] = {}
    for part in parts:
        part_dir = corpus_dir / part
        if not part_dir.is_dir():
            raise FileNotFoundError(
                f"corpus part {part!r} not found: {part_dir} does not exist "
                f"(parts found in {corpus_dir}: {available or 'none'}); "
                f"expected {LIBRISPEECH_LAYOUT}"
            )
        transcripts = sorted(part_dir.rglob("*.trans.txt"))
        if not transcripts:
            raise ValueError(
                f"corpus part {part_dir} has no *.trans.txt transcripts; "
                f"expected {LIBRISPEECH_LAYOUT}"
            )
        utterances = listed[part] = []
        for path in transcripts:
            for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                fields = line.split(maxsplit=1)
                if len(fields) != 2:
                    raise ValueError(
                        f"{path}:{line_no}: expected '<utt-id> <TRANSCRIPT>' (LibriSpeech "
                        f"transcripts are never empty), got {line!r}"
                    )
                # Where lhotse's recipe looks (it drops, with a warning, an utterance whose file
                # is missing: the pre-scan reports it instead).
                utterances.append((fields[0], _audio_path(part_dir, fields[0])))
    return listed


def _write_atomically(cuts: CutSet, path: Path) -> None:
    # The temporary name keeps the ".jsonl.gz" suffix, from which lhotse picks the format.
    tmp = path.with_name(f".{path.name[: -len('.jsonl.gz')]}.tmp-{os.getpid()}.jsonl.gz")
    cuts.to_file(tmp)
    os.replace(tmp, path)
