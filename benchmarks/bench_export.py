"""Inference speed and accuracy of an exported model: PyTorch eager vs ONNX Runtime (float32 and
int8 weights), on the same utterances.

    python benchmarks/bench_export.py --run exp/bench --utterances 100 --repeats 5 --threads 2

Exports ``--run`` with ``int8=True`` (to ``--export``, reused when it already holds an export; the
int8 backend is measured when it has ``model.int8.onnx``), reads the first
``--utterances`` test utterances (by id) from their audio files once, then times, per backend and
utterance as ``dmao transcribe`` runs them (one utterance at a time):

- acoustic model only: features → log-probs (the part the backends differ in);
- end to end from samples: fbank + acoustic model + greedy search + detokenisation.

When the export holds an n-gram LM (``dmao export --lm`` / ``--lm-from``), every backend is also
timed end to end with the LM beam search instead of greedy (rows ``BACKEND + lm``; the acoustic
model is the backend's, so only the search adds).

Real-time factor = wall time / audio duration; the table gives the median over ``--repeats``
passes, with the backends interleaved in each pass so that load from other processes affects
both alike. Every backend gets the same number of intra-op threads. Also reports each ONNX
backend's largest log-probability difference to PyTorch, how many transcripts are identical to
PyTorch's, the WER of each, and the size of each model file.
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
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of every backend")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    export_dir = args.export or Path(tempfile.mkdtemp(prefix="bench_export_")) / "model"
    if not (export_dir / "manifest.json").is_file():
        start = time.perf_counter()
        export_run(args.run, export_dir, checkpoint=args.checkpoint, int8=True)
        print(f"export: {time.perf_counter() - start:.1f} s -> {export_dir}")
    exported = load_exported(export_dir)
    backends = {
        "torch": Transcriber(exported, backend="torch"),
        "onnx": Transcriber(exported, backend="onnx", num_threads=args.threads),
    }
    if exported.onnx_int8_path is not None:
        backends["onnx-int8"] = Transcriber(exported, backend="onnx-int8", num_threads=args.threads)
    # The same backends with the export's LM beam search (its files are checked here once).
    language_model = exported.language_model()
    with_lm = {
        name: Transcriber(
            exported,
            backend=name,
            method="lm",
            language_model=language_model,
            num_threads=None if name == "torch" else args.threads,
        )
        for name in (backends if language_model is not None else ())
    }
    files = {"torch": "model.safetensors", "onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
    sizes = {name: (export_dir / files[name]).stat().st_size for name in backends}
    utterances = _utterances(args.run, args.utterances)
    rate = exported.features.sampling_rate
    samples = [load_audio(path, rate) for _, path, _ in utterances]
    audio_seconds = sum(len(s) for s in samples) / rate
    features = [backends["torch"].features(s) for s in samples]

    # Warm-up (first-call allocations, ORT's graph preparation) and the agreement check.
    hyps = {name: [t.transcribe_samples(s) for s in samples] for name, t in backends.items()}
    hyps |= {
        f"{name} + lm": [t.transcribe_samples(s) for s in samples] for name, t in with_lm.items()
    }
    max_diff = {name: 0.0 for name in backends if name != "torch"}
    for f in features:
        reference = backends["torch"].log_probs(f)
        for name in max_diff:
            diff = (backends[name].log_probs(f) - reference).abs().max()
            max_diff[name] = max(max_diff[name], float(diff))

    rtf: dict[str, dict[str, list[float]]] = {
        name: {"model": [], "end_to_end": []} for name in backends
    }
    for _ in range(args.repeats):
        for name, transcriber in backends.items():
            model_s = _time(transcriber.log_probs, features)
            total_s = _time(transcriber.transcribe_samples, samples)
            rtf[name]["model"].append(model_s / audio_seconds)
            rtf[name]["end_to_end"].append(total_s / audio_seconds)
        for name, transcriber in with_lm.items():
            total_s = _time(transcriber.transcribe_samples, samples)
            rtf.setdefault(f"{name} + lm", {"end_to_end": []})["end_to_end"].append(
                total_s / audio_seconds
            )

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
        "bytes": sizes,
        "max_abs_logprob_diff_to_torch": max_diff,
        "identical_transcripts_to_torch": {
            name: sum(a == b for a, b in zip(hyps[name], hyps["torch"], strict=True))
            for name in max_diff
        },
        "wer": {name: score_corpus(refs, h).wer for name, h in hyps.items()},
        "lm": exported.manifest.get("lm"),
    }
    med = result["median_rtf"]
    print(
        f"{result['model']}; {len(utterances)} utterances, {audio_seconds:.1f} s of audio; "
        f"{args.threads} threads; median of {args.repeats}\n"
    )
    print(
        "| backend | model file (MB) | RTF acoustic model | RTF end to end (fbank + model + "
        "greedy) | WER | transcripts = PyTorch's | max abs. log-prob diff. to PyTorch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    identical = result["identical_transcripts_to_torch"]
    for name in backends:
        same = f"{identical[name]}/{len(samples)}" if name in identical else "—"
        diff = f"{max_diff[name]:.2e}" if name in max_diff else "—"
        print(
            f"| {name} | {sizes[name] / 1e6:.1f} | {med[name]['model']:.4f} | "
            f"{med[name]['end_to_end']:.4f} | {100 * result['wer'][name]:.2f} % | {same} | {diff} |"
        )
    for name in with_lm:
        row = f"{name} + lm"
        print(
            f"| {row} | — | — | {med[row]['end_to_end']:.4f} (+ LM search) | "
            f"{100 * result['wer'][row]:.2f} % | — | — |"
        )
    for name in max_diff:
        speedup = med["torch"]["model"] / med[name]["model"]
        print(f"\n{name} / PyTorch speed-up (acoustic model): {speedup:.2f}x", end="")
    if "onnx-int8" in backends:
        ratio = med["onnx"]["model"] / med["onnx-int8"]["model"]
        smaller = sizes["onnx"] / sizes["onnx-int8"]
        print(f"; onnx-int8 / onnx: {ratio:.2f}x, file {smaller:.2f}x smaller", end="")
    print()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
