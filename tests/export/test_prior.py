"""The CTC prior inside an export (``dmao export --prior-scale S``) and ``dmao transcribe`` with
it: the export holds the prior ``dmao decode --prior-scale`` estimates for the same checkpoint,
and the search scores ``log_probs - S · log_prior``, giving ``dmao decode --prior-scale S``'s
texts on the same features; ``--prior-scale`` overrides or turns it off; a bad prior file or a
prior asked of an export without one fails in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from dmao.cli.main import main
from dmao.data.manifests import load_cuts
from dmao.decoding.ctc import greedy_decode
from dmao.decoding.decode_run import decode_split
from dmao.decoding.prior import PRIOR_FILE, apply_prior, ctc_prior_for_run
from dmao.decoding.run_loading import load_trained_model
from dmao.export import Transcriber, export_run, load_exported
from dmao.export.prior import bundled_prior

SCALE = 0.5


@pytest.fixture(scope="module")
def prior_export(tiny_dmao_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prior_export") / "model"
    return export_run(tiny_dmao_run, out, onnx=False, prior_scale=SCALE)


@pytest.fixture(scope="module")
def test_features(tiny_dmao_run: Path) -> list[tuple[str, torch.Tensor]]:
    cuts = load_cuts(tiny_dmao_run.parent / "manifests", "test").sort_by_duration()
    return [(cut.id, torch.from_numpy(cut.load_features())) for cut in cuts]


def _hypotheses(result) -> dict[str, str]:
    rows = result.hypotheses_path.read_text(encoding="utf-8").splitlines()[1:]
    return {r.split("\t")[0]: r.split("\t")[4] for r in rows if not r.startswith("#")}


def test_the_export_holds_the_prior_of_its_checkpoint(tiny_dmao_run, prior_export):
    exported = load_exported(prior_export)
    manifest = exported.manifest
    assert manifest["format_version"] == 2  # an older dmao refuses it rather than ignore it
    record = manifest["prior"]
    assert record["file"] == "ctc_prior.json" and "ctc_prior.json" in manifest["files"]
    assert (record["scale"], record["checkpoint"]) == (SCALE, "best.pt")

    cpu = torch.device("cpu")
    model, config, tokenizer, path = load_trained_model(tiny_dmao_run, "best", cpu)
    prior = ctc_prior_for_run(tiny_dmao_run, model, config, tokenizer, path, device=cpu)
    assert (record["num_utterances"], record["num_frames"]) == (
        prior.num_utterances,
        prior.num_frames,
    )
    assert exported.prior is not None and exported.prior.scale == SCALE
    assert torch.equal(exported.prior.log_prior, prior.log_prior)  # float32 survives JSON
    assert exported.prior.log_prior.shape == (tokenizer.vocab_size,)


def test_transcribe_subtracts_the_prior_as_dmao_decode(
    tiny_dmao_run, prior_export, test_features, tmp_path
):
    decoded = _hypotheses(
        decode_split(
            tiny_dmao_run,
            "test",
            method="greedy",
            prior_scale=SCALE,
            progress_bar=False,
            out_dir=tmp_path / "decode",
        )
    )
    exported = load_exported(prior_export)
    assert exported.decode_method == "greedy"  # the run's; the export has no LM
    with_prior = Transcriber(exported)  # the export's scale with its default method
    without = Transcriber(exported, prior_scale=0)
    strong = Transcriber(exported, prior_scale=2.0)
    assert (with_prior.prior_scale, without.prior_scale, strong.prior_scale) == (SCALE, 0, 2)
    blank = exported.tokenizer.blank_id
    differs = 0
    for cut_id, features in test_features:
        log_probs = with_prior.log_probs(features)
        # The acoustic model's output is untouched (pauses are found in it); the search is not.
        assert torch.equal(log_probs, without.log_probs(features))
        assert with_prior.decode(log_probs) == decoded[cut_id], cut_id
        corrected = apply_prior(log_probs, exported.prior.log_prior, 2.0)
        lens = torch.tensor([log_probs.shape[0]])
        expected = exported.tokenizer.decode(greedy_decode(corrected[None], lens, blank)[0])
        assert strong.decode(log_probs) == expected
        text, _ = strong.word_times(log_probs)  # word times follow the corrected search
        assert text == expected
        differs += strong.decode(log_probs) != without.decode(log_probs)
    assert differs > 0  # the prior really changes what is searched


def test_export_and_transcribe_on_the_command_line(
    tiny_dmao_run, tiny_export, tiny_corpus, tmp_path, capsys
):
    out = tmp_path / "model"
    args = ["export", str(tiny_dmao_run), "--out", str(out), "--no-onnx", "--prior-scale", "0.3"]
    stored = tiny_dmao_run / PRIOR_FILE
    assert main(args) == 0
    mtime = stored.stat().st_mtime_ns
    assert "CTC prior: scale 0.3, from" in capsys.readouterr().out
    assert main([*args, "--force"]) == 0  # the run's stored prior is reused, not estimated again
    assert stored.stat().st_mtime_ns == mtime
    capsys.readouterr()

    audio = [str(p) for p in sorted((tiny_corpus.root / "test").rglob("*.flac"))[:3]]
    texts = {}
    for scale in (None, "0", "0.3", "2"):
        extra = [] if scale is None else ["--prior-scale", scale]
        assert main(["transcribe", "--model", str(out), "--json", *audio, *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        texts[scale] = [json.loads(line)["text"] for line in lines]
    exported = load_exported(out)
    assert (
        texts[None]
        == texts["0.3"]
        == [Transcriber(exported, prior_scale=0.3).transcribe_file(path).text for path in audio]
    )
    assert texts["0"] == [
        Transcriber(exported, prior_scale=0).transcribe_file(p).text for p in audio
    ]
    assert texts["2"] == [
        Transcriber(exported, prior_scale=2).transcribe_file(p).text for p in audio
    ]

    # One line each: a prior asked of an export without one; a prior of --ema weights.
    assert main(["transcribe", "--model", str(tiny_export), audio[0], "--prior-scale", "0.3"]) == 2
    assert "has no CTC prior: export with `dmao export --prior-scale S`" in capsys.readouterr().err
    ema = [
        "export",
        str(tiny_dmao_run),
        "--out",
        str(tmp_path / "e"),
        "--ema",
        "--prior-scale",
        "1",
    ]
    assert main(ema) == 2
    assert "CTC prior is estimated for a checkpoint's live weights" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_lm_from_a_decode_with_a_prior_carries_its_scale(tiny_dmao_run, tmp_path, capsys):
    lm = tmp_path / "c3.arpa"
    build = ["lm", "build", "--from-run", str(tiny_dmao_run), "--unit", "token", "--order", "3"]
    assert main([*build, "--out", str(lm)]) == 0
    decode = ["decode", str(tiny_dmao_run), "--split", "test", "--method", "lm", "--lm", str(lm)]
    assert main([*decode, "--prior-scale", "0.7", "--out-dir", str(tmp_path / "dev")]) == 0
    capsys.readouterr()
    export = ["export", str(tiny_dmao_run), "--no-onnx", "--lm-from", str(tmp_path / "dev")]
    assert main([*export, "--out", str(tmp_path / "tuned")]) == 0
    tuned = load_exported(tmp_path / "tuned")
    assert tuned.prior.scale == 0.7 and tuned.decode_method == "lm"
    # The prior goes with the search it was chosen for; other searches ask for it explicitly.
    assert Transcriber(tuned, method="lm").prior_scale == 0.7
    assert Transcriber(tuned, method="greedy").prior_scale == 0
    assert Transcriber(tuned, method="greedy", prior_scale=0.7).prior_scale == 0.7
    assert main([*export, "--out", str(tmp_path / "off"), "--prior-scale", "0"]) == 0
    assert load_exported(tmp_path / "off").manifest["prior"] is None


def test_a_prior_that_does_not_fit_is_refused(prior_export, tmp_path):
    exported = load_exported(prior_export)
    vocab = exported.tokenizer.vocab_size
    manifest = exported.manifest
    with pytest.raises(ValueError, match=f"expected 'log_prior' as {vocab + 1} finite numbers"):
        bundled_prior(prior_export, manifest, "manifest.json", vocab + 1)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ctc_prior.json").write_text(json.dumps({"log_prior": [0.0] * (vocab - 1) + [None]}))
    with pytest.raises(ValueError, match=r"ctc_prior\.json: expected 'log_prior', a list"):
        bundled_prior(bad, manifest, "manifest.json", vocab)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        bundled_prior(bad, {**manifest, "prior": {**manifest["prior"], "scale": -1}}, "m", vocab)
    with pytest.raises(ValueError, match="prior_scale must be >= 0"):
        Transcriber(exported, prior_scale=-0.5)

    # A version this dmao does not know is refused in one line (1 and 2 load).
    newer = tmp_path / "newer"
    shutil.copytree(prior_export, newer)
    manifest_path = newer / "manifest.json"
    manifest_path.write_text(json.dumps({**manifest, "format_version": 3}))
    with pytest.raises(ValueError, match=r"format version 3; this dmao \S+ reads versions 1, 2"):
        load_exported(newer)
