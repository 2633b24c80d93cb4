"""``dmao report RUN RUN ...``: the mean allocation of several runs, their parameter shares, and
the permutation tests of their agreement and of their likeness to a reference architecture."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from dmao.cli.main import main
from dmao.config import load_config, save_config
from dmao.models.architecture import EncoderArchitecture
from dmao.reporting.seeds import AllocationSummary
from dmao.training.model_setup import build_model_from_config

# A 4-layer d=64 Conformer: FFN 256 hidden units, 64 conv channels, 4 heads of 16 dims; with the
# default granularity 4 one component is 64 hidden units, 16 channels or one head.
OVERRIDES = ["model.num_layers=4", "model.d_model=64", "model.head_dim=16"]
KINDS = ("ff1", "conv", "mhsa", "ff2")
UNIT = {"ff1": 64, "conv": 16, "mhsa": 1, "ff2": 64}


def _write_run(folder: Path, components: dict[str, list[int]], overrides=OVERRIDES) -> Path:
    """A run folder as `dmao train` leaves it for `dmao report`: config.yaml and
    architecture.json (components per kind and layer → widths)."""
    folder.mkdir(parents=True)
    save_config(load_config(None, list(overrides)), folder / "config.yaml")
    layers = [{k: UNIT[k] * components[k][i] for k in KINDS} for i in range(len(components["ff1"]))]
    (folder / "architecture.json").write_text(json.dumps({"layers": layers}))
    return folder


def _components(vector: list[int] | np.ndarray) -> dict[str, list[int]]:
    """16 numbers (kinds ff1, conv, mhsa, ff2 × 4 layers) → components per kind."""
    return {k: [int(v) for v in vector[4 * i : 4 * i + 4]] for i, k in enumerate(KINDS)}


def _shares_of(run: Path) -> dict[str, float]:
    """Parameters of each module kind / all adaptable ones, on a model built for real."""
    arch = EncoderArchitecture.from_dict(json.loads((run / "architecture.json").read_text()))
    model = build_model_from_config(load_config(None, OVERRIDES).model, 10, architecture=arch)
    counts = {
        k: sum(p.numel() for block in model.encoder.blocks for p in getattr(block, k).parameters())
        for k in KINDS
    }
    return {k: counts[k] / sum(counts.values()) for k in KINDS}


PATTERN = [4, 4, 4, 8, 2, 4, 6, 8, 6, 4, 4, 0, 4, 0, 2, 4]  # ff1 | conv | mhsa | ff2


def test_table_and_shares_are_those_of_the_runs(tmp_path):
    a = _write_run(tmp_path / "a", _components(PATTERN))
    flat = _write_run(tmp_path / "b", _components([4] * 16))
    summary = AllocationSummary.from_runs([a, flat])
    table = summary.table().splitlines()
    assert table[0] == "| module | 1 | 2 | 3 | 4 | default |"
    # conv: layers (2, 4, 6, 8) vs 4 everywhere → means 3, 4, 5, 6 with std |x − 4| / √2
    assert table[4] == "| conv | 3.0 ± 1.4 | 4 | 5.0 ± 1.4 | 6.0 ± 2.8 | 4 |"
    assert table[5].startswith("| mhsa | 5.0 ± 1.4 | 4 | 4 | 2.0 ± 2.8 |")

    # Shares: counted independently on a real model built from each architecture.
    run_expected, default_expected = _shares_of(a), _shares_of(flat)
    shares = summary.parameter_shares()
    for k in KINDS:
        default, mean, std = shares[k]
        assert default == pytest.approx(default_expected[k])
        assert mean == pytest.approx((run_expected[k] + default_expected[k]) / 2)
        assert std == pytest.approx(abs(run_expected[k] - default_expected[k]) / np.sqrt(2))


def test_agreement_is_the_mean_pairwise_pearson_r(tmp_path):
    rng = np.random.default_rng(1)
    vectors = [rng.integers(0, 9, size=16) for _ in range(4)]
    runs = [_write_run(tmp_path / f"r{i}", _components(v)) for i, v in enumerate(vectors)]
    agreement = AllocationSummary.from_runs(runs).agreement(permutations=200)
    relative = [np.asarray(v) / 4 - 1 for v in vectors]  # every default is 4 components
    expected = [np.corrcoef(x, y)[0, 1] for x, y in itertools.combinations(relative, 2)]
    assert agreement.values == pytest.approx(expected)
    assert agreement.mean == pytest.approx(np.mean(expected))


def test_identical_runs_agree_significantly_and_opposite_ones_do_not(tmp_path):
    same = [_write_run(tmp_path / f"s{i}", _components(PATTERN)) for i in range(3)]
    agreement = AllocationSummary.from_runs(same).agreement(permutations=999)
    assert agreement.values == pytest.approx([1.0, 1.0, 1.0])
    assert agreement.p_value <= 5 / 1000  # a shuffle of 16 cells reproduces it only by chance
    mirror = [8 - v for v in PATTERN]  # every change reversed: r = −1
    pair = [same[0], _write_run(tmp_path / "m", _components(mirror))]
    opposite = AllocationSummary.from_runs(pair).agreement(permutations=999)
    assert opposite.values == pytest.approx([-1.0])
    assert opposite.p_value > 0.99


def test_p_values_are_uniform_when_the_changes_land_at_random(tmp_path):
    """Runs whose changes are the same numbers on randomly shuffled cells are exactly the null
    hypothesis: the p-value must then be (close to) uniform."""
    rng = np.random.default_rng(7)
    p_values = []
    for trial in range(30):
        runs = [
            _write_run(tmp_path / f"t{trial}" / f"r{i}", _components(rng.permutation(PATTERN)))
            for i in range(3)
        ]
        p_values.append(AllocationSummary.from_runs(runs).agreement(199, seed=trial).p_value)
    p_values = np.array(p_values)
    # Binomial(30, 0.1) has mean 3; P(≥ 10) < 0.001, and a p-value that is always small or
    # always large fails one of these.
    assert 1 <= np.sum(p_values <= 0.1) <= 9
    assert 0.3 <= p_values.mean() <= 0.7


def test_similarity_to_a_reference(tmp_path):
    runs = [_write_run(tmp_path / "a", _components(PATTERN))]
    runs.append(_write_run(tmp_path / "b", _components([8 - v for v in PATTERN])))
    ref = EncoderArchitecture.from_dict(json.loads((runs[0] / "architecture.json").read_text()))
    like = AllocationSummary.from_runs(runs).similarity(ref, permutations=999)
    assert like.values == pytest.approx([1.0, -1.0])
    assert like.mean == pytest.approx(0.0)
    assert 0.2 < like.p_value < 0.8
    alone = AllocationSummary.from_runs(runs[:1]).similarity(ref, permutations=999)
    assert alone.values == pytest.approx([1.0]) and alone.p_value <= 5 / 1000


def test_refusals_name_the_run(tmp_path):
    flat = _write_run(tmp_path / "flat", _components([4] * 16))
    a = _write_run(tmp_path / "a", _components(PATTERN))
    with pytest.raises(ValueError, match=r"flat: every module has the same relative width"):
        AllocationSummary.from_runs([a, flat]).agreement(permutations=10)
    with pytest.raises(ValueError, match="agreement needs at least two runs"):
        AllocationSummary.from_runs([a]).agreement(permutations=10)
    wide = [*OVERRIDES[:-1], "model.head_dim=8"]  # 8 heads: another model
    other = _write_run(tmp_path / "other", _components(PATTERN), overrides=wide)
    with pytest.raises(ValueError, match=r"other is not the same model as .*a \(default"):
        AllocationSummary.from_runs([a, other])


def test_cli_reports_several_runs(tmp_path, capsys):
    runs = [_write_run(tmp_path / "exp" / f"seed{i}", _components(PATTERN)) for i in range(2)]
    ref = tmp_path / "ref.json"
    ref.write_text((runs[0] / "architecture.json").read_text())
    argv = ["report", *map(str, runs), "--reference", str(ref), "--permutations", "99"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "components per layer over 2 runs, mean ± std" in out
    assert "| conv | 2 | 4 | 6 | 8 | 4 |" in out
    assert "agreement between the runs (pairwise): mean r = 1.00, permutation p = 0.0100" in out
    assert f"like {ref}: mean r = 1.00 (min 1.00, max 1.00)" in out
    assert (tmp_path / "exp" / "report" / "architecture_seeds_heatmap.png").stat().st_size > 0

    assert main(["report", *map(str, runs), "--twins"]) == 2
    assert "error: --twins reports one run; give a single RUN" in capsys.readouterr().err
    assert main(["report", str(runs[0]), "--reference", str(tmp_path / "none.json")]) == 2
    assert "--reference: " in capsys.readouterr().err
