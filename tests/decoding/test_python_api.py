"""The Python example of docs/decoding.md ("In Python") runs as written on a trained run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from dmao.decoding.decode_run import decode_split

DOC = Path(__file__).resolve().parents[2] / "docs" / "decoding.md"


def _example() -> str:
    text = DOC.read_text()
    section = text[text.index("## In Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_example_runs_and_writes_what_dmao_decode_writes(
    tiny_dmao_run, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(tiny_dmao_run, run)
    code = _example()
    assert 'Path("exp/run1")' in code
    exec(compile(code.replace('Path("exp/run1")', f"Path({str(run)!r})"), str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert re.findall(r"beam (\d+): WER", out) == ["1", "4", "8"]
    record = json.loads((run / "decode" / "dev-beam" / "result.json").read_text())
    assert record["prior"]["scale"] == 0.3
    # the same numbers as `dmao decode --method beam --prior-scale 0.3`
    again = decode_split(
        run,
        "dev",
        method="beam",
        prior_scale=0.3,
        out_dir=tmp_path / "cli",
        progress_bar=False,
    )
    assert again.score.wer == record["wer"] and again.score.cer == record["cer"]
