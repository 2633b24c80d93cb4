"""`dmao compare` end to end on the tiny real corpus: baseline, DMAO and control, then re-run."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import tiny_compare_overrides, tiny_train_overrides

from dmao.config import load_config
from dmao.experiments import (
    RunResult,
    Variant,
    comparison_status,
    parse_variant,
    run_comparison,
    summarise,
)
from dmao.experiments.jobs import train_all, train_if_needed
from dmao.experiments.status import format_status
from dmao.training.metrics import read_metrics


def test_compare_trains_scores_and_skips_finished_runs(tiny_corpus, tmp_path):
    overrides = tiny_compare_overrides(tiny_corpus.root, tmp_path / "manifests")
    out = tmp_path / "cmp"
    late = Variant("late", ("dmao.last_event_fraction=0.75",))
    options = {
        "seeds": [0], "control": True, "overrides": overrides, "variants": [late],
        "search_retrain": True,
    }  # fmt: skip
    # An interrupted baseline (stopped at its step-4 checkpoint): `--status` says where it
    # resumes, what waits for what, and that nothing finished yet.
    stopped = load_config(
        None, [*overrides, "dmao.enabled=false", "train.seed=0", "train.stop_at_step=4"]
    )
    train_if_needed(stopped, out / "baseline" / "seed0")
    before = {
        s.run.label: (s.step, s.run.steps, s.state)
        for s in comparison_status(None, None, out, **options)
    }
    assert before == {
        "baseline/seed0": (4, 8, "resumes at step 4"),
        "dmao/seed0": (0, 8, "not started"),
        "late/seed0": (0, 8, "not started"),
        "search-phase/seed0": (0, 4, "not started"),
        "control/seed0": (0, 8, "waits for dmao/seed0"),
        "search/seed0": (0, 4, "waits for search-phase/seed0"),
    }
    assert format_status(comparison_status(None, None, out, **options)).endswith(
        "0 of 6 runs done; 6 to go, 36 steps (no run finished yet: no measured rate to estimate "
        "the time from)"
    )
    result = run_comparison(None, None, out, **options)
    systems = {(r.system, r.split) for r in result.runs}
    expected = ("baseline", "dmao", "late", "control", "search")
    assert systems == {(s, p) for s in expected for p in ("dev", "test")}
    # The variant really ran its own schedule: its event is at step 6 (0.75 x 8), DMAO's at 4.
    events = {
        name: [r["step"] for r in read_metrics(out / name / "seed0", "dmao_event")]
        for name in ("dmao", "late")
    }
    assert events == {"dmao": [4], "late": [6]}
    params = {r.system: r.parameters for r in result.runs}
    # Same budget: DMAO ends within half a component (at most a few hundred parameters here).
    assert abs(params["dmao"] - params["baseline"]) < 0.01 * params["baseline"]
    assert params["control"] == params["dmao"]  # the found architecture, retrained
    # The control differs from its DMAO run only in timing: module by module the same widths,
    # the same (width-scaled) dropout and the same parameter count.
    summaries = {
        name: json.loads((out / name / "seed0" / "train_summary.json").read_text())
        for name in ("baseline", "dmao", "control")
    }
    arch = {
        name: json.loads((out / name / "seed0" / "architecture.json").read_text())
        for name in ("dmao", "control")
    }
    assert arch["control"] == arch["dmao"] and arch["dmao"] != json.loads(
        (out / "baseline" / "seed0" / "architecture.json").read_text()
    )
    dropout = {name: s["module_dropout"] for name, s in summaries.items()}
    assert dropout["control"] == dropout["dmao"]
    assert set(dropout["dmao"].values()) != {0.1}  # some module changed width, so its dropout
    assert set(dropout["baseline"].values()) == {0.1}
    for name in ("dmao", "control"):
        assert summaries[name]["parameters"] == summaries["dmao"]["parameters"]
    assert "Δparams" in result.table and "ΔMACs/s" in result.table
    # Search-then-retrain: the search phase stops right after its event (step 4 of 8), the
    # found architecture trains from scratch for the other 4: 8 optimizer steps in all.
    phase = json.loads((out / "search-phase" / "seed0" / "train_summary.json").read_text())
    retrain = json.loads((out / "search" / "seed0" / "train_summary.json").read_text())
    assert phase["steps"] == 4 and phase["dmao_events"] == 1
    assert retrain["steps"] == 4 and retrain["dmao_events"] == 0
    assert phase["steps"] + retrain["steps"] == summaries["baseline"]["steps"] == 8
    assert json.loads((out / "search" / "seed0" / "architecture.json").read_text()) == json.loads(
        (out / "search-phase" / "seed0" / "architecture.json").read_text()
    )
    assert len({r.code_version for r in result.runs}) == 1 and result.runs[0].code_version
    assert "rel. WER" in result.table and "control" in result.table
    names = {p.name for p in result.files}
    assert {"results.md", "results.csv", "valid_wer.png", "architecture_heatmap.png"} <= names
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 10

    # Re-running reuses every finished run: no checkpoint is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("step-*.pt")}
    again = run_comparison(
        None, None, out, seeds=[0], control=True, overrides=overrides, variants=[late],
        search_retrain=True,
    )  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in out.rglob("step-*.pt")} == stamps
    assert [(r.system, r.wer) for r in again.runs] == [(r.system, r.wer) for r in result.runs]
    after = comparison_status(None, None, out, **options)
    assert all(s.done and s.step == s.run.steps for s in after) and len(after) == 6
    assert format_status(after, jobs=2).endswith("6 of 6 runs done")


def _run(system: str, seed: int, wer: float) -> RunResult:
    return RunResult(system, seed, "test", wer, wer / 3, 1000, 1.0, f"/runs/{system}/{seed}")


def test_summary_pairs_seeds_and_counts_improvements():
    runs = [
        _run("baseline", 0, 0.50),
        _run("baseline", 1, 0.60),
        _run("baseline", 2, 0.70),
        _run("dmao", 0, 0.48),
        _run("dmao", 1, 0.57),
        _run("dmao", 2, 0.71),
    ]
    table = summarise(runs)
    row = next(line for line in table.splitlines() if line.startswith("| dmao | test | 3"))
    # Means 60.00 vs 58.67: relative +2.2 %; paired differences -2, -3, +1 → -1.33 ± 2.08.
    assert "58.67 ± 11.59" in row
    assert "+2.2 %" in row
    assert "-1.33 ± 2.08 | 1.20 |" in row  # SE = 2.08 / √3
    assert "-0.44 ± 0.69 |" in row  # CER = WER / 3 here
    assert row.rstrip().endswith("| 2/3 |")


def test_summary_shows_the_budget_and_warns_about_mixed_code_versions():
    base = RunResult("baseline", 0, "test", 0.5, 0.2, 1000, 1.0, "/b", 2000, "src:aaa git:1")
    dmao = RunResult("dmao", 0, "test", 0.4, 0.1, 1004, 1.0, "/d", 1900, "src:bbb git:2")
    table = summarise([base, dmao])
    assert "| dmao | 0 | test | 40.00 | 10.00 | 1,004 | +4 | -5.0 % |" in table
    assert "2 code versions (src:aaa, src:bbb)" in table
    same = RunResult("dmao", 0, "test", 0.4, 0.1, 1004, 1.0, "/d", 1900, "src:aaa git:1+dirty")
    assert "code versions" not in summarise([base, same])


def test_summary_of_one_seed_shows_no_spread():
    """One run has no standard deviation: the table shows the value alone, not "± 0.00"."""
    table = summarise([_run("baseline", 0, 0.50), _run("dmao", 0, 0.52)])
    row = next(line for line in table.splitlines() if line.startswith("| dmao | test | 1"))
    assert "| 52.00 | 17.33 | -4.0 % | +2.00 | – | +0.67 | 0/1 |" in row, row
    summary_rows = table.split("| system | split")[1].splitlines()[2:]
    assert summary_rows and not any("±" in line for line in summary_rows), table


def test_parse_variant_and_its_errors():
    v = parse_variant("late-fp:dmao.last_event_fraction=0.4,dmao.growth_init=function_preserving")
    assert v == Variant(
        "late-fp", ("dmao.last_event_fraction=0.4", "dmao.growth_init=function_preserving")
    )
    for bad in ("late", "late:", "late:dmao.metric", "a b:x.y=1", "baseline:dmao.ema_beta=0.2"):
        with pytest.raises(ValueError, match="variant"):
            parse_variant(bad)


def _final_weights(run_dir):
    import torch

    ckpt = max((run_dir / "checkpoints").glob("step-*.pt"))
    return torch.load(ckpt, map_location="cpu", weights_only=False)["model"]


def test_parallel_jobs_train_the_same_runs_as_one_at_a_time(tiny_corpus, tmp_path):
    """``--jobs 2`` (spawned processes) gives bit-identical runs to the sequential path."""
    import torch

    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "train.max_steps=6",
        "train.valid_every_steps=6",
        "train.checkpoint_every_steps=6",
        "train.num_threads=1",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
    ]
    one = run_comparison(None, None, tmp_path / "one", seeds=[0], control=True, overrides=overrides)
    # The workers also archive each run's record when it finishes (--archive).
    two = run_comparison(
        None, None, tmp_path / "two", seeds=[0], control=True, overrides=overrides, jobs=2,
        archive=tmp_path / "kept",
    )  # fmt: skip
    for system in ("baseline", "dmao", "control"):
        record = json.loads((tmp_path / "kept" / system / "seed0" / "record.json").read_text())
        assert set(record["parts"]) == {"dev", "test"}
    assert [(r.system, r.split, r.wer, r.cer) for r in two.runs] == [
        (r.system, r.split, r.wer, r.cer) for r in one.runs
    ]
    for system in ("baseline", "dmao", "control"):
        a = _final_weights(tmp_path / "one" / system / "seed0")
        b = _final_weights(tmp_path / "two" / system / "seed0")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), system


def test_a_failed_parallel_run_is_named_and_the_others_finish(tiny_corpus, tmp_path):
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "train.max_steps=4",
        "train.valid_every_steps=4",
        "train.checkpoint_every_steps=4",
        "train.num_threads=1",
        "dmao.score_every_steps=1",
        "dmao.last_event_fraction=0.5",
    ]
    # CUDA is not available here, so the variant fails when its training starts.
    broken = Variant("broken", ("train.device=cuda",))
    out = tmp_path / "cmp"
    # Its control waits for it, so it never starts; the others train to their end.
    with pytest.raises(RuntimeError, match=r"2 of 4 runs failed.*broken/seed0") as failure:
        run_comparison(None, None, out, seeds=[0], overrides=overrides, variants=[broken],
                       control=True, control_from="broken", jobs=3)  # fmt: skip
    assert "control/seed0: not started, broken/seed0 failed" in str(failure.value)
    for system in ("baseline", "dmao"):
        assert (out / system / "seed0" / "train_summary.json").is_file()
    assert not (out / "control").exists()


def test_a_run_that_cannot_start_is_named_and_what_waits_for_it_does_not_start(tmp_path):
    """``train_all``'s ``after``: a function that fails before its run starts (a prefix copy on
    a full disk) fails that run alone; the run waiting for it is reported, nothing trains."""
    config = load_config(None, ["train.max_steps=4"])
    finished = tmp_path / "a"
    finished.mkdir()
    (finished / "train_summary.json").write_text(json.dumps({"steps": 4}))

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    plan = [("a", config, finished), ("b", config, tmp_path / "b"), ("c", config, tmp_path / "c")]
    with pytest.raises(RuntimeError, match=r"2 of 2 runs failed") as failure:
        train_all(plan, 2, after={"b": ("a", full_disk), "c": ("b", lambda: None)})
    assert "b: not started: [Errno 28] No space left on device" in str(failure.value)
    assert "c: not started, b failed" in str(failure.value)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
