"""Tests for the synthetic corpus: grammar, espeak-ng synthesis, layout, determinism, lhotse."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmao.data.synthetic import (
    generate_sentences,
    plan_synthetic,
    prepare_synthetic,
    render,
    synthesize,
    vocabulary_words,
)
from dmao.data.synthetic.corpus import ACCENTS, COMPLETE_MARKER, SPLITS, VARIANTS
from dmao.data.synthetic.espeak import EspeakSynthesizer, get_synthesizer
from dmao.data.synthetic.grammar import MAX_WORDS, MIN_WORDS, load_vocabulary
from dmao.data.synthetic.phrases import _indefinite_article

WORD_RE = re.compile(r"^[A-Z]+('[A-Z]+)?$")
# A tiny corpus: about 27 utterances, 4 per speaker, so every split has at least two speakers.
TINY = {"hours": 0.02, "seed": 3, "utterances_per_speaker": 4}


# ---------------------------------------------------------------- grammar


def test_vocabulary_size_and_word_shape():
    words = vocabulary_words()
    assert 800 <= len(words) <= 1500
    bad = sorted(w for w in words if not WORD_RE.match(w))
    assert not bad, f"not upper-case words: {bad[:10]}"


def test_sentences_deterministic_prefix_stable_and_seeded():
    a = generate_sentences(300, seed=0)
    assert a == generate_sentences(300, seed=0)
    assert generate_sentences(50, seed=0) == a[:50]
    b = generate_sentences(300, seed=1)
    shared = {s.transcript for s in a} & {s.transcript for s in b}
    assert len(shared) < 10, f"seeds 0 and 1 share {len(shared)} of 300 sentences"


def test_sentences_respect_bounds_and_vocabulary():
    sentences = generate_sentences(5000, seed=7)
    vocabulary = vocabulary_words()
    assert len({s.transcript for s in sentences}) == len(sentences)
    lengths = Counter(s.num_words for s in sentences)
    assert min(lengths) == MIN_WORDS and max(lengths) == MAX_WORDS
    assert all(MIN_WORDS <= n <= MAX_WORDS for n in lengths)
    for s in sentences:
        words = s.transcript.split()
        assert all(WORD_RE.match(w) for w in words), s.transcript
        assert set(words) <= vocabulary, set(words) - vocabulary
        # The spoken form only adds lower case and prosody punctuation.
        assert re.sub(r"[,.?]", "", s.spoken).upper() == s.transcript
        assert s.spoken[-1] in ".?"


def test_grammar_reaches_the_whole_vocabulary():
    used = {w for s in generate_sentences(20000, seed=0) for w in s.transcript.split()}
    unreachable = vocabulary_words() - used
    assert len(unreachable) <= 0.03 * len(vocabulary_words()), sorted(unreachable)[:20]


def test_indefinite_article():
    for word, article in [("apple", "an"), ("box", "a"), ("umbrella", "an"), ("hour", "an"),
                          ("uniform", "a"), ("old", "an"), ("one", "a")]:  # fmt: skip
        assert _indefinite_article(word) == article, word


def test_load_vocabulary_reports_bad_entries(tmp_path):
    bad = tmp_path / "vocabulary.txt"
    bad.write_text("[object]\ncup cups\nbox\n")
    with pytest.raises(ValueError, match=r"vocabulary.txt:3: \[object\] entries have 2 forms"):
        load_vocabulary(bad)
    bad.write_text("[objects]\ncup cups\n")
    with pytest.raises(ValueError, match="unknown section"):
        load_vocabulary(bad)
    bad.write_text("[colour]\nRed\n")
    with pytest.raises(ValueError, match="not a lower-case word"):
        load_vocabulary(bad)


# ---------------------------------------------------------------- synthesis


def test_synthesize_returns_speech_of_plausible_duration():
    audio, rate = synthesize("the quick brown fox jumps over the lazy dog")
    assert rate == 16000 and audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / rate
    assert 1.5 < seconds < 5.0, seconds  # nine words at 175 words per minute is about 3 s
    assert float(np.sqrt(np.mean(audio**2))) > 0.01 and float(np.max(np.abs(audio))) <= 1.0
    slow, _ = synthesize("the quick brown fox jumps over the lazy dog", rate_wpm=120)
    assert len(slow) > 1.2 * len(audio)


def test_synthesis_is_reproducible_across_calls():
    engine = get_synthesizer()
    assert engine.reproducible
    first, _ = synthesize("seven red boxes", voice="en-gb-scotland+f3", pitch=60)
    synthesize("something else entirely", voice="en-029+m2")
    second, _ = synthesize("seven red boxes", voice="en-gb-scotland+f3", pitch=60)
    np.testing.assert_array_equal(first, second)


def test_only_one_engine_per_process():
    get_synthesizer()
    with pytest.raises(RuntimeError, match="use get_synthesizer"):
        EspeakSynthesizer()


def test_every_corpus_voice_speaks():
    voices = [f"{accent}+m1" for accent in ACCENTS] + [f"en-us+{v}" for v in VARIANTS]
    for voice in voices:
        audio, rate = synthesize("hello there", voice=voice)
        assert len(audio) > 0.3 * rate and np.sqrt(np.mean(audio**2)) > 0.005, voice


def test_synthesize_rejects_unknown_voice_and_bad_parameters():
    with pytest.raises(ValueError, match="no voice 'en-xx'"):
        synthesize("hello", voice="en-xx")
    with pytest.raises(ValueError, match=r"pitch must be in 0\.\.100"):
        synthesize("hello", pitch=150)


# ---------------------------------------------------------------- planning


def test_plan_splits_are_disjoint_and_sized():
    plan = plan_synthetic(hours=3.0, seed=0)
    assert abs(plan.estimated_seconds / 3600 - 3.0) < 0.15
    sizes = {split: len(plan.split(split)) for split in SPLITS}
    assert sizes["dev"] == sizes["test"] == 200 and sizes["train"] > 3000
    speakers = {split: {u.speaker for u in plan.split(split)} for split in SPLITS}
    sentences = {split: {u.sentence.transcript for u in plan.split(split)} for split in SPLITS}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not speakers[a] & speakers[b]
        assert not {s.speaker_id for s in speakers[a]} & {s.speaker_id for s in speakers[b]}
        assert not sentences[a] & sentences[b]
    # Eval speakers have voice+variant pairs of their own.
    eval_voices = [s.voice for split in ("dev", "test") for s in speakers[split]]
    assert len(set(eval_voices)) == len(eval_voices)
    assert not set(eval_voices) & {s.voice for s in speakers["train"]}
    # Speakers are distinct voice/prosody combinations and both genders appear in every split.
    keys = [(s.voice, s.rate_wpm, s.pitch, s.pitch_range) for s in plan.speakers]
    assert len(set(keys)) == len(keys)
    for split in SPLITS:
        assert {s.gender for s in speakers[split]} == {"male", "female"}
    # The test set does not depend on the training size.
    smaller = plan_synthetic(hours=1.5, seed=0)
    assert [(u.utterance_id, u.sentence) for u in smaller.split("test")] == [
        (u.utterance_id, u.sentence) for u in plan.split("test")
    ]


def test_different_seeds_give_different_corpora():
    a, b = plan_synthetic(**TINY), plan_synthetic(**{**TINY, "seed": 4})
    assert {u.sentence for u in a.utterances}.isdisjoint({u.sentence for u in b.utterances})


# ---------------------------------------------------------------- corpus on disk


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("synthetic") / "corpus"
    with pytest.MonkeyPatch.context() as patch:  # use worker processes even for a tiny corpus
        patch.setattr(render, "MIN_JOBS_FOR_WORKERS", 0)
        return prepare_synthetic(out_dir, num_jobs=2, **TINY)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_is_librispeech(tiny_corpus):
    plan = plan_synthetic(**TINY)
    expected = {u.relative_path for u in plan.utterances}
    flacs = {str(p.relative_to(tiny_corpus)) for p in tiny_corpus.rglob("*.flac")}
    assert flacs == expected
    for path in flacs:
        split, speaker, chapter, name = path.split("/")
        assert split in SPLITS and speaker.isdigit() and chapter.isdigit()
        assert re.fullmatch(rf"{speaker}-{chapter}-\d{{4}}\.flac", name)
        info = sf.info(str(tiny_corpus / path))
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    transcripts = {}
    for trans in tiny_corpus.rglob("*.trans.txt"):
        split, speaker, chapter, name = str(trans.relative_to(tiny_corpus)).split("/")
        assert name == f"{speaker}-{chapter}.trans.txt"
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            assert (trans.parent / f"{utt_id}.flac").is_file()
            transcripts[utt_id] = text
    assert transcripts == {u.utterance_id: u.sentence.transcript for u in plan.utterances}
    speakers = json.loads((tiny_corpus / "SPEAKERS.json").read_text())["speakers"]
    assert {s["speaker_id"] for s in speakers} == {s.speaker_id for s in plan.speakers}
    assert {"voice", "rate_wpm", "pitch", "pitch_range", "gender"} <= set(speakers[0])
    marker = json.loads((tiny_corpus / COMPLETE_MARKER).read_text())
    assert marker["params"]["seed"] == TINY["seed"]
    assert sum(v["utterances"] for v in marker["stats"].values()) == len(plan.utterances)
    leftovers = [p.name for p in tiny_corpus.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers and not (tiny_corpus / ".in_progress.json").exists()


def test_lhotse_reads_the_corpus(tiny_corpus):
    from lhotse.recipes import prepare_librispeech

    plan = plan_synthetic(**TINY)
    manifests = prepare_librispeech(corpus_dir=tiny_corpus, dataset_parts=list(SPLITS))
    for split in SPLITS:
        expected = {u.utterance_id: u for u in plan.split(split)}
        recordings = manifests[split]["recordings"]
        supervisions = manifests[split]["supervisions"]
        assert {r.id for r in recordings} == set(expected)
        for recording in recordings:
            assert recording.sampling_rate == 16000 and recording.duration > 0.5
        for sup in supervisions:
            assert sup.text == expected[sup.id].sentence.transcript
            assert sup.speaker == expected[sup.id].speaker.speaker_id


def test_same_seed_same_bytes_for_any_num_jobs(tiny_corpus, tmp_path):
    again = prepare_synthetic(tmp_path / "again", num_jobs=1, **TINY)
    assert _files(again) == _files(tiny_corpus)


def test_noise_is_added_at_the_requested_snr(tiny_corpus, tmp_path):
    clean_dir = prepare_synthetic(tmp_path / "clean", num_jobs=1, noise_snr_db=None, **TINY)
    for path in sorted(clean_dir.rglob("*.flac"))[:8]:
        clean, _ = sf.read(str(path))
        noisy, _ = sf.read(str(tiny_corpus / path.relative_to(clean_dir)))
        assert clean.shape == noisy.shape  # same padding: only the noise differs
        nonzero = np.flatnonzero(clean)
        speech = clean[nonzero[0] : nonzero[-1] + 1]  # padding is exact zeros
        snr_db = 10 * np.log10(np.mean(speech**2) / np.mean((noisy - clean) ** 2))
        assert 14.0 < snr_db < 31.0, (path.name, snr_db)


def test_complete_corpus_is_skipped(tiny_corpus):
    before = {p: p.stat().st_mtime_ns for p in tiny_corpus.rglob("*")}
    start = time.perf_counter()
    assert prepare_synthetic(tiny_corpus, num_jobs=2, **TINY) == tiny_corpus
    assert time.perf_counter() - start < 2.0
    assert {p: p.stat().st_mtime_ns for p in tiny_corpus.rglob("*")} == before


def test_killed_run_is_not_complete_and_resumes(tiny_corpus, tmp_path):
    out = tmp_path / "killed"
    args = ", ".join(f"{k}={v!r}" for k, v in TINY.items())
    code = (
        "from dmao.data.synthetic import prepare_synthetic; "
        f"prepare_synthetic({str(out)!r}, num_jobs=1, {args})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:  # SIGKILL as soon as the first utterance is on disk
        deadline = time.monotonic() + 60
        while not any(out.rglob("*.flac")) and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    num_done = len(list(out.rglob("*.flac")))
    assert 0 < num_done < len(plan_synthetic(**TINY).utterances)
    assert not (out / COMPLETE_MARKER).exists()
    prepare_synthetic(out, num_jobs=1, **TINY)  # resumes: keeps the finished files
    assert _files(out) == _files(tiny_corpus)


def test_partial_files_are_regenerated(tiny_corpus, tmp_path):
    out = tmp_path / "partial"
    shutil.copytree(tiny_corpus, out)
    marker = json.loads((out / COMPLETE_MARKER).read_text())
    (out / COMPLETE_MARKER).unlink()
    (out / ".in_progress.json").write_text(json.dumps({"params": marker["params"]}))
    victims = sorted(out.rglob("*.flac"))[:3]
    for victim in victims:
        victim.rename(victim.with_name(victim.name + ".tmp"))  # as if killed before the rename
    prepare_synthetic(out, num_jobs=1, **TINY)
    assert _files(out) == _files(tiny_corpus)


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FileExistsError, match="not made by prepare_synthetic"):
        prepare_synthetic(tmp_path, **TINY)
