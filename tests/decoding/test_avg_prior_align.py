"""`dmao decode --avg N --prior-scale S --align sclite` end to end on a tiny trained run, and the
CTC prior's arithmetic."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_train_overrides, train_tiny_run

from dmao.cli.main import main
from dmao.decoding.decode_run import decode_split
from dmao.decoding.prior import PRIOR_FILE, apply_prior, ctc_prior_for_run, estimate_log_prior
from dmao.decoding.run_loading import load_trained_model
from dmao.evaluation.sclite import find_sclite
from dmao.evaluation.wer import score_corpus
from dmao.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    """A run trained 6 steps with a checkpoint every 2 (steps 2, 4, 6 kept)."""
    run_dir = tmp_path_factory.mktemp("run")
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path_factory.mktemp("manifests")),
        "train.max_steps=6",
        "train.valid_every_steps=100",
        "train.checkpoint_every_steps=2",
        "train.keep_last_checkpoints=10",
    ]
    return train_tiny_run(run_dir, overrides)


def test_apply_prior_subtracts_the_scaled_log_prior() -> None:
    log_probs = torch.log_softmax(torch.randn(5, 4), dim=-1)  # (T', V)
    log_prior = torch.log(torch.tensor([0.7, 0.1, 0.1, 0.1]))
    torch.testing.assert_close(apply_prior(log_probs, log_prior, 0.5), log_probs - 0.5 * log_prior)
    assert apply_prior(log_probs, log_prior, 0.0) is log_probs
    with pytest.raises(ValueError, match="prior has 3 labels but the posteriors have 4"):
        apply_prior(log_probs, log_prior[:3], 0.5)
    probs = torch.softmax(torch.randn(7, 4), dim=-1)
    torch.testing.assert_close(
        estimate_log_prior(probs.sum(0).double(), 7), probs.mean(0).log(), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="0 frames"):
        estimate_log_prior(probs.sum(0), 0)


def test_prior_is_the_mean_training_posterior_and_is_stored_per_checkpoint(run) -> None:
    device = torch.device("cpu")
    model, config, tokenizer, path = load_trained_model(run, "last", device)
    prior = ctc_prior_for_run(
        run, model, config, tokenizer, path, device=device, progress_bar=False
    )
    assert prior.checkpoint == path.name and prior.num_frames > 0
    assert torch.logsumexp(prior.log_prior, 0).item() == pytest.approx(0.0, abs=1e-5)
    # The same average computed by hand over every training utterance (the subset is all of them).
    from dmao.decoding.run_loading import compute_posteriors

    posteriors = compute_posteriors(
        model, config, tokenizer, "train", device=device, progress_bar=False
    )
    frames = torch.cat(posteriors.log_probs).exp()  # (Σ T', V)
    assert prior.num_utterances == len(posteriors.ids) and prior.num_frames == frames.shape[0]
    torch.testing.assert_close(prior.log_prior, frames.mean(0).log(), rtol=1e-4, atol=1e-5)
    stored = run / PRIOR_FILE
    mtime = stored.stat().st_mtime_ns
    again = ctc_prior_for_run(run, model, config, tokenizer, path, device=device)
    assert stored.stat().st_mtime_ns == mtime and torch.equal(again.log_prior, prior.log_prior)
    # Another checkpoint: estimated again and the file replaced.
    model2, _, _, path2 = load_trained_model(run, "step-00000002.pt", device)
    other = ctc_prior_for_run(run, model2, config, tokenizer, path2, device=device)
    assert other.checkpoint == "step-00000002.pt"
    assert load_checkpoint(stored)["checkpoint"] == "step-00000002.pt"


def test_decode_with_avg_prior_and_sclite_alignment(run, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["decode", str(run), "--split", "test", "--avg", "3", "--prior-scale", "0.5"]
    assert main([*args, "--align", "sclite", "--out-dir", str(out)]) == 0
    assert "sclite's alignment" in capsys.readouterr().out
    record = json.loads((out / "result.json").read_text())
    assert record["checkpoint"] == "avg-3-step-00000006.pt"
    assert record["averaged_from"] == [f"step-0000000{s}.pt" for s in (2, 4, 6)]
    assert record["prior"]["scale"] == 0.5 and record["prior"]["checkpoint"] == record["checkpoint"]
    assert record["aligner"] == "sclite"
    # The counts in result.json are sclite-aligned counts of the hypotheses written.
    rows = [line.split("\t") for line in (out / "hypotheses.txt").read_text().splitlines()[1:-1]]
    refs = [row[3] for row in rows]
    hyps = [row[4] if len(row) > 4 else "" for row in rows]
    rescored = score_corpus(refs, hyps, lambda text: text, aligner="sclite")
    assert record["word_counts"]["substitutions"] == rescored.word.substitutions
    assert record["word_counts"]["insertions"] == rescored.word.insertions
    assert record["char_counts"]["deletions"] == rescored.char.deletions
    if find_sclite() is not None:
        assert record["sclite_binary"]["equal"] is True


def test_decode_prior_changes_scores_and_avg_refuses_too_many(run, tmp_path, capsys) -> None:
    plain = decode_split(run, "test", checkpoint="last", out_dir=tmp_path / "a", progress_bar=False)
    record = json.loads((tmp_path / "a" / "result.json").read_text())
    assert record["aligner"] == "kaldialign" and "prior" not in record
    assert "averaged_from" not in record and plain.checkpoint == "step-00000006.pt"
    assert main(["decode", str(run), "--split", "test", "--avg", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "--avg 5 needs 5 step checkpoints" in err and "keep_last_checkpoints=10" in err
    assert main(["decode", str(run), "--prior-utterances", "3"]) == 2
    assert "--prior-scale" in capsys.readouterr().err


def test_export_of_an_averaged_checkpoint(run, tmp_path) -> None:
    """What `dmao export --avg N` does: export_run on averaged_checkpoint's file."""
    from dmao.export import export_run, load_exported
    from dmao.training.averaging import averaged_checkpoint

    path = averaged_checkpoint(run, 2)
    out = export_run(run, tmp_path / "export", checkpoint=str(path), onnx=False)
    exported = load_exported(out)
    assert exported.manifest["source"]["checkpoint"] == "avg-2-step-00000006.pt"
    assert exported.manifest["source"]["step"] == 6
    averaged = load_checkpoint(path)["model"]
    for key, value in exported.model.state_dict().items():
        assert torch.equal(value, averaged[key]), key
