"""Inference speed of an exported model: PyTorch eager vs ONNX Runtime, on the same utterances.

    python benchmarks/bench_export.py --run exp/bench --utterances 100 --repeats 5 --threads 2

Exports ``--run`` (to ``--export``, reused when it already holds an export), reads the first
``--utterances`` test utterances (by id) from their audio files once, then times, per backend and
utterance as ``dmao transcribe`` runs them (one utterance at a time):

- acoustic model only: features → log-probs (the part the backends differ in);
- end to end from samples: fbank + acoustic model + greedy search + detokenisation.

Real-time factor = wall time / audio duration; the table gives the median over ``--repeats``
passes, with the backends interleaved in each pass so that load from other processes affects
both alike. Both backends get the same number of intra-op threads. Also reports the largest
log-probability difference and whether the transcripts (and their WER) agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dmao.config import load_config
from dmao.data.manifests import cut_transcript, load_cuts
from dmao.evaluation.wer import score_corpus
from dmao.export import Transcriber, export_run, load_audio, load_exported


def _utterances(run: Path, count: int) -> list[tuple[str, Path, str]]:
    """``(id, audio file, reference)`` of the first ``count`` test utterances of the run."""
    config = load_config(run / "config.yaml")
    cuts = load_cuts(config.data.manifest_dir, config.data.test_parts[0])
    chosen = sorted(cuts, key=lambda cut: cut.id)[:count]
    return [(c.id, Path(c.recording.sources[0].source), cut_transcript(c)) for c in chosen]


def _time(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="trained run folder")
    parser.add_argument("--export", type=Path, default=None, help="export folder (default: tmp)")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of both backends")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    export_dir = args.export or Path(tempfile.mkdtemp(prefix="bench_export_")) / "model"
    if not (export_dir / "manifest.json").is_file():
        start = time.perf_counter()
        export_run(args.run, export_dir, checkpoint=args.checkpoint)
        print(f"export: {time.perf_counter() - start:.1f} s -> {export_dir}")
    exported = load_exported(export_dir)
    backends = {
        "torch": Transcriber(exported, backend="torch"),
        "onnx": Transcriber(exported, backend="onnx", num_threads=args.threads),
    }
    utterances = _utterances(args.run, args.utterances)
    rate = exported.features.sampling_rate
    samples = [load_audio(path, rate) for _, path, _ in utterances]
    audio_seconds = sum(len(s) for s in samples) / rate
    features = [backends["torch"].features(s) for s in samples]

    # Warm-up (first-call allocations, ORT's graph preparation) and the agreement check.
    max_diff, hyps = 0.0, {}
    for name, transcriber in backends.items():
        hyps[name] = [transcriber.transcribe_samples(s) for s in samples]
    for f in features:
        a, b = backends["torch"].log_probs(f), backends["onnx"].log_probs(f)
        max_diff = max(max_diff, float((a - b).abs().max()))

    rtf: dict[str, dict[str, list[float]]] = {
        name: {"model": [], "end_to_end": []} for name in backends
    }
    for _ in range(args.repeats):
        for name, transcriber in backends.items():
            model_s = _time(transcriber.log_probs, features)
            total_s = _time(transcriber.transcribe_samples, samples)
            rtf[name]["model"].append(model_s / audio_seconds)
            rtf[name]["end_to_end"].append(total_s / audio_seconds)

    refs = [ref for _, _, ref in utterances]
    spec = json.loads((export_dir / "model.json").read_text())
    result = {
        "run": str(args.run),
        "model": f"{spec['name']}, {spec['num_parameters']:,} parameters",
        "utterances": len(utterances),
        "audio_seconds": round(audio_seconds, 2),
        "threads": args.threads,
        "repeats": args.repeats,
        "median_rtf": {
            name: {part: statistics.median(values) for part, values in parts.items()}
            for name, parts in rtf.items()
        },
        "all_rtf": rtf,
        "max_abs_logprob_diff": max_diff,
        "identical_transcripts": sum(a == b for a, b in zip(*hyps.values(), strict=True)),
        "wer": {name: score_corpus(refs, h).wer for name, h in hyps.items()},
    }
    med = result["median_rtf"]
    print(
        f"{result['model']}; {len(utterances)} utterances, {audio_seconds:.1f} s of audio; "
        f"{args.threads} threads; median of {args.repeats}\n"
    )
    print("| backend | RTF acoustic model | RTF end to end (fbank + model + greedy) | WER |")
    print("|---|---:|---:|---:|")
    for name in backends:
        print(
            f"| {name} | {med[name]['model']:.4f} | {med[name]['end_to_end']:.4f} | "
            f"{100 * result['wer'][name]:.2f} % |"
        )
    speedup = med["torch"]["model"] / med["onnx"]["model"]
    print(
        f"\nONNX Runtime / PyTorch speed-up (acoustic model): {speedup:.2f}x; max |Δ log-prob| "
        f"{max_diff:.2e}; identical transcripts {result['identical_transcripts']}/{len(samples)}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
