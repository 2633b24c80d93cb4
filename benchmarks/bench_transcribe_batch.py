"""Batched transcription: ``dmao transcribe`` throughput by padded audio per acoustic-model pass.

    python benchmarks/bench_transcribe_batch.py --run exp/bench --utterances 200 \\
        --batch-seconds 0 15 30 60 120 --backends torch onnx --repeats 3 --threads 1

Exports ``--run`` (to ``--export``, reused when it already holds an export), takes the first
``--utterances`` test utterances by id as audio files, in that order (so batches mix lengths as
a user's file list does, not sorted), and times :meth:`Transcriber.transcribe_files` end to end —
reading, fbank, acoustic model, greedy search — for every backend and ``--batch-seconds`` value
(0 = one file at a time, as before batching). Every setting runs once per pass, interleaved, so
that load from other processes affects them alike; the table gives the median real-time factor
over ``--repeats`` passes and the speed-up over one file at a time in the same backend (ratio of
medians). It also counts the transcripts identical to one file at a time and the largest
log-probability difference of a batched pass to the same files alone (float rounding of other
matrix shapes; the model masks padding). No WER is printed: only the agreement matters here.
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
from dmao.data.manifests import load_cuts
from dmao.export import Transcriber, export_run, load_exported


def _audio_files(run: Path, count: int) -> list[Path]:
    """The audio files of the first ``count`` test utterances of the run, by id."""
    config = load_config(run / "config.yaml")
    cuts = load_cuts(config.data.manifest_dir, config.data.test_parts[0])
    chosen = sorted(cuts, key=lambda cut: cut.id)[:count]
    return [Path(cut.recording.sources[0].source) for cut in chosen]


def _max_batch_difference(
    batched: Transcriber, alone: Transcriber, files: list[Path]
) -> tuple[float, list[int]]:
    """Largest |log-prob| difference between the passes ``batched.transcribe_files`` makes and
    the same files through the model alone, and the number of files in each pass."""
    worst, passes = [0.0], []
    batch_log_probs = batched.batch_log_probs

    def compared(features: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = batch_log_probs(features)
        passes.append(len(features))
        for got, item in zip(outputs, features, strict=True):
            worst[0] = max(worst[0], float((got - alone.log_probs(item)).abs().max()))
        return outputs

    batched.batch_log_probs = compared  # an instance attribute over the method, for this pass
    try:
        for _result in batched.transcribe_files(files):
            pass
    finally:
        del batched.batch_log_probs
    return worst[0], passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="trained run folder")
    parser.add_argument("--export", type=Path, default=None, help="export folder (default: tmp)")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument(
        "--batch-seconds", type=float, nargs="+", default=[0.0, 15.0, 30.0, 60.0, 120.0]
    )
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every backend")
    parser.add_argument("--device", default="cpu", help="the torch backend's device (cuda, ...)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if 0.0 not in args.batch_seconds:
        args.batch_seconds.insert(0, 0.0)  # the reference: one file at a time

    torch.set_num_threads(args.threads)
    export_dir = args.export or Path(tempfile.mkdtemp(prefix="bench_batch_")) / "model"
    if not (export_dir / "manifest.json").is_file():
        export_run(args.run, export_dir, checkpoint=args.checkpoint)
    exported = load_exported(export_dir, device=args.device)
    files = _audio_files(args.run, args.utterances)
    settings = {
        (backend, seconds): Transcriber(
            exported,
            backend=backend,
            num_threads=None if backend == "torch" else args.threads,
            batch_seconds=seconds,
        )
        for backend in args.backends
        for seconds in args.batch_seconds
    }
    texts = {key: [r.text for r in t.transcribe_files(files)] for key, t in settings.items()}
    audio_seconds = sum(
        r.audio_seconds for r in settings[next(iter(settings))].transcribe_files(files)
    )
    rtf: dict[tuple[str, float], list[float]] = {key: [] for key in settings}
    for _ in range(args.repeats):
        for key, transcriber in settings.items():
            start = time.perf_counter()
            for _result in transcriber.transcribe_files(files):
                pass
            rtf[key].append((time.perf_counter() - start) / audio_seconds)
    largest = max(s for s in args.batch_seconds)
    differences = {
        backend: _max_batch_difference(
            settings[(backend, largest)], settings[(backend, 0.0)], files
        )
        for backend in args.backends
    }

    spec = json.loads((export_dir / "model.json").read_text())
    print(
        f"{spec['name']}, {spec['num_parameters']:,} parameters; {len(files)} files, "
        f"{audio_seconds:.1f} s of audio; {args.threads} thread(s), torch on {args.device}; "
        f"median of {args.repeats}\n"
    )
    print("| backend | --batch-seconds | RTF end to end | speed-up | transcripts = one at a time |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for (backend, seconds), values in rtf.items():
        median = statistics.median(values)
        reference = statistics.median(rtf[(backend, 0.0)])
        same = sum(
            a == b for a, b in zip(texts[(backend, seconds)], texts[(backend, 0.0)], strict=True)
        )
        rows.append(
            {"backend": backend, "batch_seconds": seconds, "median_rtf": median,
             "all_rtf": values, "speedup": reference / median, "identical": same}
        )  # fmt: skip
        label = "0 (one at a time)" if seconds == 0 else f"{seconds:g}"
        print(
            f"| {backend} | {label} | {median:.4f} | {reference / median:.2f}x | "
            f"{same}/{len(files)} |"
        )
    for backend, (diff, passes) in differences.items():
        files_per_pass = sum(passes) / max(len(passes), 1)
        print(
            f"\n{backend}, --batch-seconds {largest:g}: {len(passes)} passes of "
            f"{files_per_pass:.1f} files on average; max abs. log-prob difference to the files "
            f"alone {diff:.1e}"
        )
    if args.json:
        result = {
            "model": spec["name"],
            "files": len(files),
            "audio_seconds": audio_seconds,
            "threads": args.threads,
            "device": args.device,
            "rows": rows,
            "largest_batch_seconds": largest,
            "max_abs_logprob_diff": {name: diff for name, (diff, _) in differences.items()},
            "files_per_pass": {name: passes for name, (_, passes) in differences.items()},
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
