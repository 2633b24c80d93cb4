"""The built-in synthetic corpus: grammar sentences spoken by espeak-ng, in LibriSpeech's layout.

``prepare_synthetic(out_dir)`` writes::

    out_dir/{train,dev,test}/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac   16 kHz mono
    out_dir/{train,dev,test}/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt       "<utt> TEXT"
    out_dir/SPEAKERS.json    voice, rate, pitch and pitch range of every speaker
    out_dir/.complete        JSON with the parameters and statistics, written last

so ``lhotse.recipes.prepare_librispeech(out_dir, dataset_parts=["train", "dev", "test"])`` reads it.

How it is made (see README.md in this folder for the full description):
- Sentences come from our controlled-vocabulary grammar (``grammar.py``, Apache-2.0), distinct
  across the whole corpus, so no sentence is in two splits. The stream is cut test, dev, train.
- A speaker is one (English voice + variant, rate, pitch, pitch range) combination. Dev and test
  speakers each get a voice+variant pair that no other speaker uses; train speakers share the
  remaining pairs. Genders alternate within each split.
- Each utterance (``render.py``) gets seeded random leading/trailing silence, level and (by
  default) white or pink noise at a random SNR. Every random number derives from ``seed`` and the
  utterance's identity, never from worker scheduling, so the same seed gives the same bytes for
  any ``num_jobs``.

The sizes of dev and test depend only on the total utterance count, and both are cut from the
front of the sentence and speaker streams; for hours between about 1 and 3.5 the defaults give
200 utterances each, identical whatever ``hours`` is, so models trained on different amounts of
data are scored on the same test set.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from dmao.data.folder_lock import folder_lock
from dmao.data.synthetic.grammar import Sentence, iter_sentences
from dmao.data.synthetic.render import PAD_SECONDS, SAMPLE_RATE, RenderJob, run_jobs

__all__ = [
    "ACCENTS",
    "COMPLETE_MARKER",
    "CORPUS_VERSION",
    "SAMPLE_RATE",
    "SPLITS",
    "VARIANTS",
    "PlannedUtterance",
    "SyntheticPlan",
    "SyntheticSpeaker",
    "plan_synthetic",
    "prepare_synthetic",
]

logger = logging.getLogger(__name__)

# Bump when a change alters the generated corpus, so existing corpora are re-made.
CORPUS_VERSION = 1
SPLITS = ("train", "dev", "test")
COMPLETE_MARKER = ".complete"
_IN_PROGRESS_MARKER = ".in_progress.json"
SPEAKERS_FILE = "SPEAKERS.json"

# English voices of espeak-ng 1.52 (espeak-ng-data/lang/gmw). en-Shaw (Shavian script) is left out.
ACCENTS = (
    "en",  # British (default)
    "en-us",
    "en-gb-x-rp",  # Received Pronunciation
    "en-gb-scotland",
    "en-gb-x-gbclan",  # Lancaster
    "en-gb-x-gbcwmd",  # West Midlands
    "en-us-nyc",
    "en-029",  # Caribbean
)
# Voice variants (espeak-ng-data/voices/!v) that sound like a person: the numbered male/female
# variants, three Klatt synthesiser settings and named human voices. Left out: robotic, echoing,
# whispering, croaking and child-like ones (robosoft*, UniRobot, whisper*, croak, zac, ...), and
# iven, Jacky, antonio, ed and paul, whose output nears int16 full scale even at reduced volume.
VARIANTS: dict[str, str] = {
    **{f"m{i}": "male" for i in range(1, 9)},
    **{f"f{i}": "female" for i in range(1, 6)},
    **dict.fromkeys(("klatt", "klatt2", "klatt3", "klatt4", "klatt6"), "male"),
    **dict.fromkeys(
        ("Andy", "Alex", "Denis", "Gene", "Lee", "Michael", "Mike", "adam", "benjamin", "david",
         "edward", "gustave", "max", "quincy", "rob", "robert", "travis", "victor",
         "grandpa", "Storm", "Mario", "michel", "miguel", "Nguyen"),
        "male",
    ),
    **dict.fromkeys(
        ("Annie", "anika", "belinda", "linda", "steph", "aunty", "grandma", "Alicia", "Andrea"),
        "female",
    ),
}  # fmt: skip
# Prosody ranges of a speaker, around espeak's defaults (175 wpm, pitch 50, range 50); wide enough
# to make speakers distinct, narrow enough to stay natural.
RATE_WPM_RANGE = (140, 210)
PITCH_RANGE = (30, 70)
PITCH_VARIATION_RANGE = (20, 80)
# Speaker ids by split: train 1001.., dev 8001.., test 9001.. (train stays below 8001).
_FIRST_SPEAKER_ID = {"train": 1001, "dev": 8001, "test": 9001}
_MAX_SPEAKERS = {"train": 6999, "dev": 999, "test": 999}


@dataclass(frozen=True)
class SyntheticSpeaker:
    speaker_id: str
    chapter_id: str
    split: str
    accent: str  # espeak language voice, e.g. "en-gb-scotland"
    variant: str  # espeak voice variant, e.g. "f2"
    gender: str  # of the variant: "male" or "female"
    rate_wpm: int
    pitch: int
    pitch_range: int

    @property
    def voice(self) -> str:
        """The espeak voice name, ``accent+variant``."""
        return f"{self.accent}+{self.variant}"


@dataclass(frozen=True)
class PlannedUtterance:
    utterance_id: str  # "<speaker>-<chapter>-<index:04d>"
    split: str
    speaker: SyntheticSpeaker
    index: int  # within the chapter
    sentence: Sentence

    @property
    def relative_path(self) -> str:
        s = self.speaker
        return f"{self.split}/{s.speaker_id}/{s.chapter_id}/{self.utterance_id}.flac"


@dataclass(frozen=True)
class SyntheticPlan:
    """What ``prepare_synthetic`` will write, decided before any audio is made."""

    speakers: tuple[SyntheticSpeaker, ...]
    utterances: tuple[PlannedUtterance, ...]
    estimated_seconds: float

    def split(self, name: str) -> list[PlannedUtterance]:
        return [u for u in self.utterances if u.split == name]


def _estimated_seconds(sentence: Sentence, rate_wpm: float = 175.0) -> float:
    """Duration of a synthesised sentence with padding, from its length in characters.

    Least-squares fit over 300 grammar sentences with en-us+m3 at 175 wpm: 0.06 s + 0.0507 s per
    transcript character (residual std 0.18 s); duration scales with 175/rate (measured 1.23x at
    140 wpm, 0.85x at 210). Plus the mean padding.
    """
    speech = (0.06 + 0.0507 * len(sentence.transcript)) * 175.0 / rate_wpm
    return speech + sum(PAD_SECONDS)  # two pads, each of mean sum(PAD_SECONDS) / 2


def _eval_size(num_total: int, fraction: float, min_eval_utterances: int) -> int:
    """``fraction`` of the corpus, but at least ``min_eval_utterances`` as long as that is at most
    a fifth of the corpus (small corpora keep most data for training), and at least 1."""
    return max(round(fraction * num_total), min(min_eval_utterances, num_total // 5), 1)


def _speaker_count(num_utterances: int, utterances_per_speaker: int) -> int:
    """Enough speakers for ``utterances_per_speaker`` each; two or more when there are two
    utterances, so every split has both genders."""
    return max(math.ceil(num_utterances / utterances_per_speaker), min(2, num_utterances))


def _make_speakers(seed: int, counts: dict[str, int]) -> list[SyntheticSpeaker]:
    """Speakers for each split: test first, then dev, then train (so eval speakers don't depend on
    the training size). Eval speakers get voice+variant pairs of their own; genders alternate."""
    rng = random.Random(f"dmao-synthetic-speakers-{seed}")
    pools: dict[str, list[tuple[str, str]]] = {}
    for gender in ("female", "male"):
        pairs = [(a, v) for a in ACCENTS for v, g in VARIANTS.items() if g == gender]
        rng.shuffle(pairs)
        pools[gender] = pairs
    train_pairs: dict[str, list[tuple[str, str]]] = {"female": [], "male": []}
    speakers: list[SyntheticSpeaker] = []
    used: set[tuple[str, str, int, int, int]] = set()
    for split in ("test", "dev", "train"):
        if counts[split] > _MAX_SPEAKERS[split]:
            raise ValueError(
                f"{counts[split]} {split} speakers exceed the {_MAX_SPEAKERS[split]} that the "
                "speaker id scheme allows; raise utterances_per_speaker or lower hours"
            )
        if split == "train":
            train_pairs = {g: list(p) for g, p in pools.items()}
        for k in range(counts[split]):
            gender = ("female", "male")[k % 2]
            if split != "train":
                if not pools[gender]:
                    raise ValueError(
                        f"not enough {gender} voice+variant pairs for {counts[split]} {split} "
                        "speakers (each eval speaker gets a pair of its own); raise "
                        "utterances_per_speaker or lower the dev/test sizes"
                    )
                accent, variant = pools[gender].pop()
            else:
                if not train_pairs[gender]:  # all pairs used once: reuse them, new prosody
                    train_pairs[gender] = list(pools[gender])
                    rng.shuffle(train_pairs[gender])
                accent, variant = train_pairs[gender].pop()
            prosody = random.Random(f"dmao-synthetic-prosody-{seed}-{split}-{k}")
            while True:
                key = (
                    accent,
                    variant,
                    prosody.randint(*RATE_WPM_RANGE),
                    prosody.randint(*PITCH_RANGE),
                    prosody.randint(*PITCH_VARIATION_RANGE),
                )
                if key not in used:
                    break
            used.add(key)
            speaker_id = _FIRST_SPEAKER_ID[split] + k
            speakers.append(
                SyntheticSpeaker(
                    speaker_id=str(speaker_id),
                    chapter_id=str(speaker_id * 10),
                    split=split,
                    accent=accent,
                    variant=variant,
                    gender=gender,
                    rate_wpm=key[2],
                    pitch=key[3],
                    pitch_range=key[4],
                )
            )
    return speakers


def plan_synthetic(
    hours: float = 3.0,
    seed: int = 0,
    dev_fraction: float = 0.05,
    test_fraction: float = 0.05,
    min_eval_utterances: int = 200,
    utterances_per_speaker: int = 30,
) -> SyntheticPlan:
    """Decide sentences, speakers and splits (no audio). Arguments as for ``prepare_synthetic``."""
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    if not (0 <= dev_fraction < 0.5 and 0 <= test_fraction < 0.5):
        raise ValueError(
            f"dev/test fractions must be in [0, 0.5), got {dev_fraction}, {test_fraction}"
        )
    if not 1 <= utterances_per_speaker <= 9999:
        raise ValueError(
            f"utterances_per_speaker must be in 1..9999 (4-digit utterance "
            f"indices), got {utterances_per_speaker}"
        )
    # Count utterances by estimated duration at the mean speaking rate.
    target_seconds = hours * 3600.0
    sentences: list[Sentence] = []
    total = 0.0
    for sentence in iter_sentences(seed):
        if total >= target_seconds and len(sentences) >= 3:
            break
        sentences.append(sentence)
        total += _estimated_seconds(sentence)
    num_total = len(sentences)
    num_test = _eval_size(num_total, test_fraction, min_eval_utterances)
    num_dev = _eval_size(num_total, dev_fraction, min_eval_utterances)
    num_train = num_total - num_test - num_dev
    if num_train < 1:
        raise ValueError(f"{num_total} utterances leave none for training; raise hours")
    split_sentences = {
        "test": sentences[:num_test],
        "dev": sentences[num_test : num_test + num_dev],
        "train": sentences[num_test + num_dev :],
    }
    counts = {s: _speaker_count(len(v), utterances_per_speaker) for s, v in split_sentences.items()}
    speakers = _make_speakers(seed, counts)
    utterances: list[PlannedUtterance] = []
    estimated = 0.0
    for split in SPLITS:
        split_speakers = [s for s in speakers if s.split == split]
        pending = split_sentences[split]
        # Contiguous, balanced shares: speaker k reads sentences [k*n//K, (k+1)*n//K).
        num, num_speakers = len(pending), len(split_speakers)
        for k, speaker in enumerate(split_speakers):
            share = pending[k * num // num_speakers : (k + 1) * num // num_speakers]
            for index, sentence in enumerate(share):
                utterance_id = f"{speaker.speaker_id}-{speaker.chapter_id}-{index:04d}"
                utterances.append(PlannedUtterance(utterance_id, split, speaker, index, sentence))
                estimated += _estimated_seconds(sentence, speaker.rate_wpm)
    return SyntheticPlan(tuple(speakers), tuple(utterances), estimated)


# ---------------------------------------------------------------- files


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _claim_directory(out_dir: Path, params: dict) -> None:
    """Make ``out_dir`` ours for ``params``: keep a matching interrupted run's finished files,
    delete a previous corpus made with other parameters, refuse folders we did not create."""
    complete = _read_json(out_dir / COMPLETE_MARKER)
    in_progress = _read_json(out_dir / _IN_PROGRESS_MARKER)
    ours = complete is not None or in_progress is not None
    existing = [s for s in SPLITS if (out_dir / s).exists()]
    if existing and not ours:
        raise FileExistsError(
            f"{out_dir} has {existing} folders but no {COMPLETE_MARKER} or {_IN_PROGRESS_MARKER} "
            "marker, so it was not made by prepare_synthetic; refusing to overwrite it. Choose "
            "an empty folder or delete this one."
        )
    # Invalidate first: an interruption from here on must not leave a "complete" corpus.
    (out_dir / COMPLETE_MARKER).unlink(missing_ok=True)
    if in_progress is not None and in_progress.get("params") == params:
        for tmp in out_dir.rglob("*.tmp"):
            tmp.unlink()
        logger.info("resuming the interrupted synthetic corpus in %s", out_dir)
        return
    for split in existing:
        shutil.rmtree(out_dir / split)
    (out_dir / SPEAKERS_FILE).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(out_dir / _IN_PROGRESS_MARKER, json.dumps({"params": params}, indent=2))


def _normalise_snr(noise_snr_db: float | tuple[float, float] | None) -> tuple[float, float] | None:
    if noise_snr_db is None:
        return None
    if isinstance(noise_snr_db, (int, float)):
        return (float(noise_snr_db), float(noise_snr_db))
    low, high = (float(x) for x in noise_snr_db)
    if low > high:
        raise ValueError(
            f"noise_snr_db range must be (low, high) with low <= high, got {noise_snr_db}"
        )
    return (low, high)


def prepare_synthetic(
    out_dir: Path | str,
    hours: float = 3.0,
    seed: int = 0,
    noise_snr_db: float | tuple[float, float] | None = (15.0, 30.0),
    num_jobs: int = 2,
    dev_fraction: float = 0.05,
    test_fraction: float = 0.05,
    min_eval_utterances: int = 200,
    utterances_per_speaker: int = 30,
) -> Path:
    """Synthesise the corpus into ``out_dir`` in LibriSpeech's layout; returns ``out_dir``.

    Processes calling it at once on the same ``out_dir`` take turns (``out_dir/.prepare.lock``):
    the first makes the corpus, the others then find it complete. Returns at once if
    ``out_dir/.complete`` records the same parameters. An interrupted run with
    the same parameters resumes (finished FLAC files are kept; each was written atomically); a
    corpus made with other parameters is deleted and re-made.

    Args:
        out_dir: corpus folder; gets ``train/``, ``dev/``, ``test/``, ``SPEAKERS.json``,
            ``.complete``.
        hours: total audio over the three splits, approximately (planned from estimated
            durations; the real total is in ``.complete``).
        seed: fixes sentences, speakers, splits and audio bytes.
        noise_snr_db: additive white or pink noise (50/50) at an SNR in dB drawn uniformly from
            this ``(low, high)`` range per utterance; a number for a fixed SNR; None for clean.
        num_jobs: worker processes (each loads its own espeak-ng; small corpora are made in this
            process). Does not change the output.
        dev_fraction, test_fraction: share of utterances for dev and test.
        min_eval_utterances: dev and test each get at least this many utterances, as long as
            that is at most a fifth of the corpus.
        utterances_per_speaker: utterances read by each speaker (one chapter per speaker).
    """
    out_dir = Path(out_dir)
    snr = _normalise_snr(noise_snr_db)
    params = {
        "corpus_version": CORPUS_VERSION,
        "hours": float(hours),
        "seed": int(seed),
        "noise_snr_db": list(snr) if snr is not None else None,
        "dev_fraction": float(dev_fraction),
        "test_fraction": float(test_fraction),
        "min_eval_utterances": int(min_eval_utterances),
        "utterances_per_speaker": int(utterances_per_speaker),
        "sample_rate": SAMPLE_RATE,
    }
    complete = _read_json(out_dir / COMPLETE_MARKER)
    if complete is not None and complete.get("params") == params:
        logger.info("synthetic corpus in %s is complete, skipping", out_dir)
        return out_dir
    # Runs started side by side (dmao compare --jobs) wait here for the one that makes the corpus.
    with folder_lock(out_dir, "synthetic corpus"):
        complete = _read_json(out_dir / COMPLETE_MARKER)
        if complete is None or complete.get("params") != params:
            _synthesise(out_dir, params, snr, num_jobs)
    return out_dir


def _synthesise(
    out_dir: Path, params: dict, snr: tuple[float, float] | None, num_jobs: int
) -> None:
    """Make (or finish) the corpus of ``params`` in ``out_dir``; writes ``.complete`` last."""
    plan = plan_synthetic(
        params["hours"],
        params["seed"],
        params["dev_fraction"],
        params["test_fraction"],
        params["min_eval_utterances"],
        params["utterances_per_speaker"],
    )
    _claim_directory(out_dir, params)
    for speaker in plan.speakers:
        (out_dir / speaker.split / speaker.speaker_id / speaker.chapter_id).mkdir(
            parents=True, exist_ok=True
        )

    num_samples: dict[str, int] = {}  # by path
    jobs: list[RenderJob] = []
    for utt in plan.utterances:
        path = out_dir / utt.relative_path
        if path.exists():  # finished by an interrupted run with the same parameters
            num_samples[str(path)] = sf.info(str(path)).frames
            continue
        s = utt.speaker
        jobs.append(
            RenderJob(
                path=str(path),
                spoken=utt.sentence.spoken,
                voice=s.voice,
                rate_wpm=s.rate_wpm,
                pitch=s.pitch,
                pitch_range=s.pitch_range,
                seed=(CORPUS_VERSION, params["seed"], int(s.speaker_id), utt.index),
                noise_snr_db=snr,
            )
        )
    start = time.perf_counter()
    made_samples = 0
    results = run_jobs(jobs, num_jobs)
    for path, length in tqdm(
        results, total=len(jobs), desc="synthesising", unit="utt", disable=None, leave=False
    ):
        num_samples[path] = length
        made_samples += length
    wall_seconds = time.perf_counter() - start
    if jobs:
        logger.info(
            "synthesised %d utterances (%.0f s of audio) in %.1f s: %.1f utt/s, %.0fx real time",
            len(jobs), made_samples / SAMPLE_RATE, wall_seconds, len(jobs) / wall_seconds,
            made_samples / SAMPLE_RATE / wall_seconds,
        )  # fmt: skip

    by_speaker: dict[str, list[PlannedUtterance]] = {s.speaker_id: [] for s in plan.speakers}
    for utt in plan.utterances:
        by_speaker[utt.speaker.speaker_id].append(utt)
    for speaker in plan.speakers:
        chapter_dir = out_dir / speaker.split / speaker.speaker_id / speaker.chapter_id
        lines = [
            f"{u.utterance_id} {u.sentence.transcript}\n" for u in by_speaker[speaker.speaker_id]
        ]
        _write_text_atomic(
            chapter_dir / f"{speaker.speaker_id}-{speaker.chapter_id}.trans.txt", "".join(lines)
        )
    speakers_json = [
        {**asdict(s), "voice": s.voice, "num_utterances": len(by_speaker[s.speaker_id])}
        for s in plan.speakers
    ]
    _write_text_atomic(
        out_dir / SPEAKERS_FILE,
        json.dumps({"corpus_version": CORPUS_VERSION, "speakers": speakers_json}, indent=2),
    )

    stats = {}
    for split in SPLITS:
        utts = plan.split(split)
        stats[split] = {
            "utterances": len(utts),
            "speakers": sum(1 for s in plan.speakers if s.split == split),
            "seconds": round(
                sum(num_samples[str(out_dir / u.relative_path)] for u in utts) / SAMPLE_RATE, 2
            ),
        }
    total_seconds = sum(v["seconds"] for v in stats.values())
    marker = {"params": params, "stats": stats, "total_seconds": round(total_seconds, 2)}
    _write_text_atomic(out_dir / COMPLETE_MARKER, json.dumps(marker, indent=2))
    (out_dir / _IN_PROGRESS_MARKER).unlink(missing_ok=True)
