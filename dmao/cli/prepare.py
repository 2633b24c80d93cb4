"""``dmao prepare synthetic|librispeech|tedlium2|switchboard|kaldi|nemo|parquet|lhotse`` —
manifests + fbank.

The real corpora are read from local copies (docs/corpora.md); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="prepare a corpus (built-in synthetic, LibriSpeech, TED-LIUM 2, Switchboard, Kaldi "
        "data directories, NeMo manifests, Hugging Face datasets, lhotse recipe manifests)",
    )
    kinds = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")

    s = kinds.add_parser("synthetic", help="synthesise the built-in offline corpus (espeak-ng)")
    s.add_argument("--out", type=Path, required=True, help="corpus directory to write")
    s.add_argument("--hours", type=float, default=3.0, help="hours of speech (all splits)")
    s.add_argument("--seed", type=int, default=0, help="seed of sentences, voices and noise")
    s.add_argument("--num-jobs", type=int, default=2, help="synthesis worker processes")
    s.add_argument(
        "--manifests", type=Path, default=None, help="also write lhotse manifests + fbank here"
    )
    _add_training_data_args(s)
    s.set_defaults(func=_run_synthetic)

    _corpus_parser(
        kinds, "librispeech", _run_librispeech,
        help="manifests + fbank for a local LibriSpeech copy",
        corpus_dir="folder holding the parts",
        parts="parts to prepare (default: all present)",
    )  # fmt: skip
    _corpus_parser(
        kinds, "tedlium2", _run_tedlium2,
        help="manifests + fbank for a local TED-LIUM release 2",
        corpus_dir="TEDLIUM_release2 or the folder holding it",
        parts="train dev test (default: all present)",
    )  # fmt: skip
    swb = _corpus_parser(
        kinds, "switchboard", _run_switchboard,
        help="manifests + 8 kHz fbank for local Switchboard-1 (+ Hub5'00) copies",
        corpus_dir="the LDC97S62 copy (.sph files below it)",
        parts="train dev eval2000-swbd eval2000-callhome (default: train dev, and the eval2000 "
        "parts when --eval2000-dir is given)",
    )  # fmt: skip
    swb.add_argument(
        "--transcripts-dir",
        type=Path,
        default=None,
        help="swb_ms98_transcriptions (default: looked up inside and beside --corpus-dir)",
    )
    swb.add_argument(
        "--eval2000-dir",
        type=Path,
        default=None,
        help="folder holding LDC2002S09 and LDC2002T43 (adds the eval2000-* parts)",
    )
    swb.add_argument(
        "--dev-utterances",
        type=int,
        default=4000,
        help="hold out the first conversations with at least this many segments as dev",
    )
    _corpus_parser(
        kinds, "kaldi", _run_kaldi, sampling_rate=True,
        help="manifests + fbank for any corpus as Kaldi data directories (one per part)",
        corpus_dir="folder holding a data directory per part (wav.scp, text, [segments, "
        "utt2spk]), e.g. an ESPnet recipe's data/; relative audio paths are read from the folder "
        "holding it",
        parts="part folders (default: all with a wav.scp)",
    )  # fmt: skip
    _corpus_parser(
        kinds, "nemo", _run_nemo, sampling_rate=True,
        help="manifests + fbank for any corpus as NeMo manifests (JSON lines, one per part)",
        corpus_dir="folder of <part>.json (or <part>_manifest.json) NeMo manifests, or of "
        "tarred datasets <part>/tarred_audio_manifest.json; relative audio paths are read from "
        "the manifest's folder",
        parts="default: every manifest found",
    )  # fmt: skip
    parquet = _corpus_parser(
        kinds, "parquet", _run_parquet, sampling_rate=True,
        help="manifests + fbank for a Hugging Face dataset's Parquet files or save_to_disk "
        "folders (a part per split)",
        corpus_dir="the dataset's folder (or one config's): <split>-NNNNN-of-NNNNN.parquet, "
        "<split>/NNNN.parquet, <split>.parquet or save_to_disk's <split>/state.json below it",
        parts="splits (default: every one found)",
    )  # fmt: skip
    parquet.add_argument(
        "--text-column",
        default=None,
        help="the transcript column (default: the first of text, sentence, transcription, "
        "transcript, normalized_text)",
    )
    _corpus_parser(
        kinds, "lhotse", _run_lhotse, sampling_rate=True,
        help="fbank for the manifests of any lhotse recipe (lhotse prepare <corpus>)",
        corpus_dir="folder of <prefix>_{recordings,supervisions}_<part>.jsonl.gz (or _cuts_) "
        "manifests",
        parts="default: every part found",
    )  # fmt: skip


def _corpus_parser(
    kinds: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    help: str,
    corpus_dir: str,
    parts: str,
    sampling_rate: bool = False,
) -> argparse.ArgumentParser:
    """The sub-command of a corpus read from a local copy: its folder, the manifest directory,
    the parts, the worker count, the bad-audio and training-data flags (and, where the corpus
    does not fix it, the features' rate)."""
    p = kinds.add_parser(name, help=help)
    p.add_argument("--corpus-dir", type=Path, required=True, help=corpus_dir)
    p.add_argument("--out", type=Path, required=True, help="manifest directory")
    p.add_argument("--parts", nargs="+", default=None, help=parts)
    if sampling_rate:
        p.add_argument("--sampling-rate", type=int, default=16000, help="features' rate (Hz)")
    p.add_argument("--num-jobs", type=int, default=2)
    _add_bad_audio_args(p)
    _add_training_data_args(p)
    p.set_defaults(func=func)
    return p


def _add_bad_audio_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bad-audio",
        choices=("strict", "skip"),
        default="strict",
        help="missing/corrupt audio: strict lists every bad file and fails; skip leaves each "
        "out (logged, listed in <out>/bad_audio.json) within --max-bad-audio-fraction",
    )
    p.add_argument(
        "--max-bad-audio-fraction",
        type=float,
        default=0.01,
        help="skip mode's error budget: the largest fraction of a part that may be left out",
    )


def _add_training_data_args(p: argparse.ArgumentParser) -> None:
    """--no-features, --speed-perturb, --rir-dir, --reverb-copies and --noise-dir: how the features
    are kept, and the training copies and noise windows a recipe's data.* settings train on."""
    p.add_argument(
        "--no-features",
        action="store_true",
        help="write the manifests only, no feature archives: for runs with "
        "data.on_the_fly_features=true (docs/corpora.md)",
    )
    p.add_argument(
        "--speed-perturb",
        type=float,
        nargs="+",
        default=[],
        metavar="F",
        help="also cache the training parts (train*) at these speeds, e.g. 0.9 1.1, as "
        "<part>_sp<F> (what data.speed_perturb trains on; docs/corpora.md)",
    )
    p.add_argument(
        "--rir-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="also cache the training parts reverberated with the room impulse responses of DIR "
        "(e.g. RIRS_NOISES), as data.rir_dir=DIR trains on (docs/corpora.md)",
    )
    p.add_argument(
        "--reverb-copies",
        type=int,
        default=1,
        metavar="N",
        help="--rir-dir: reverberated copies per utterance (data.reverb_copies; default 1)",
    )
    p.add_argument(
        "--noise-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="also cache the noise windows of DIR (e.g. MUSAN) that data.noise_dir=DIR mixes "
        "into training (docs/corpora.md)",
    )


def _augment(args: argparse.Namespace, cuts_by_part: dict, out: Path) -> None:
    """The speed-perturbed and reverberated copies and the noise windows the flags ask for."""
    _speed_perturb(args, cuts_by_part, out)
    _reverb(args, cuts_by_part, out)
    _noise(args, cuts_by_part, out)


def _noise(args: argparse.Namespace, cuts_by_part: dict, out: Path) -> None:
    """The --noise-dir windows with their features, cached in ``out`` at the corpus's rate."""
    if args.noise_dir is None:
        return
    from dmao.config.schema import DataConfig
    from dmao.data.noise import noise_part, prepare_noise

    rate, options = _audio_settings(args, cuts_by_part)
    on_the_fly = not options.pop("compute_features")
    data = DataConfig(
        manifest_dir=str(out), noise_dir=str(args.noise_dir), sampling_rate=rate,
        on_the_fly_features=on_the_fly, **options,
    )  # fmt: skip
    windows = prepare_noise(data, num_jobs=args.num_jobs)
    hours = sum(cut.duration for cut in windows) / 3600
    print(f"noise: {len(windows)} windows, {hours:.2f} h, cached as {noise_part(args.noise_dir)}")


def _speed_perturb(args: argparse.Namespace, cuts_by_part: dict, out: Path) -> None:
    """The --speed-perturb copies of the training parts among ``cuts_by_part``, cached in
    ``out``, and their sizes printed."""
    if not args.speed_perturb:
        return
    from dmao.data.speed_perturb import perturb_parts

    train = _train_parts(cuts_by_part, "--speed-perturb")
    rate, audio = _audio_settings(args, train)
    copies = perturb_parts(
        out, train, args.speed_perturb, sampling_rate=rate, num_jobs=args.num_jobs, **audio
    )
    _report(copies, out)


def _reverb(args: argparse.Namespace, cuts_by_part: dict, out: Path) -> None:
    """The --rir-dir copies of the training parts among ``cuts_by_part``, cached in ``out``."""
    if args.rir_dir is None:
        return
    from dmao.config.schema import DataConfig
    from dmao.data.reverb import check_reverb_config, reverberate_parts

    check_reverb_config(DataConfig(rir_dir=str(args.rir_dir), reverb_copies=args.reverb_copies))
    train = _train_parts(cuts_by_part, "--rir-dir")
    rate, audio = _audio_settings(args, train)
    copies = reverberate_parts(
        out, train, args.rir_dir, args.reverb_copies, sampling_rate=rate,
        num_jobs=args.num_jobs, **audio,
    )  # fmt: skip
    _report(copies, out)


def _train_parts(cuts_by_part: dict, flag: str) -> dict:
    """The training parts (names starting with ``train``) of ``cuts_by_part``, or a
    :class:`ValueError` naming ``flag`` when there is none."""
    train = {part: cuts for part, cuts in cuts_by_part.items() if part.startswith("train")}
    if not train:
        raise ValueError(
            f"{flag}: no training part (a name starting with 'train') among "
            f"{', '.join(cuts_by_part)}"
        )
    return train


def _audio_settings(args: argparse.Namespace, cuts_by_part: dict) -> tuple[int, dict]:
    """The sampling rate of the first cut among ``cuts_by_part`` (one corpus: one rate) and the
    preparation's keyword arguments (:func:`_options`)."""
    rate = next(iter(next(iter(cuts_by_part.values())))).sampling_rate
    return rate, _options(args)


def _options(args: argparse.Namespace) -> dict:
    """:func:`~dmao.data.manifests.load_or_prepare`'s keyword arguments the flags set: whether
    features are computed, and the bad-audio handling (the built-in corpus has no such flags)."""
    options: dict = {"compute_features": not args.no_features}
    if hasattr(args, "bad_audio"):
        options.update(bad_audio=args.bad_audio, max_bad_audio_fraction=args.max_bad_audio_fraction)
    return options


def _run_synthetic(args: argparse.Namespace) -> int:
    from dmao.data.manifests import prepare_manifests
    from dmao.data.synthetic import prepare_synthetic

    for flag, given in (
        ("--speed-perturb", args.speed_perturb),
        ("--rir-dir", args.rir_dir),
        ("--noise-dir", args.noise_dir),
        ("--no-features", args.no_features),
    ):
        if given and args.manifests is None:
            raise ValueError(f"{flag} needs --manifests (the manifests and features go there)")
    corpus = prepare_synthetic(args.out, hours=args.hours, seed=args.seed, num_jobs=args.num_jobs)
    print(f"corpus ready: {corpus}")
    if args.manifests is not None:
        parts = ["train", "dev", "test"]
        cuts = prepare_manifests(
            corpus, args.manifests, parts, num_jobs=args.num_jobs, **_options(args)
        )
        print(f"manifests ready: {args.manifests}")
        _augment(args, cuts, args.manifests)
    return 0


def _run_librispeech(args: argparse.Namespace) -> int:
    from dmao.data.corpora.librispeech import prepare_librispeech

    cuts = prepare_librispeech(
        args.corpus_dir, args.out, args.parts, num_jobs=args.num_jobs, **_options(args)
    )
    print(f"manifests for {', '.join(cuts)} ready in {args.out}")
    _augment(args, cuts, args.out)
    return 0


def _run_tedlium2(args: argparse.Namespace) -> int:
    from dmao.data.corpora.tedlium import TEDLIUM_LAYOUT, prepare_tedlium2, resolve_tedlium_dir

    corpus = resolve_tedlium_dir(args.corpus_dir)
    parts = args.parts or [p for p in ("train", "dev", "test") if (corpus / p).is_dir()]
    if not parts:
        raise FileNotFoundError(
            f"no TED-LIUM part (train, dev, test) found in {corpus}; expected {TEDLIUM_LAYOUT}"
        )
    cuts = prepare_tedlium2(corpus, args.out, parts, num_jobs=args.num_jobs, **_options(args))
    _report(cuts, args.out)
    _augment(args, cuts, args.out)
    return 0


def _run_switchboard(args: argparse.Namespace) -> int:
    from dmao.data.corpora.switchboard import (
        EVAL2000_PARTS,
        SWITCHBOARD_PARTS,
        prepare_switchboard,
    )

    parts = args.parts or [
        *SWITCHBOARD_PARTS,
        *(EVAL2000_PARTS if args.eval2000_dir is not None else ()),
    ]
    cuts = prepare_switchboard(
        args.corpus_dir,
        args.out,
        parts,
        transcripts_dir=args.transcripts_dir,
        eval2000_dir=args.eval2000_dir,
        dev_utterances=args.dev_utterances,
        num_jobs=args.num_jobs,
        **_options(args),
    )
    _report(cuts, args.out)
    _augment(args, cuts, args.out)
    return 0


def _run_kaldi(args: argparse.Namespace) -> int:
    from dmao.data.corpora.kaldi import KALDI_LAYOUT, kaldi_parts, prepare_kaldi

    what = "data directory (*/wav.scp)"
    return _prepare_any(args, prepare_kaldi, kaldi_parts, what, KALDI_LAYOUT)


def _run_nemo(args: argparse.Namespace) -> int:
    from dmao.data.corpora.nemo import NEMO_LAYOUT, nemo_parts, prepare_nemo

    return _prepare_any(args, prepare_nemo, nemo_parts, "NeMo manifest", NEMO_LAYOUT)


def _run_parquet(args: argparse.Namespace) -> int:
    from functools import partial

    from dmao.data.corpora.parquet import PARQUET_LAYOUT, parquet_parts, prepare_parquet

    prepare = partial(prepare_parquet, text_column=args.text_column)
    return _prepare_any(args, prepare, parquet_parts, "Parquet file", PARQUET_LAYOUT)


def _run_lhotse(args: argparse.Namespace) -> int:
    from dmao.data.corpora.lhotse_manifests import LHOTSE_LAYOUT, lhotse_parts, prepare_lhotse

    return _prepare_any(args, prepare_lhotse, lhotse_parts, "lhotse manifest", LHOTSE_LAYOUT)


def _prepare_any(
    args: argparse.Namespace,
    prepare: Callable[..., dict],
    parts_in: Callable[[Path], list[str]],
    what: str,
    layout: str,
) -> int:
    """Prepare ``--parts`` (default: those ``parts_in(--corpus-dir)`` finds) of a corpus in a
    generic layout."""
    if not args.corpus_dir.is_dir():
        raise FileNotFoundError(f"--corpus-dir {args.corpus_dir} does not exist; expected {layout}")
    parts = args.parts or parts_in(args.corpus_dir)
    if not parts:
        raise FileNotFoundError(f"no {what} in {args.corpus_dir}; expected {layout}")
    cuts = prepare(
        args.corpus_dir, args.out, parts, sampling_rate=args.sampling_rate,
        num_jobs=args.num_jobs, **_options(args),
    )  # fmt: skip
    _report(cuts, args.out)
    _augment(args, cuts, args.out)
    return 0


def _report(cuts_by_part: dict, out: Path) -> None:
    """Per part: utterances, hours and the spread of utterance lengths, with how many are longer
    than the default ``data.max_duration_s`` (training leaves those out)."""
    from dmao.config.schema import DataConfig

    limit = DataConfig().max_duration_s
    for part, cuts in cuts_by_part.items():
        seconds = sorted(cut.duration for cut in cuts)
        line = f"{part}: {len(cuts)} utterances, {sum(seconds) / 3600:.2f} h"
        if seconds:
            median = statistics.median(seconds)
            line += f" (utterances {seconds[0]:.1f}–{seconds[-1]:.1f} s, median {median:.1f} s"
            over = sum(s > limit for s in seconds)
            line += f"; {over} over data.max_duration_s={limit:g} s)" if over else ")"
        print(line)
    print(f"manifests for {', '.join(cuts_by_part)} ready in {out}")
