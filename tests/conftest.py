"""Shared fixtures: a tiny corpus in the real LibriSpeech layout, with real audio files.

The corpus is small enough to prepare in a couple of seconds and holds the problem utterances the
filter must catch, so data tests run the real lhotse recipe, real feature extraction and real
tokenisers end to end. Utterances are spoken by espeak-ng (through ``dmao.data.synthetic``) when
that is available, and otherwise are speech-like harmonic waveforms of a length that fits the text.
"""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet

TINY_SAMPLING_RATE = 16000

# Training words never contain Q, Z or digits, so a dev utterance with them is untokenisable by a
# tokeniser trained on the training transcripts.
_WORD_LIST = (
    "THE CAT SAT ON A MAT DOG RAN HOME BIRDS SING IN TREES GREEN HILLS ROLL SLOWLY RIVER FLOWS "
    "PAST OLD MILL WE WALK TO TOWN EVERY MORNING BOOK LIES OPEN TABLE LIGHT FADES WHEN NIGHT "
    "COMES DON'T FEEL BAD"
)
_WORDS = _WORD_LIST.split()


@dataclass(frozen=True)
class TinyCorpus:
    """What the ``tiny_corpus`` fixture built, and which utterances are the problem cases."""

    root: Path
    parts: tuple[str, ...]
    transcripts: dict[str, dict[str, str]]  # part -> utterance id -> transcript as written
    empty_id: str  # train: transcript of punctuation only, empty after normalisation
    infeasible_id: str  # train: 0.5 s of audio for a 54-character transcript (CTC-infeasible)
    unknown_char_id: str  # dev: contains characters absent from the training transcripts
    unknown_chars: str
    messy_id: str  # train: lower case and punctuation that normalisation must clean up
    audio_kind: str  # "espeak" (synthesised speech) or "tones" (speech-like waveforms)


def _espeak_synthesize() -> Callable[[str], np.ndarray] | None:
    """espeak-ng synthesis at 16 kHz from dmao.data.synthetic, or None where it is unavailable.

    Contract used: ``synthesize(text, sample_rate=16000) -> (samples float32 (N,), sample_rate)``.
    """
    try:
        synthetic = importlib.import_module("dmao.data.synthetic")
        synthesize = getattr(synthetic, "synthesize", None)
        if synthesize is None:
            synthesize = importlib.import_module("dmao.data.synthetic.espeak").synthesize
    except ImportError:
        return None

    def speak(text: str) -> np.ndarray:
        samples, rate = synthesize(text, sample_rate=TINY_SAMPLING_RATE)
        assert rate == TINY_SAMPLING_RATE and samples.ndim == 1 and len(samples) > 0, text
        return np.asarray(samples, dtype=np.float32)

    try:
        speak("A TEST")
    except OSError:  # the bundled shared library cannot be loaded on this platform
        return None
    return speak


def _waveform(rng: np.random.Generator, duration_s: float, num_words: int) -> np.ndarray:
    """A speech-like real waveform: voiced harmonic 'syllables', gliding pitch, pauses, noise."""
    n = round(duration_s * TINY_SAMPLING_RATE)
    t = np.arange(n) / TINY_SAMPLING_RATE
    f0 = rng.uniform(100.0, 220.0) * (1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / TINY_SAMPLING_RATE
    voiced = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase) for k in range(1, 6))
    # One amplitude bump per word, so the signal has the on/off structure of speech.
    bumps = np.clip(np.sin(np.pi * max(num_words, 1) * t / duration_s), 0.0, None) ** 0.5
    audio = 0.3 * voiced * bumps + 0.01 * rng.standard_normal(n)
    return (audio / max(1.0, np.abs(audio).max() / 0.9)).astype(np.float32)


def _write_part(
    root: Path,
    part: str,
    utterances: dict[str, tuple[str, float | None]],
    seed: int,
    speak: Callable[[str], np.ndarray] | None,
) -> None:
    """Write audio + transcripts; a duration of None means "speech if available"."""
    rng = np.random.default_rng(seed)
    by_chapter: dict[tuple[str, str], list[str]] = {}
    for utt_id, (text, duration_s) in utterances.items():
        spk, chapter, _ = utt_id.split("-")
        chapter_dir = root / part / spk / chapter
        chapter_dir.mkdir(parents=True, exist_ok=True)
        if duration_s is None and speak is not None:
            audio = speak(text)
        else:
            audio = _waveform(rng, duration_s or _duration_for(text), len(text.split()))
        sf.write(chapter_dir / f"{utt_id}.flac", audio, TINY_SAMPLING_RATE, subtype="PCM_16")
        by_chapter.setdefault((spk, chapter), []).append(f"{utt_id} {text}")
    for (spk, chapter), lines in by_chapter.items():
        path = root / part / spk / chapter / f"{spk}-{chapter}.trans.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _duration_for(text: str) -> float:
    # ~14 characters per second like read speech, within the 0.5–3 s the corpus promises; with 4×
    # subsampling a character CTC model gets 25 frames per second, so these are all feasible.
    return float(np.clip(0.4 + 0.07 * len(text), 0.5, 3.0))


def build_tiny_corpus(root: Path, *, use_espeak: bool = True) -> TinyCorpus:
    """Write the tiny corpus under ``root`` (train: 2 speakers × 2 chapters; dev; test)."""
    speak = _espeak_synthesize() if use_espeak else None
    rng = random.Random(1234)
    words = list(_WORDS)
    rng.shuffle(words)
    # Every word appears in training: chunk the shuffled list, then add random sentences.
    sentences = [" ".join(words[i : i + 3]) for i in range(0, len(words), 3)]
    while len(sentences) < 30:
        sentences.append(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 4))))

    # Duration None: spoken by espeak if available, else a waveform sized by _duration_for.
    train: dict[str, tuple[str, float | None]] = {}
    chapters = [("19", "198"), ("19", "227"), ("26", "495"), ("26", "496")]
    for i, sentence in enumerate(sentences):
        spk, chapter = chapters[i % len(chapters)]
        train[f"{spk}-{chapter}-{i // len(chapters):04d}"] = (sentence, None)
    empty_id, infeasible_id, messy_id = "19-198-0100", "19-198-0101", "26-495-0100"
    train[empty_id] = ("... !", 0.8)
    long_text = "EVERY MORNING WE WALK SLOWLY PAST THE OLD MILL TO TOWN"
    train[infeasible_id] = (long_text, 0.5)
    messy = "the well-known mill, don't  walk!"
    train[messy_id] = (messy, None)

    def held_out(spk: str, chapter: str, n: int, seed: int) -> dict[str, tuple[str, None]]:
        r = random.Random(seed)
        out = {}
        for i in range(n):
            text = " ".join(r.choice(_WORDS) for _ in range(r.randint(2, 4)))
            out[f"{spk}-{chapter}-{i:04d}"] = (text, None)
        return out

    dev = held_out("84", "121123", 6, seed=1)
    unknown_char_id, unknown_chars = "84-121123-0100", "QZ7"
    dev[unknown_char_id] = ("QUIZ 7 THE CAT", None)
    test = held_out("61", "70968", 6, seed=2)

    parts = {"train": train, "dev": dev, "test": test}
    for seed, (part, utterances) in enumerate(parts.items()):
        _write_part(root, part, utterances, seed=seed, speak=speak)
    return TinyCorpus(
        root=root,
        parts=tuple(parts),
        transcripts={p: {k: v[0] for k, v in u.items()} for p, u in parts.items()},
        empty_id=empty_id,
        infeasible_id=infeasible_id,
        unknown_char_id=unknown_char_id,
        unknown_chars=unknown_chars,
        messy_id=messy_id,
        audio_kind="espeak" if speak is not None else "tones",
    )


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> TinyCorpus:
    """A tiny LibriSpeech-layout corpus (train/dev/test, ~50 FLAC files of 0.5–3 s)."""
    return build_tiny_corpus(tmp_path_factory.mktemp("tiny_corpus") / "LibriSpeech")


@pytest.fixture(scope="session")
def tiny_cuts(tiny_corpus: TinyCorpus, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``{part: CutSet}`` of the tiny corpus with fbank features cached (one process)."""
    from dmao.data.manifests import prepare_manifests

    out_dir = tmp_path_factory.mktemp("tiny_manifests")
    cuts: dict[str, CutSet] = prepare_manifests(
        tiny_corpus.root, out_dir, tiny_corpus.parts, num_jobs=1
    )
    return cuts


@pytest.fixture(scope="session")
def tiny_char_tokenizer(tiny_cuts: dict, tmp_path_factory: pytest.TempPathFactory):
    """A CharTokenizer trained on the tiny corpus's training transcripts."""
    from dmao.data.manifests import cut_transcript
    from dmao.data.tokenizer import train_tokenizer

    texts = [cut_transcript(cut) for cut in tiny_cuts["train"]]
    return train_tokenizer("char", texts, tmp_path_factory.mktemp("tiny_char_tokenizer"))


@pytest.fixture(scope="session")
def train_cuts(tiny_cuts: dict, tiny_char_tokenizer) -> CutSet:
    """The tiny corpus's training cuts after ``filter_cuts`` (4x subsampling), as training
    filters them."""
    from dmao.data.filtering import filter_cuts

    kept, _ = filter_cuts(
        tiny_cuts["train"], tiny_char_tokenizer, subsampled_length=lambda n: (n // 2) // 2
    )
    return kept


@pytest.fixture(scope="session")
def tiny_corpus_tones(tmp_path_factory: pytest.TempPathFactory) -> TinyCorpus:
    """The same corpus with speech-like waveforms only (the fallback where espeak-ng is missing)."""
    return build_tiny_corpus(
        tmp_path_factory.mktemp("tiny_corpus_tones") / "LibriSpeech", use_espeak=False
    )


def tiny_train_overrides(corpus_root: Path, manifest_dir: Path) -> list[str]:
    """``key=value`` overrides for a seconds-long training run on the tiny corpus (a 2-layer
    d=32 Conformer with characters), shared by the recipe, compare and signal tests."""
    return [
        "data.corpus=librispeech",
        f"data.corpus_dir={corpus_root}",
        f"data.manifest_dir={manifest_dir}",
        "data.max_batch_seconds=12",
        "data.num_buckets=2",
        "tokenizer.kind=char",
        "model.d_model=32",
        "model.num_layers=2",
        "model.head_dim=16",
        "model.conv_kernel_size=7",
        "model.frontend_channels=[4, 4, 4, 4]",
        "train.progress_bar=false",
        "train.device=cpu",
    ]


def train_two_steps(kind: str, corpus_dir: Path, manifest_dir: Path, out: Path) -> dict:
    """A 2-step ``dmao train`` (:func:`tiny_train_overrides`) on the prepared manifests of a
    ``data.corpus=kind`` corpus; returns its one validation record."""
    from dmao.cli.main import main
    from dmao.training.metrics import read_metrics

    overrides = [
        *tiny_train_overrides(corpus_dir, manifest_dir),
        f"data.corpus={kind}",
        "train.max_steps=2",
        "train.valid_every_steps=2",
    ]
    assert main(["train", "--out", str(out), *overrides]) == 0
    (valid,) = read_metrics(out, "valid")
    return valid


def tiny_compare_overrides(corpus_root: Path, manifest_dir: Path) -> list[str]:
    """:func:`tiny_train_overrides` for an 8-step comparison: validated and checkpointed every 4
    steps, one DMAO event at step 4 moving a quarter of the units."""
    return [
        *tiny_train_overrides(corpus_root, manifest_dir),
        "train.max_steps=8",
        "train.valid_every_steps=4",
        "train.checkpoint_every_steps=4",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
    ]


def legacy_qkv_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model state dict in the layout before the fused attention projection: each ``qkv``
    weight and bias split into separate ``q``, ``k``, ``v`` entries."""
    out = {}
    for key, value in state.items():
        prefix, sep, attr = key.rpartition("qkv.")
        if sep and attr in ("weight", "bias"):
            for name, part in zip(("q", "k", "v"), value.chunk(3), strict=True):
                out[f"{prefix}{name}.{attr}"] = part.clone()
        else:
            out[key] = value
    return out


def flip_last_byte(path: Path) -> None:
    """Corrupt a file in place (its last byte inverted): same size, different content."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def train_tiny_run(run_dir: Path, overrides: list[str]) -> Path:
    """Train a run with the built-in recipe and ``overrides`` (e.g. tiny_train_overrides plus a
    few train.* settings) into ``run_dir``, through the production recipe; returns ``run_dir``."""
    from dmao.config import load_config
    from dmao.training.recipe import TrainingRecipe

    recipe = TrainingRecipe(load_config(None, overrides), run_dir)
    recipe.setup()
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    return run_dir


def rewind_run(run_dir: Path, to_step: int) -> None:
    """Make ``run_dir`` look killed right after its checkpoint at ``to_step``: its later step
    checkpoints and metrics records are removed, so ``--resume`` continues from ``to_step``."""
    import json

    from dmao.training.metrics import read_metrics

    for path in (run_dir / "checkpoints").glob("step-*.pt"):
        if int(path.stem.removeprefix("step-")) > to_step:
            path.unlink()
    kept = [r for r in read_metrics(run_dir) if r["step"] <= to_step]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))


def assert_same_training(run_a: Path, run_b: Path, step: int) -> dict:
    """The two runs logged the same training losses and hold bit-identical weights at ``step``;
    returns ``run_a``'s checkpoint there."""
    from dmao.training.checkpoint import load_checkpoint
    from dmao.training.metrics import read_metrics

    losses = [[r["loss"] for r in read_metrics(run, "train")] for run in (run_a, run_b)]
    assert losses[0] == losses[1]
    name = f"step-{step:08d}.pt"
    a, b = (load_checkpoint(run / "checkpoints" / name) for run in (run_a, run_b))
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    return a


def train_recipe(config: Any, run_dir: Path, *, resume: bool = False) -> Any:
    """Set up, train and clean up a :class:`~dmao.training.recipe.TrainingRecipe` in-process;
    returns the recipe (its model, optimizer, ... as they are at the end)."""
    from dmao.training.recipe import TrainingRecipe

    recipe = TrainingRecipe(config, run_dir, resume=resume)
    recipe.setup()
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    return recipe


def run_benchmark_script(
    script: str, out: Path, args: list[str], timeout: float
) -> subprocess.CompletedProcess:
    """``bash benchmarks/SCRIPT OUT ARGS...`` with this interpreter as the scripts' Python."""
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        ["bash", str(root / "benchmarks" / script), str(out), *args],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_dmao_run(tiny_corpus: TinyCorpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained 60 steps (~10 s) on the tiny corpus with one DMAO event at step 30,
    so its final architecture is non-uniform; its one checkpoint (step 60) is also ``best.pt``.
    After 60 steps the model emits (poor) non-empty transcripts of the test utterances. The test
    part's cuts (cached fbank) are prepared too, in ``RUN/../manifests``."""
    from dmao.data.manifests import prepare_manifests

    root = tmp_path_factory.mktemp("tiny_dmao_run")
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, root / "manifests"),
        "model.dropout=0.0",
        "optim.peak_lr=3e-3",
        "train.max_steps=60",
        "train.valid_every_steps=60",
        "train.checkpoint_every_steps=60",
        "dmao.enabled=true",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
        "dmao.granularity=4",
    ]
    train_tiny_run(root / "run", overrides)
    prepare_manifests(tiny_corpus.root, root / "manifests", ["test"], num_jobs=1)
    return root / "run"


@pytest.fixture(scope="session")
def tiny_export(tiny_dmao_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dmao export`` of :func:`tiny_dmao_run` (with the ONNX graph)."""
    from dmao.export import export_run

    return export_run(tiny_dmao_run, tmp_path_factory.mktemp("tiny_export") / "model")
