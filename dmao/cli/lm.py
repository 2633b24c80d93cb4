"""``dmao lm build`` (n-gram LM as ARPA) and ``dmao lm lexicon`` (word spellings for decoding).

Examples::

    dmao lm build --from-run exp/bench --order 3 --out lm/word3.arpa --lexicon lm/lexicon.txt
    dmao lm build --text corpus.txt --order 4 --out lm.arpa
    dmao lm build --from-run exp/bench --unit token --order 6 --out lm/char6.arpa
    dmao lm lexicon --from-run exp/bench --out lm/lexicon.txt
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

__all__ = ["register"]


def _add_text_source(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", type=Path, help="text file, one sentence per line")
    source.add_argument(
        "--from-run", type=Path, help="run folder: its training transcripts and tokenizer"
    )
    p.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="run or tokenizer folder for spellings/token units (default: the --from-run run's)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lm", help="build n-gram language models and lexicons for LM decoding")
    lm_sub = p.add_subparsers(dest="lm_command", required=True, metavar="LM_COMMAND")

    build = lm_sub.add_parser("build", help="estimate a modified Kneser-Ney n-gram LM (ARPA)")
    _add_text_source(build)
    build.add_argument("--order", type=int, default=3, help="n-gram order, 2 to 6")
    build.add_argument("--out", type=Path, required=True, help="ARPA file to write")
    build.add_argument(
        "--unit",
        choices=("word", "token"),
        default="word",
        help="word LM (for lexicon decoding) or LM over the tokenizer's units (lexicon-free)",
    )
    build.add_argument(
        "--lexicon", type=Path, default=None, help="also write the lexicon of the LM's words"
    )
    build.add_argument(
        "--binary",
        type=Path,
        default=None,
        help="also convert to a KenLM binary (needs KenLM's build_binary on PATH)",
    )
    build.set_defaults(func=run_build)

    lexicon = lm_sub.add_parser("lexicon", help="spell the words of a text with a tokenizer")
    _add_text_source(lexicon)
    lexicon.add_argument("--out", type=Path, required=True, help="lexicon file to write")
    lexicon.set_defaults(func=run_lexicon)


def _load_sources(args: argparse.Namespace, need_tokenizer: bool):
    """(normalised sentences, tokenizer or None) from --text / --from-run / --tokenizer."""
    from dmao.data.tokenizer import load_tokenizer
    from dmao.lm.text import read_sentences, run_training_sentences

    if args.text is not None:
        sentences = read_sentences(args.text)
    else:
        sentences = run_training_sentences(args.from_run)
    tokenizer_dir = args.tokenizer or args.from_run
    tokenizer = None
    if tokenizer_dir is not None:
        tokenizer_dir = Path(tokenizer_dir)
        if (tokenizer_dir / "tokenizer").is_dir():
            tokenizer_dir = tokenizer_dir / "tokenizer"
        tokenizer = load_tokenizer(tokenizer_dir)
    elif need_tokenizer:
        raise ValueError("this needs a tokenizer: give --tokenizer RUN_OR_TOKENIZER_DIR")
    return sentences, tokenizer


def run_build(args: argparse.Namespace) -> int:
    from dmao.decoding.lexicon import build_lexicon, write_lexicon
    from dmao.decoding.lm_decoder import MAX_LM_ORDER
    from dmao.lm.ngram import NgramCounts, estimate_kneser_ney, write_arpa
    from dmao.lm.text import token_sentences

    if not 2 <= args.order <= MAX_LM_ORDER:
        raise ValueError(
            f"--order must be 2..{MAX_LM_ORDER}: KenLM loads no unigram model, and "
            f"flashlight-text's KenLM is built for orders up to {MAX_LM_ORDER}"
        )
    build_binary = shutil.which("build_binary")
    if args.binary is not None and build_binary is None:
        raise FileNotFoundError(
            "--binary needs KenLM's build_binary on PATH (no pip package ships it; build KenLM "
            "from source); the ARPA file alone works for decoding"
        )
    need_tokenizer = args.unit == "token" or args.lexicon is not None
    sentences, tokenizer = _load_sources(args, need_tokenizer)
    if args.unit == "token":
        units = token_sentences(sentences, tokenizer)
    else:
        units = [sentence.split() for sentence in sentences]
    model = estimate_kneser_ney(NgramCounts.from_sentences(units, args.order))
    write_arpa(model, args.out)
    sizes = ", ".join(f"{n + 1}-grams {len(t)}" for n, t in enumerate(model.log10_probs))
    print(f"wrote {args.out}: {args.unit} {args.order}-gram LM from {len(sentences)} sentences")
    print(f"  {sizes}")
    print("  discounts " + "  ".join(f"({a:.3f}, {b:.3f}, {c:.3f})" for a, b, c in model.discounts))
    if args.binary is not None:
        subprocess.run([build_binary, str(args.out), str(args.binary)], check=True)
        print(f"wrote {args.binary}: KenLM binary")
    if args.lexicon is not None:
        words = (w for sentence in sentences for w in sentence.split())
        lexicon = build_lexicon(words, tokenizer)
        write_lexicon(lexicon, args.lexicon)
        print(f"wrote {args.lexicon}: {len(lexicon)} words")
    return 0


def run_lexicon(args: argparse.Namespace) -> int:
    from dmao.decoding.lexicon import build_lexicon, write_lexicon

    sentences, tokenizer = _load_sources(args, need_tokenizer=True)
    lexicon = build_lexicon((w for s in sentences for w in s.split()), tokenizer)
    write_lexicon(lexicon, args.out)
    print(f"wrote {args.out}: {len(lexicon)} words")
    return 0
