"""``dmao prepare synthetic|librispeech`` — build a corpus and its lhotse manifests."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="prepare a corpus (built-in synthetic or LibriSpeech)")
    kinds = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")

    s = kinds.add_parser("synthetic", help="synthesise the built-in offline corpus (espeak-ng)")
    s.add_argument("--out", type=Path, required=True, help="corpus directory to write")
    s.add_argument("--hours", type=float, default=3.0, help="hours of speech (all splits)")
    s.add_argument("--seed", type=int, default=0, help="seed of sentences, voices and noise")
    s.add_argument("--num-jobs", type=int, default=2, help="synthesis worker processes")
    s.add_argument(
        "--manifests", type=Path, default=None, help="also write lhotse manifests + fbank here"
    )
    s.set_defaults(func=_run_synthetic)

    ls = kinds.add_parser("librispeech", help="manifests + fbank for a local LibriSpeech copy")
    ls.add_argument("--corpus-dir", type=Path, required=True, help="folder holding the parts")
    ls.add_argument("--out", type=Path, required=True, help="manifest directory")
    ls.add_argument(
        "--parts", nargs="+", default=None, help="parts to prepare (default: all present)"
    )
    ls.add_argument("--num-jobs", type=int, default=2)
    ls.set_defaults(func=_run_librispeech)


_LIBRISPEECH_PARTS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)


def _run_synthetic(args: argparse.Namespace) -> int:
    from dmao.data.manifests import prepare_manifests
    from dmao.data.synthetic import prepare_synthetic

    corpus = prepare_synthetic(args.out, hours=args.hours, seed=args.seed, num_jobs=args.num_jobs)
    print(f"corpus ready: {corpus}")
    if args.manifests is not None:
        prepare_manifests(corpus, args.manifests, ["train", "dev", "test"], num_jobs=args.num_jobs)
        print(f"manifests ready: {args.manifests}")
    return 0


def _run_librispeech(args: argparse.Namespace) -> int:
    from dmao.data.manifests import prepare_manifests

    corpus = args.corpus_dir
    if not corpus.is_dir():
        raise FileNotFoundError(f"--corpus-dir {corpus} does not exist")
    if (corpus / "LibriSpeech").is_dir():  # the tarballs unpack into LibriSpeech/
        corpus = corpus / "LibriSpeech"
    parts = args.parts or [p for p in _LIBRISPEECH_PARTS if (corpus / p).is_dir()]
    if not parts:
        raise FileNotFoundError(
            f"no LibriSpeech part found in {corpus}; expected sub-folders such as "
            + ", ".join(_LIBRISPEECH_PARTS)
        )
    prepare_manifests(corpus, args.out, parts, num_jobs=args.num_jobs)
    print(f"manifests for {', '.join(parts)} ready in {args.out}")
    return 0
