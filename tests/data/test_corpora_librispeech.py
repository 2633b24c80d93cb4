"""LibriSpeech from a local copy: any subset of the official parts, clear errors naming what is
missing, and features at the configured sampling rate."""

from __future__ import annotations

import shutil
from pathlib import Path

from dmao.cli.main import main
from dmao.config.schema import DataConfig
from dmao.data.pipeline import load_parts


def _copy(tiny_corpus, root: Path, names: dict[str, str]) -> Path:
    """The tiny corpus's parts under official LibriSpeech part names, as the tarballs unpack."""
    for ours, theirs in names.items():
        shutil.copytree(tiny_corpus.root / ours, root / "LibriSpeech" / theirs)
    return root


def test_subset_of_parts(tiny_corpus, tmp_path, capsys):
    root = _copy(
        tiny_corpus,
        tmp_path / "copy",
        {"train": "train-other-500", "dev": "dev-other", "test": "test-other"},
    )
    out = tmp_path / "m"
    args = ["prepare", "librispeech", "--corpus-dir", str(root), "--out", str(out)]
    assert main([*args, "--parts", "train-other-500", "dev-other", "--num-jobs", "1"]) == 0
    assert "train-other-500, dev-other" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("cuts_*")) == [
        "cuts_dev-other.jsonl.gz",
        "cuts_train-other-500.jsonl.gz",
    ]
    # Without --parts: every official part present (test-other added; the two above are cached).
    assert main([*args, "--num-jobs", "1"]) == 0
    assert "train-other-500, dev-other, test-other" in capsys.readouterr().out


def test_missing_parts_are_named(tiny_corpus, tmp_path, capsys):
    root = _copy(tiny_corpus, tmp_path / "copy", {"dev": "dev-clean"})
    out = tmp_path / "m"
    args = ["prepare", "librispeech", "--corpus-dir", str(root), "--out", str(out)]
    assert main([*args, "--parts", "dev-clean", "test-clean"]) == 2
    err = capsys.readouterr().err
    assert "corpus part 'test-clean' not found" in err and "['dev-clean']" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", "librispeech", "--corpus-dir", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no LibriSpeech part found" in err and "train-clean-100" in err

    # A transcribed utterance whose audio file is gone.
    next((root / "LibriSpeech" / "dev-clean").rglob("*.flac")).unlink()
    assert main([*args, "--parts", "dev-clean"]) == 2
    err = capsys.readouterr().err
    assert "dev-clean: 1 of 7 utterances" in err and "missing_audio" in err


def test_features_at_the_configured_sampling_rate(tiny_corpus, tmp_path):
    """data.sampling_rate=8000 on a 16 kHz corpus: cuts resampled, 8 kHz fbank cached."""
    config = DataConfig(
        corpus="librispeech",
        corpus_dir=str(tiny_corpus.root),
        manifest_dir=str(tmp_path / "m8k"),
        sampling_rate=8000,
    )
    cuts = load_parts(config, ["dev"], num_jobs=1)
    for cut in cuts:
        assert cut.sampling_rate == 8000
        # lhotse's resampling of an odd 16 kHz length can give one sample more than duration says.
        assert abs(cut.load_audio().shape[1] - cut.duration * 8000) <= 1
        assert cut.load_features().shape == (round(cut.duration / 0.01), 80)


def test_training_finds_the_parts_below_the_folder_the_tarballs_unpacked_into(
    tiny_corpus, tmp_path
):
    """data.corpus_dir may name the folder holding LibriSpeech/, like `--corpus-dir`."""
    root = _copy(tiny_corpus, tmp_path / "copy", {"dev": "dev-clean"})
    config = DataConfig(
        corpus="librispeech", corpus_dir=str(root), manifest_dir=str(tmp_path / "m")
    )
    cuts = load_parts(config, ["dev-clean"], num_jobs=1)
    audio = sorted((root / "LibriSpeech" / "dev-clean").rglob("*.flac"))
    assert sorted(cut.id for cut in cuts) == [path.stem for path in audio]
