"""benchmarks/bench_reverb.py at toy size: it builds the copies both ways and prints its table."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from conftest import tiny_train_overrides

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_reverb


def test_the_benchmark_times_rooms_and_an_impulse(tiny_corpus, tmp_path, capsys):
    overrides = tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests")
    config = str(Path(__file__).resolve().parents[2] / "dmao/configs/synthetic/demo.yaml")
    args = ["--config", config, "--utterances", "3", "--repeats", "1", *overrides]
    assert bench_reverb.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 utterances")
    assert re.search(r"\| rooms \(T60 0\.3–0\.9 s\) \| \d+\.\d \| \d+ \|", out)
    assert re.search(r"\| unit impulse \| \d+\.\d \| \d+ \|", out)
    assert re.search(r"ratio rooms / impulse: \d+\.\d\d", out)
