"""An n-gram LM inside an export (``dmao export --lm`` / ``--lm-from``) and ``dmao transcribe
--method lm``: the same text as ``dmao decode --method lm`` on the same features, with a word LM
and lexicon or a lexicon-free token LM; the LM files are in the manifest and checked before use;
an LM that does not fit the model fails the export, not a transcription."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import flip_last_byte

from dmao.cli.main import main
from dmao.decoding.decode_run import decode_split
from dmao.decoding.lexicon import read_lexicon
from dmao.decoding.lm_decoder import LMDecoderOptions
from dmao.export import Transcriber, export_run, load_audio, load_exported
from dmao.export.language_model import LanguageModel, language_model_from_decode

OPTIONS = LMDecoderOptions(lm_weight=1.0, word_score=0.5, beam_size=16)


@pytest.fixture(scope="module")
def lms(tiny_dmao_run, tmp_path_factory):
    """A word 3-gram with its lexicon and a character 4-gram, from the run's training text."""
    out = tmp_path_factory.mktemp("lm")
    run = str(tiny_dmao_run)
    word = ["lm", "build", "--from-run", run, "--order", "3", "--out", str(out / "w3.arpa")]
    assert main([*word, "--lexicon", str(out / "lexicon.txt")]) == 0
    char = ["lm", "build", "--from-run", run, "--unit", "token", "--order", "4"]
    assert main([*char, "--out", str(out / "c4.arpa")]) == 0
    return out


@pytest.fixture(scope="module")
def test_cuts(tiny_dmao_run):
    from dmao.data.manifests import load_cuts

    cuts = load_cuts(tiny_dmao_run.parent / "manifests", "test").sort_by_duration()
    return [(cut, Path(cut.recording.sources[0].source)) for cut in cuts]


def _decode(run: Path, out: Path, language_model: LanguageModel) -> dict[str, str]:
    """``{utterance id: text}`` of ``dmao decode --method lm`` with ``language_model``."""
    options = language_model.options
    overrides = {
        "lm_path": str(language_model.path),
        "lexicon_path": str(language_model.lexicon) if language_model.lexicon else None,
        "lm_weight": options.lm_weight,
        "word_score": options.word_score,
    }
    result = decode_split(
        run,
        "test",
        method="lm",
        beam_size=options.beam_size,
        progress_bar=False,
        decode_overrides=overrides,
        out_dir=out,
    )
    rows = result.hypotheses_path.read_text(encoding="utf-8").splitlines()[1:]
    return {r.split("\t")[0]: r.split("\t")[4] for r in rows if not r.startswith("#")}


@pytest.mark.parametrize("mode", ["lexicon", "lexicon-free"])
def test_an_exported_lm_decodes_as_dmao_decode(tiny_dmao_run, lms, test_cuts, tmp_path, mode):
    if mode == "lexicon":
        language_model = LanguageModel(lms / "w3.arpa", lms / "lexicon.txt", OPTIONS)
    else:
        language_model = LanguageModel(lms / "c4.arpa", None, OPTIONS)
    decoded = _decode(tiny_dmao_run, tmp_path / "decode", language_model)
    out = export_run(tiny_dmao_run, tmp_path / "model", onnx=False, language_model=language_model)

    exported = load_exported(out)
    record = exported.manifest["lm"]
    assert record["mode"] == mode
    assert record["options"]["lm_weight"] == 1.0 and record["options"]["beam_size"] == 16
    assert record["file"] in exported.manifest["files"]  # hashed like every other file
    assert exported.decode_method == "lm"  # an export with an LM decodes with it by default

    with_lm = Transcriber(exported, method=exported.decode_method)
    greedy = Transcriber(exported, method="greedy")
    differs = 0
    for cut, path in test_cuts:
        log_probs = with_lm.log_probs(torch.from_numpy(cut.load_features()))
        # Same features in, same text out as `dmao decode --method lm`.
        assert with_lm.decode(log_probs) == decoded[cut.id], cut.id
        differs += with_lm.decode(log_probs) != greedy.decode(log_probs)
        assert with_lm.transcribe_file(path).text == with_lm.transcribe_samples(
            load_audio(path, exported.features.sampling_rate)
        )
    assert differs > 0  # the LM search is really used
    if mode == "lexicon":
        words = set(read_lexicon(lms / "lexicon.txt"))
        assert all(set(text.split()) <= words for text in decoded.values())


def test_word_times_come_from_the_lm_search_path(tiny_export, lms, test_cuts):
    exported = load_exported(tiny_export)
    language_model = LanguageModel(lms / "w3.arpa", lms / "lexicon.txt", OPTIONS)
    transcriber = Transcriber(exported, method="lm", language_model=language_model, timestamps=True)
    for _, path in test_cuts:
        result = transcriber.transcribe_file(path)
        assert [w.word for w in result.words] == result.text.split()
        starts = [w.start_s for w in result.words]
        assert starts == sorted(starts)


def test_the_lm_files_are_checked_when_used(tiny_dmao_run, lms, tmp_path):
    language_model = LanguageModel(lms / "w3.arpa", lms / "lexicon.txt", OPTIONS)
    out = export_run(tiny_dmao_run, tmp_path / "model", onnx=False, language_model=language_model)
    assert (out / "lm" / "lm.arpa").read_bytes() == (lms / "w3.arpa").read_bytes()
    flip_last_byte(out / "lm" / "lexicon.txt")
    exported = load_exported(out)  # the LM is not read (it can be large) ...
    Transcriber(exported, method="greedy")  # ... and greedy decoding needs none
    with pytest.raises(ValueError, match=r"lm/lexicon\.txt differs from the manifest\.json record"):
        Transcriber(exported, method="lm")


def test_an_lm_that_does_not_fit_fails_the_export(tiny_dmao_run, lms, tmp_path):
    word_lm_alone = LanguageModel(lms / "w3.arpa", None, OPTIONS)  # a word LM needs a lexicon
    with pytest.raises(ValueError, match="lexicon"):
        export_run(tiny_dmao_run, tmp_path / "a", onnx=False, language_model=word_lm_alone)
    missing = LanguageModel(lms / "w3.arpa", lms / "missing.txt", OPTIONS)
    with pytest.raises(FileNotFoundError, match=r"lexicon file .*missing\.txt does not exist"):
        export_run(tiny_dmao_run, tmp_path / "b", onnx=False, language_model=missing)
    assert not any(tmp_path.iterdir())  # nothing half-written is left


def test_an_export_without_lm_refuses_method_lm_in_one_line(tiny_export, lms):
    exported = load_exported(tiny_export)
    assert exported.manifest["lm"] is None and exported.decode_method != "lm"
    with pytest.raises(ValueError, match="has no n-gram LM: export with `dmao export --lm FILE`"):
        Transcriber(exported, method="lm")
    # An LM given at transcription time works with any export.
    token_lm = LanguageModel(lms / "c4.arpa", None, OPTIONS)
    assert Transcriber(exported, method="lm", language_model=token_lm).language_model == token_lm


def test_settings_of_a_tuned_decode_go_into_the_export(tiny_dmao_run, lms, tmp_path, capsys):
    tuned = LanguageModel(lms / "w3.arpa", lms / "lexicon.txt", LMDecoderOptions(lm_weight=0.7))
    _decode(tiny_dmao_run, tmp_path / "dev", tuned.with_options(word_score=1.5, beam_size=12))
    read = language_model_from_decode(tmp_path / "dev")
    assert (read.path, read.lexicon) == (tuned.path, tuned.lexicon)
    assert (read.options.lm_weight, read.options.word_score, read.options.beam_size) == (
        0.7,
        1.5,
        12,
    )

    out = tmp_path / "model"
    args = ["export", str(tiny_dmao_run), "--out", str(out), "--no-onnx"]
    assert main([*args, "--lm-from", str(tmp_path / "dev"), "--beam-size", "20"]) == 0
    assert "n-gram LM: w3.arpa (3-gram, lexicon); lm_weight 0.7" in capsys.readouterr().out
    options = json.loads((out / "manifest.json").read_text())["lm"]["options"]
    assert (options["lm_weight"], options["word_score"], options["beam_size"]) == (0.7, 1.5, 20)

    greedy = decode_split(
        tiny_dmao_run, "test", method="greedy", progress_bar=False, out_dir=tmp_path / "g"
    )
    with pytest.raises(ValueError, match="not the result of `dmao decode --method lm`"):
        language_model_from_decode(greedy.hypotheses_path.parent / "result.json")


def test_cli_transcribes_with_the_exported_lm(tiny_dmao_run, tiny_export, lms, tiny_corpus,
                                              tmp_path, capsys):  # fmt: skip
    out = tmp_path / "model"
    lm_args = ["--lm", str(lms / "w3.arpa"), "--lexicon", str(lms / "lexicon.txt")]
    export = ["export", str(tiny_dmao_run), "--out", str(out), "--no-onnx", *lm_args]
    assert main([*export, "--lm-weight", "1.0", "--word-score", "0.5", "--beam-size", "16"]) == 0
    capsys.readouterr()
    audio = sorted((tiny_corpus.root / "test").rglob("*.flac"))[:3]
    assert main(["transcribe", "--model", str(out), "--json", *map(str, audio)]) == 0
    texts = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]
    expected = Transcriber(load_exported(out), method="lm")
    assert texts == [expected.transcribe_file(path).text for path in audio]
    assert texts == [
        Transcriber(
            load_exported(out),
            method="lm",
            language_model=LanguageModel(lms / "w3.arpa", lms / "lexicon.txt", OPTIONS),
        )
        .transcribe_file(path)
        .text
        for path in audio
    ]

    # A plain export: --method lm needs an LM; --lm gives one; LM settings need --method lm.
    plain = ["transcribe", "--model", str(tiny_export), str(audio[0])]
    assert main([*plain, "--method", "lm"]) == 2
    assert "has no n-gram LM" in capsys.readouterr().err
    assert main([*plain, "--lm", str(lms / "c4.arpa"), "--lm-weight", "0.5"]) == 0
    capsys.readouterr()
    assert main([*plain, "--method", "greedy", "--lm-weight", "2"]) == 2
    assert "--lm-weight apply to --method lm only" in capsys.readouterr().err
    assert (
        main(["export", str(tiny_dmao_run), "--out", str(tmp_path / "x"), "--word-score", "1"]) == 2
    )
    assert "describe an LM: give it with --lm or --lm-from" in capsys.readouterr().err
