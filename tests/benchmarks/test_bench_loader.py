"""benchmarks/bench_loader.py at toy size: it collates batches four ways and prints its table."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from conftest import tiny_train_overrides

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_loader


def test_the_benchmark_times_cached_and_on_the_fly_features_with_and_without_noise(
    tiny_corpus, tmp_path, capsys
):
    overrides = tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests")
    config = str(Path(__file__).resolve().parents[2] / "dmao/configs/synthetic/demo.yaml")
    args = ["--config", config, "--batches", "2", "--repeats", "1", *overrides]
    assert bench_loader.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 training batches of ")
    for way in ("cached features", r"cached \+ noise \(fbank energies\)", "on the fly",
                r"on the fly \+ noise \(audio\)"):  # fmt: skip
        assert re.search(rf"^\| {way} \| \d+\.\d \| \d+\.\d\d \|$", out, re.M), way
    assert re.search(r"^\| cached features \| \d+\.\d \| 1\.00 \|$", out, re.M)
