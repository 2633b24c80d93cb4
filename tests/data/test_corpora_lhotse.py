"""lhotse recipe manifests: the tiny corpus through lhotse's own LibriSpeech recipe (its
`<prefix>_recordings_<part>` / `_supervisions_` files) and as a cuts manifest, read by the real
code into cuts with features; bad audio, ambiguous or incomplete folders, the CLI, a run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from lhotse import CutSet, load_manifest
from lhotse.recipes import prepare_librispeech as lhotse_librispeech

from dmao.cli.main import main
from dmao.data.corpora.lhotse_manifests import find_manifests, lhotse_parts, prepare_lhotse
from dmao.data.manifests import cut_transcript

PARTS = ["train", "dev", "test"]


@pytest.fixture
def recipe_manifests(tiny_corpus, tmp_path):
    """What `lhotse prepare librispeech` writes for the tiny corpus (a copy of its audio)."""
    corpus = tmp_path / "LibriSpeech"
    shutil.copytree(tiny_corpus.root, corpus)
    out = tmp_path / "lhotse"
    lhotse_librispeech(corpus, dataset_parts=PARTS, output_dir=out, num_jobs=1)
    return corpus, out


def test_recipe_manifests_become_the_corpus_own_cuts(recipe_manifests, tiny_cuts, tmp_path):
    _, manifests = recipe_manifests
    assert lhotse_parts(manifests) == sorted(PARTS)
    assert find_manifests(manifests, "dev") == {
        "recordings": manifests / "librispeech_recordings_dev.jsonl.gz",
        "supervisions": manifests / "librispeech_supervisions_dev.jsonl.gz",
    }
    cuts = prepare_lhotse(manifests, tmp_path / "m", PARTS, num_jobs=1)
    for part in PARTS:
        reference = {c.id: c for c in tiny_cuts[part] if cut_transcript(c)}
        got = {c.id: c for c in cuts[part]}
        assert set(got) == set(reference), part  # punctuation-only transcripts dropped
        for cut_id, cut in got.items():
            assert cut_transcript(cut) == cut_transcript(reference[cut_id])
            assert cut.duration == pytest.approx(reference[cut_id].duration)
            np.testing.assert_allclose(cut.load_features(), reference[cut_id].load_features(),
                                       atol=1e-3)  # fmt: skip
    # a cuts manifest instead (icefall's): its features are dropped and dmao's computed; cuts
    # that start 0.1 s into their recording hold supervisions at -0.1 s: read at their true time
    only_cuts = tmp_path / "cuts_only"
    only_cuts.mkdir()
    whole = CutSet.from_manifests(
        recordings=load_manifest(manifests / "librispeech_recordings_test.jsonl.gz"),
        supervisions=load_manifest(manifests / "librispeech_supervisions_test.jsonl.gz"),
    )
    late = CutSet.from_cuts(cut.truncate(offset=0.1) for cut in whole)
    assert all(cut.supervisions[0].start == pytest.approx(-0.1) for cut in late)
    late.to_file(only_cuts / "librispeech_cuts_test.jsonl.gz")
    from_cuts = prepare_lhotse(only_cuts, tmp_path / "m2", ["test"], num_jobs=1)
    assert sorted(from_cuts["test"].ids) == sorted(cuts["test"].ids)
    for cut in from_cuts["test"]:
        assert (cut.start, cut.duration) == (0.0, pytest.approx(cuts["test"][cut.id].duration))
        np.testing.assert_allclose(cut.load_features(), cuts["test"][cut.id].load_features(),
                                   atol=1e-3)  # fmt: skip
    # mixed cuts (one cut made of two recordings) are not read: named
    mixed = CutSet.from_cuts([whole[0].append(whole[1])])
    mixed.to_file(only_cuts / "librispeech_cuts_dev.jsonl.gz")
    with pytest.raises(ValueError, match=r"cut .* is a MixedCut \(only single recordings"):
        prepare_lhotse(only_cuts, tmp_path / "m3", ["dev"], num_jobs=1)


def test_bad_files_are_listed_or_left_out(recipe_manifests, tmp_path):
    corpus, manifests = recipe_manifests
    flacs = sorted((corpus / "test").rglob("*.flac"))
    flacs[0].write_bytes(b"")
    with pytest.raises(ValueError, match=rf"(?s)test {flacs[0].stem}: empty_file: {flacs[0]}"):
        prepare_lhotse(manifests, tmp_path / "strict", ["test"], num_jobs=1)
    cuts = prepare_lhotse(manifests, tmp_path / "skip", ["test"], num_jobs=1, bad_audio="skip",
                          max_bad_audio_fraction=0.5)  # fmt: skip
    assert flacs[0].stem not in set(cuts["test"].ids) and len(cuts["test"]) == len(flacs) - 1


def test_folders_that_do_not_say_which_manifest_are_refused(recipe_manifests, tmp_path):
    _, manifests = recipe_manifests
    with pytest.raises(FileNotFoundError, match=r"no lhotse manifest of part 'other' .*\(parts "
                                                r"there: dev, test, train\)"):  # fmt: skip
        find_manifests(manifests, "other")
    shutil.copy(manifests / "librispeech_recordings_dev.jsonl.gz",
                manifests / "aishell_recordings_dev.jsonl.gz")  # fmt: skip
    with pytest.raises(ValueError, match=r"2 recordings manifests of part 'dev' \(aishell_"):
        find_manifests(manifests, "dev")
    (manifests / "librispeech_supervisions_test.jsonl.gz").unlink()
    with pytest.raises(ValueError, match=r"recordings_test.jsonl.gz: no supervisions manifest"):
        find_manifests(manifests, "test")
    # supervisions of a recording the recordings manifest lacks
    sups = load_manifest(manifests / "librispeech_supervisions_train.jsonl.gz")
    recs = load_manifest(manifests / "librispeech_recordings_train.jsonl.gz")
    lost = recs[0].id
    recs.filter(lambda r: r.id != lost).to_file(manifests / "librispeech_recordings_train.jsonl.gz")
    sups.to_file(manifests / "librispeech_supervisions_train.jsonl.gz")
    with pytest.raises(ValueError, match=rf"supervisions of 1 recording\(s\) missing .*{lost}"):
        prepare_lhotse(manifests, tmp_path / "m", ["train"], num_jobs=1)


def test_prepare_cli_and_a_training_run(recipe_manifests, tmp_path):
    from conftest import train_two_steps

    _, manifests = recipe_manifests
    out = tmp_path / "m"
    assert main(["prepare", "lhotse", "--corpus-dir", str(manifests), "--out", str(out),
                 "--num-jobs", "1"]) == 0  # fmt: skip
    assert all((out / f"cuts_{part}.jsonl.gz").is_file() for part in PARTS)
    valid = train_two_steps("lhotse", manifests, out, tmp_path / "run")
    assert valid["step"] == 2 and valid["wer"] >= 0


def test_validate_decodes_every_recording_and_checks_every_supervision(
    recipe_manifests, tiny_corpus, tmp_path
):
    from lhotse import SupervisionSet
    from lhotse.utils import fastcopy

    from dmao.data.validation_formats import validate_lhotse
    from dmao.models.frontend import subsampled_length

    corpus, manifests = recipe_manifests
    clean = validate_lhotse(manifests, PARTS, subsampled_length=subsampled_length)
    assert {(p.utterance_id, p.reason) for p in clean.problems} == {
        (tiny_corpus.empty_id, "empty_transcript"),
        (tiny_corpus.infeasible_id, "ctc_infeasible"),
    }
    assert clean.num_utterances == sum(len(t) for t in tiny_corpus.transcripts.values())
    # a truncated file (only decoding finds it), a supervision past its recording, one of an
    # unknown recording, a part without manifests
    flacs = sorted((corpus / "test").rglob("*.flac"))
    flacs[0].write_bytes(flacs[0].read_bytes()[: flacs[0].stat().st_size // 3])
    sups_path = manifests / "librispeech_supervisions_dev.jsonl.gz"
    sups = list(load_manifest(sups_path))
    late, orphan = sups[0], sups[1]
    sups[0] = fastcopy(late, start=late.start + 60.0)
    sups[1] = fastcopy(orphan, recording_id="nowhere")
    SupervisionSet.from_segments(sups).to_file(sups_path)
    report = validate_lhotse(manifests, [*PARTS, "other"], subsampled_length=subsampled_length)
    found = {(p.part, p.utterance_id, p.reason) for p in report.problems}
    assert ("test", flacs[0].stem, "unreadable_audio") in found
    assert ("dev", late.id, "segment_outside_recording") in found
    assert ("dev", orphan.id, "unknown_recording") in found
    assert ("other", "-", "malformed_manifests") in found
    assert len(report.problems) == len(clean.problems) + 4
    assert all("librispeech_supervisions_dev" in p.path for p in report.problems
               if p.part == "dev")  # fmt: skip
    # the command line
    assert main(["validate", str(manifests), "--lhotse", "--parts", "dev", "--strict"]) == 1
    assert main(["validate", str(manifests), "--lhotse", "--parts", "train"]) == 0


def test_a_supervision_over_several_channels_is_read_on_its_first(tmp_path, caplog):
    """A 2-channel recording: a supervision over both channels (a microphone array's) becomes a
    cut on its first channel, one on channel 1 stays there; each cut holds that channel's audio."""
    import soundfile as sf
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal((32000, 2))).astype(np.float32)
    sf.write(tmp_path / "call.wav", samples, 16000, subtype="FLOAT")
    manifests = tmp_path / "lhotse"
    manifests.mkdir()
    recording = Recording.from_file(tmp_path / "call.wav", recording_id="call")
    RecordingSet.from_recordings([recording]).to_file(manifests / "ami_recordings_test.jsonl.gz")
    SupervisionSet.from_segments([
        SupervisionSegment("both", "call", 0.0, 1.0, channel=[1, 0], text="HELLO THERE"),
        SupervisionSegment("right", "call", 1.0, 1.0, channel=1, text="GOOD DAY"),
    ]).to_file(manifests / "ami_supervisions_test.jsonl.gz")  # fmt: skip
    with caplog.at_level("INFO"):
        cuts = prepare_lhotse(manifests, tmp_path / "m", ["test"], num_jobs=1)["test"]
    assert "1 supervisions over several channels read on their first" in caplog.text
    assert [(c.id, type(c).__name__, c.channel) for c in cuts] == [
        ("both", "MonoCut", 1),
        ("right", "MonoCut", 1),
    ]
    np.testing.assert_array_equal(cuts["both"].load_audio()[0], samples[:16000, 1])
    np.testing.assert_array_equal(cuts["right"].load_audio()[0], samples[16000:, 1])
    assert cuts["both"].load_features().shape[1] == 80  # features of one channel
