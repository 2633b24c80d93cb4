"""`dmao validate` on a copy of the tiny corpus with real broken files."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import soundfile as sf

from dmao.data.validation import validate_corpus
from dmao.models.frontend import subsampled_length


def _broken_copy(tiny_corpus, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.root, root)
    flacs = sorted((root / "test").rglob("*.flac"))
    flacs[0].write_bytes(b"")  # 0 bytes
    data = flacs[1].read_bytes()
    flacs[1].write_bytes(data[: len(data) // 3])  # truncated
    flacs[2].unlink()  # missing
    samples, _ = sf.read(flacs[3])
    sf.write(flacs[3], samples[::2], 8000)  # wrong sampling rate
    orphan = flacs[4].parent / "61-70968-9999.flac"
    sf.write(orphan, np.zeros(16000, dtype=np.float32), 16000)  # no transcript line
    return root, [f.stem for f in flacs[:4]]


def test_every_problem_is_listed_with_its_file(tiny_corpus, tmp_path):
    root, broken = _broken_copy(tiny_corpus, tmp_path)
    report = validate_corpus(root, ["train", "dev", "test"], subsampled_length=subsampled_length)
    by_reason = {}
    for p in report.problems:
        by_reason.setdefault(p.reason, []).append(p)
    assert [p.utterance_id for p in by_reason["empty_file"]] == [broken[0]]
    assert [p.utterance_id for p in by_reason["unreadable_audio"]] == [broken[1]]
    assert [p.utterance_id for p in by_reason["missing_audio"]] == [broken[2]]
    assert [p.utterance_id for p in by_reason["wrong_sampling_rate"]] == [broken[3]]
    assert "8000 Hz, expected 16000 Hz" in by_reason["wrong_sampling_rate"][0].detail
    assert [p.utterance_id for p in by_reason["no_transcript"]] == ["61-70968-9999"]
    # The fixture's own problem utterances (train) are found too.
    assert tiny_corpus.empty_id in {p.utterance_id for p in by_reason["empty_transcript"]}
    assert tiny_corpus.infeasible_id in {p.utterance_id for p in by_reason["ctc_infeasible"]}
    assert all(p.path for p in report.problems)


def test_cli_strict_exits_nonzero_and_clean_corpus_passes(tiny_corpus, tmp_path):
    root, _ = _broken_copy(tiny_corpus, tmp_path)
    cmd = [sys.executable, "-m", "dmao.cli.main", "validate", str(root), "--parts", "test"]
    strict = subprocess.run([*cmd, "--strict"], capture_output=True, text=True, timeout=120)
    assert strict.returncode == 1
    assert "unreadable_audio" in strict.stdout and "missing_audio" in strict.stdout
    lenient = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert lenient.returncode == 0
    clean = subprocess.run(
        [sys.executable, "-m", "dmao.cli.main", "validate", str(tiny_corpus.root), "--parts",
         "dev", "test", "--strict"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stdout
    assert "no problems" in clean.stdout
