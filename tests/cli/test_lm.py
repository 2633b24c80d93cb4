"""``dmao lm build`` and ``dmao lm lexicon`` on user text (the --from-run path is exercised in
tests/decoding/test_decode_outputs.py)."""

from __future__ import annotations

import pytest

from dmao.cli.main import main
from dmao.data.tokenizer import CharTokenizer
from dmao.decoding.lexicon import read_lexicon
from dmao.lm.ngram import read_arpa

TEXT = "The cat sat.\nA dog ran home!\n\nthe cat ran\n"


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture
def tokenizer_dir(tmp_path):
    CharTokenizer("ABCDEGHMNORST").save(tmp_path / "tok")
    return tmp_path / "tok"


def test_build_word_lm_from_normalised_text(text_file, tmp_path, capsys):
    out = tmp_path / "lm.arpa"
    assert main(["lm", "build", "--text", str(text_file), "--order", "2", "--out", str(out)]) == 0
    assert "word 2-gram LM from 3 sentences" in capsys.readouterr().out
    model = read_arpa(out)
    assert model.order == 2
    assert {"THE", "CAT", "HOME"} <= set(model.vocabulary)  # upper-cased, punctuation removed
    assert ("THE", "CAT") in model.log10_probs[1]


def test_build_token_lm_and_lexicon(text_file, tokenizer_dir, tmp_path):
    args = ["lm", "build", "--text", str(text_file), "--tokenizer", str(tokenizer_dir)]
    lexicon = tmp_path / "lexicon.txt"
    assert main([*args, "--unit", "token", "--out", str(tmp_path / "c.arpa")]) == 0
    assert ("C", "A", "T") in read_arpa(tmp_path / "c.arpa").log10_probs[2]
    assert ("E", "|", "C") in read_arpa(tmp_path / "c.arpa").log10_probs[2]
    assert main([*args, "--out", str(tmp_path / "w.arpa"), "--lexicon", str(lexicon)]) == 0
    assert read_lexicon(lexicon)["HOME"] == [["H", "O", "M", "E", "|"]]
    again = tmp_path / "again.txt"
    lex_args = ["lm", "lexicon", "--text", str(text_file), "--tokenizer", str(tokenizer_dir)]
    assert main([*lex_args, "--out", str(again)]) == 0
    assert again.read_text() == lexicon.read_text()


def test_token_lm_needs_a_tokenizer(text_file, tmp_path, capsys):
    args = ["lm", "build", "--text", str(text_file), "--unit", "token", "--out", "x.arpa"]
    assert main(args) == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert main(["lm", "build", "--text", str(tmp_path / "none.txt"), "--out", "x.arpa"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["lm", "build", "--text", str(text_file), "--order", "7", "--out", "x.arpa"]) == 2
    assert "up to 6" in capsys.readouterr().err


def test_binary_conversion_needs_build_binary(text_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no KenLM tools here
    args = ["lm", "build", "--text", str(text_file), "--out", str(tmp_path / "lm.arpa")]
    assert main([*args, "--binary", str(tmp_path / "lm.bin")]) == 2
    assert "build_binary" in capsys.readouterr().err
    assert not (tmp_path / "lm.arpa").exists()  # refused before any work
