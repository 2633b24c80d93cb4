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
    (unreadable,) = by_reason["unreadable_audio"]
    assert unreadable.detail.startswith("LibsndfileError: ") and "\n" not in unreadable.detail
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


def test_a_noise_or_rir_folder_is_decoded_file_by_file(tiny_corpus, tmp_path, capsys):
    from dmao.cli.main import main
    from dmao.data.sphere import write_sphere
    from dmao.data.validation import validate_audio_folder

    folder = tmp_path / "musan"
    (folder / "noise").mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(folder / "noise" / "good.wav", 0.1 * rng.standard_normal(8000), 8000)  # any rate
    sf.write(folder / "noise" / "long.flac", 0.1 * rng.standard_normal(32000), 16000)
    data = (folder / "noise" / "long.flac").read_bytes()
    (folder / "noise" / "cut.flac").write_bytes(data[: len(data) // 3])  # truncated
    (folder / "empty.wav").write_bytes(b"")
    nan = np.full(1600, np.nan, dtype=np.float32)
    sf.write(folder / "nan.wav", nan, 16000, subtype="FLOAT")
    write_sphere(folder / "talk.sph", 0.1 * rng.standard_normal(16000), 16000)
    (folder / "README").write_text("not audio")
    report = validate_audio_folder(folder)
    assert report.num_utterances == 6
    assert report.audio_seconds == np.float64(1.0 + 2.0 + 0.1 + 1.0)  # the readable files
    assert sorted((p.utterance_id, p.reason) for p in report.problems) == [
        ("empty.wav", "empty_file"),
        ("nan.wav", "non_finite_samples"),
        ("noise/cut.flac", "unreadable_audio"),
    ]

    # with a corpus, in one report; --strict fails on the folder's problems
    args = ["validate", str(tiny_corpus.root), "--parts", "dev", "--audio-dir", str(folder)]
    assert main([*args, "--strict"]) == 1
    out = capsys.readouterr().out
    assert "3 problem(s)" in out and f"unreadable_audio: {folder / 'noise' / 'cut.flac'}" in out
    clean = tmp_path / "rirs"
    clean.mkdir()
    sf.write(clean / "room.wav", 0.1 * rng.standard_normal(800), 16000)
    assert main(["validate", "--audio-dir", str(clean), "--strict"]) == 0
    assert "checked 1 utterances (0.00 h): no problems" in capsys.readouterr().out
    assert main(["validate"]) == 2
    assert "nothing to check" in capsys.readouterr().err
