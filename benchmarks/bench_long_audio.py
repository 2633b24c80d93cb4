"""Long recordings: whole-file vs chunked acoustic model (``dmao transcribe --chunk-seconds``).

    python benchmarks/bench_long_audio.py --run RUN --split dev --minutes 2 \\
        --settings whole 10:2 20:4 30:4 60:4 --threads 1

Builds long recordings from a split of the run's corpus: its utterances in id order (speakers
and sentences follow each other as in a read book chapter), joined with 0.5 s pauses (noise at
the utterance's own floor, ``_pause``) until a recording is at least ``--minutes`` long. Each
recording is transcribed (greedy) once per setting — ``whole`` (one pass over the file) or
``CHUNK:CONTEXT`` in seconds — with the settings interleaved per recording so that machine load
affects all alike, and scored against the joined references. Beside them, the same utterances
transcribed one by one (``utterances``: what ``dmao decode`` does), the WER the chunked settings
should approach.

Each setting's log-probabilities are searched once whole and once per pause length in
``--pauses`` (segments between pauses searched alone, joined with a space:
``dmao.export.chunking.pause_segments``). Prints a Markdown table: setting, WER per pause length,
CER, RTF of the acoustic model (total time / total audio), windows per recording. Choose a
default on ``--split dev``; report ``--split test``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dmao.config import load_config
from dmao.data.manifests import cut_transcript, load_cuts
from dmao.decoding.timing import SUBSAMPLING_FACTOR
from dmao.evaluation.wer import score_corpus
from dmao.export import Transcriber, export_run, load_audio, load_exported
from dmao.export.chunking import chunk_windows, pause_segments

GAP_SECONDS = 0.5


def _pause(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """``GAP_SECONDS`` of Gaussian noise at the level of the quietest 100 ms of ``samples``: a
    pause with the recording's own noise floor (digital zeros give log-mel values no training
    utterance has, and measured worse in every setting)."""
    block = rate // 10
    frames = samples[: len(samples) // block * block].reshape(-1, block)
    floor = (
        float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).min()) if len(frames) else 0
    )
    return (rng.standard_normal(int(GAP_SECONDS * rate)) * floor).astype(np.float32)


def recordings(
    run: Path, split: str, minutes: float, rate: int
) -> tuple[list[np.ndarray], list[str], list[list[np.ndarray]], list[list[str]]]:
    """Joined samples and references, and the utterances (samples, references) of each."""
    config = load_config(run / "config.yaml")
    parts = {"dev": config.data.dev_parts, "test": config.data.test_parts}[split]
    cuts = sorted(load_cuts(config.data.manifest_dir, parts[0]), key=lambda c: c.id)
    rng = np.random.default_rng(0)
    joined, refs, pieces, piece_refs = [], [], [], []
    current: list[np.ndarray] = []
    texts: list[str] = []
    for cut in cuts:
        current.append(load_audio(cut.recording.sources[0].source, rate))
        texts.append(cut_transcript(cut))
        if sum(len(x) for x in current) >= minutes * 60 * rate:
            joined.append(np.concatenate([y for x in current for y in (x, _pause(x, rate, rng))]))
            refs.append(" ".join(texts))
            pieces.append(current)
            piece_refs.append(texts)
            current, texts = [], []
    return joined, refs, pieces, piece_refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="trained run folder")
    parser.add_argument("--export", type=Path, default=None, help="export folder (made if absent)")
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--minutes", type=float, default=2.0, help="length of each recording")
    parser.add_argument("--settings", nargs="+", default=["whole", "10:2", "20:4", "30:4"])
    parser.add_argument("--backend", default="torch", help="torch, onnx or onnx-int8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--pauses", type=float, nargs="+", default=[0.16, 0.24, 0.32, 0.48],
        help="pause lengths (s) that end a segment, each measured on every setting",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    export_dir = args.export or args.run / "export"
    if not (export_dir / "manifest.json").is_file():
        export_run(args.run, export_dir, onnx=args.backend != "torch")
    exported = load_exported(export_dir)
    settings: dict[str, Transcriber] = {}
    for name in args.settings:
        chunk, context = (None, 0.0) if name == "whole" else map(float, name.split(":"))
        settings[name] = Transcriber(
            exported,
            backend=args.backend,
            num_threads=args.threads,
            chunk_seconds=chunk,
            context_seconds=context,
        )
    rate = exported.features.sampling_rate
    joined, refs, pieces, piece_refs = recordings(args.run, args.split, args.minutes, rate)
    if not joined:
        raise SystemExit(f"the {args.split} split is shorter than --minutes {args.minutes}")
    seconds = {name: 0.0 for name in settings}
    # (setting, pause) → hypotheses; pause 0: one search over the whole file.
    pauses = [0.0, *args.pauses]
    hyps: dict[tuple[str, float], list[str]] = {(n, p): [] for n in settings for p in pauses}
    blank = exported.tokenizer.blank_id
    frame_s = exported.features.frame_shift_s * SUBSAMPLING_FACTOR
    windows: dict[str, int] = {name: 0 for name in settings}
    first = next(iter(settings.values()))
    for samples in joined:
        features = first.features(samples)
        for name, transcriber in settings.items():
            start = time.perf_counter()
            log_probs = transcriber.log_probs(features)
            seconds[name] += time.perf_counter() - start
            for pause in pauses:
                ranges = [(0, len(log_probs))]
                if pause:
                    ranges = pause_segments(log_probs, blank, round(pause / frame_s))
                texts = (transcriber.search(log_probs[a:b]) for a, b in ranges)
                hyps[name, pause].append(" ".join(t for t in texts if t))
            if transcriber.chunk_frames is not None:
                windows[name] += len(chunk_windows(features.shape[0], *transcriber.chunk_frames))
            else:
                windows[name] += 1
    whole_refs = [r for rs in piece_refs for r in rs]
    alone = [first.search(first.log_probs(first.features(x))) for ps in pieces for x in ps]
    audio = sum(len(x) for x in joined) / rate
    rows = {"utterances": score_corpus(whole_refs, alone)}
    scores = {key: score_corpus(refs, h) for key, h in hyps.items()}
    spec = json.loads((export_dir / "model.json").read_text())
    print(
        f"{spec['name']}, {spec['num_parameters']:,} parameters; {args.split}: "
        f"{len(joined)} recordings of {audio / len(joined) / 60:.1f} min on average "
        f"({len(whole_refs)} utterances, {audio:.0f} s); {args.backend}, {args.threads} thread(s)\n"
    )
    head = " | ".join(["one search", *(f"pauses ≥ {p:.2f} s" for p in args.pauses)])
    print(f"| setting | WER: {head} | CER (one search) | RTF acoustic model | windows |")
    print("|---|" + "---:|" * (len(pauses) + 3))
    print(f"| one utterance at a time | {100 * rows['utterances'].wer:.2f} % |"
          + " |" * len(args.pauses)
          + f" {100 * rows['utterances'].cer:.2f} % | — | — |")  # fmt: skip
    for name in settings:
        label = "whole file" if name == "whole" else f"chunk {name.replace(':', ' s, context ')} s"
        wers = " | ".join(f"{100 * scores[name, p].wer:.2f} %" for p in pauses)
        print(
            f"| {label} | {wers} | {100 * scores[name, 0.0].cer:.2f} % | "
            f"{seconds[name] / audio:.4f} | {windows[name] / len(joined):.1f} |"
        )
    if args.json:
        result = {
            "split": args.split,
            "recordings": len(joined),
            "audio_seconds": audio,
            "utterances": {"wer": rows["utterances"].wer, "cer": rows["utterances"].cer},
            "wer": {f"{n}@{p}": v.wer for (n, p), v in scores.items()},
            "cer": {f"{n}@{p}": v.cer for (n, p), v in scores.items()},
            "rtf": {k: seconds[k] / audio for k in settings},
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
