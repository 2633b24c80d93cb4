"""Reverberated copies of the training data (``data.rir_dir``), as Kaldi's
``reverberate_data_dir.py`` and ESPnet's ``rir_scp`` add room acoustics.

The training parts are extended with ``data.reverb_copies`` copies of every utterance convolved
with a room impulse response (RIR) from a folder of RIR recordings (OpenSLR 28's
``RIRS_NOISES/simulated_rirs``, or any ``.wav``/``.flac``/``.ogg``/``.sph`` files, searched
recursively; the first channel of a multi-channel file). Every file is taken as an RIR, so the
folder must not hold noise recordings (``RIRS_NOISES/pointsource_noises`` and the ``*_noise_*``
files of ``real_rirs_isotropic_noises`` are noise); files longer than :data:`LONG_RIR_SECONDS`,
unusual for an RIR, are named in a warning. Each copy draws its RIR with a generator seeded by
the utterance id and the copy's number, so the same folder always gives the same copies. The
reverberant audio is aligned to the direct path and scaled to the original's energy (lhotse's
:meth:`~lhotse.cut.MonoCut.reverb_rir`; an RIR at another sampling rate is resampled to the
utterance's first). A copy's cut id is ``<id>_rvb<k>`` and its transcript is the original's.

Like speed perturbation (:mod:`dmao.data.speed_perturb`), the copies get their own fbank
features, computed once and cached as the part ``<part>_rvb<k>_<hash of the folder's path>`` in
``data.manifest_dir`` through :func:`dmao.data.manifests.load_or_prepare` (with
``data.on_the_fly_features`` only their manifests: the loader reverberates). The RIR files are
checked first: one that cannot be read is listed with its reason (part ``rir_<hash>``), and
``data.bad_audio: skip`` leaves it out. Copies are made of the original training parts (not of
speed-perturbed copies); additive noise (``data.noise_dir``) is mixed into originals and copies
alike during training. Dev and test are never reverberated. lhotse's simulated RIRs need
torchaudio, which does not install beside the pinned torch, so a folder of RIRs is required.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from lhotse import CutSet, Recording
from lhotse.cut import Cut
from lhotse.utils import fastcopy

from dmao.config.schema import DataConfig
from dmao.data.audio_folder import audio_files, folder_digest, readable_audio_files
from dmao.data.bad_audio import BadAudioLog
from dmao.data.manifests import load_or_prepare
from dmao.data.pipeline import feature_settings, join_parts, without_features

__all__ = [
    "LONG_RIR_SECONDS",
    "check_reverb_config",
    "reverb_part",
    "reverberate_parts",
    "reverberated",
    "rir_part",
]

log = logging.getLogger(__name__)

LONG_RIR_SECONDS = 5.0
"""Room impulse responses decay within a second or two (T60); a longer file is named in a
warning as possibly not an RIR (e.g. a noise recording in the folder)."""


def check_reverb_config(config: DataConfig) -> None:
    """Refuse a bad ``data.reverb_copies``, a missing ``data.rir_dir`` or one without audio
    files before anything is prepared (one line naming the field)."""
    copies = config.reverb_copies
    if isinstance(copies, bool) or not isinstance(copies, int) or not 1 <= copies <= 10:
        raise ValueError(
            f"data.reverb_copies: expected a whole number of reverberated copies per training "
            f"utterance from 1 to 10, got {copies!r}"
        )
    if config.rir_dir:
        audio_files(Path(config.rir_dir), "data.rir_dir")


def rir_part(rir_dir: Path | str) -> str:
    """The name under which the RIR files' bad audio is listed: ``rir_<8 hex digits>``."""
    return f"rir_{folder_digest(rir_dir)}"


def reverb_part(part: str, copy: int, rir_dir: Path | str) -> str:
    """The cache name of copy ``copy`` (from 1) of ``part`` reverberated with the RIRs of
    ``rir_dir``: ``train`` → ``train_rvb1_<8 hex digits of the folder's path>``."""
    return f"{part}_rvb{copy}_{folder_digest(rir_dir)}"


def _load_rirs(rir_dir: Path, bad: BadAudioLog) -> list[Recording]:
    """The readable RIR recordings below ``rir_dir`` (ids: paths below it, suffix kept)."""
    part = rir_part(rir_dir)
    files = readable_audio_files(rir_dir, "data.rir_dir", part, bad, what="room impulse responses")
    if bad.num_bad(part):  # skip mode: reported now; the copies' parts are reported later
        bad.write_report([part])
    rirs = [Recording.from_file(path, recording_id=file_id) for path, file_id in files.items()]
    long = [f"{r.id} ({r.duration:.1f} s)" for r in rirs if r.duration > LONG_RIR_SECONDS]
    if long:
        log.warning(
            "data.rir_dir: %d of %d files last over %g s, long for a room impulse response (noise "
            "recordings in the folder?): %s%s", len(long), len(rirs), LONG_RIR_SECONDS,
            ", ".join(long[:5]), ", ..." if len(long) > 5 else "",
        )  # fmt: skip
    return rirs


def _reverberate(cut: Cut, rir: Recording, copy: int) -> Cut:
    """``cut`` (features dropped) convolved with ``rir``, with the id ``<cut id>_rvb<copy>`` for
    the cut and its recording (each copy of a segment has its own room, so segments of one long
    recording, as in TED-LIUM, get recordings of their own) and ``<id>_rvb<copy>`` for its
    supervisions."""
    new_id = f"{cut.id}_rvb{copy}"
    if rir.sampling_rate != cut.sampling_rate:
        rir = rir.resample(cut.sampling_rate)
    out = cut.drop_features().reverb_rir(rir, affix_id=False)
    return fastcopy(
        out,
        id=new_id,
        recording=fastcopy(out.recording, id=new_id),
        supervisions=[fastcopy(s, id=f"{s.id}_rvb{copy}", recording_id=new_id)
                      for s in out.supervisions],
    )  # fmt: skip


def reverberate_parts(
    manifest_dir: Path | str,
    originals: dict[str, CutSet],
    rir_dir: Path | str,
    copies: int = 1,
    *,
    sampling_rate: int = 16000,
    num_jobs: int = 2,
    compute_features: bool = True,
    bad_audio: str = "strict",
    max_bad_audio_fraction: float = 0.01,
) -> dict[str, CutSet]:
    """``{<part>_rvb<k>_<hash>: CutSet}``: ``copies`` reverberated copies of every part of
    ``originals`` (prepared cuts), features cached in ``manifest_dir``, loaded when cached.

    The keyword arguments are :func:`~dmao.data.manifests.load_or_prepare`'s.

    Raises:
        ValueError: ``rir_dir`` is missing or holds no readable audio, or bad RIR files
            (``bad_audio``: strict), every one listed.
    """
    rir_dir = Path(rir_dir)
    source = {
        reverb_part(part, k, rir_dir): (part, k) for part in originals for k in range(1, copies + 1)
    }

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        rirs = _load_rirs(rir_dir, bad)
        if not rirs:
            raise ValueError(f"data.rir_dir: no readable room impulse response below {rir_dir}")
        built = {}
        for name in missing:
            part, k = source[name]
            bad.listed[name] = len(originals[part])
            built[name] = CutSet.from_cuts(
                _reverberate(cut, random.Random(f"dmao-rir-{cut.id}-{k}").choice(rirs), k)
                for cut in originals[part]
            )
        return built

    return load_or_prepare(
        manifest_dir,
        list(source),
        read,
        sampling_rate=sampling_rate,
        num_jobs=num_jobs,
        compute_features=compute_features,
        bad_audio=bad_audio,
        max_bad_audio_fraction=max_bad_audio_fraction,
    )


def reverberated(config: DataConfig, originals: dict[str, CutSet], *, num_jobs: int = 2) -> CutSet:
    """The reverberated copies ``config`` asks for of the prepared parts ``originals`` (``{part:
    CutSet}``, from :func:`~dmao.data.pipeline.prepare_parts`), in the order part, then copy; an
    empty :class:`~lhotse.CutSet` without ``data.rir_dir`` (:func:`reverberate_parts`).

    ``config`` is taken as checked (:func:`check_reverb_config`, which
    :func:`~dmao.training.data_setup.prepare_data` calls before the corpus is prepared): the RIR
    folder is listed again only where copies are built."""
    if not config.rir_dir:
        return CutSet.from_cuts([])
    by_name = reverberate_parts(
        config.manifest_dir,
        originals,
        config.rir_dir,
        config.reverb_copies,
        sampling_rate=config.sampling_rate,
        num_jobs=num_jobs,
        **feature_settings(config),
    )
    by_name = without_features(config, by_name)
    names = [reverb_part(p, k, config.rir_dir) for p in originals
             for k in range(1, config.reverb_copies + 1)]  # fmt: skip
    return join_parts(by_name, names)
