"""Every `dmao ...` command in the README and docs parses with the real command line, and its
`key=value` overrides load with its recipe: a renamed flag or setting cannot leave the docs stale.
Nothing is run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dmao.cli.main import build_parser
from dmao.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "RESULTS.md", ROOT / "BENCHMARKS.md",
        *sorted((ROOT / "docs").glob("*.md"))]  # fmt: skip
_BLOCK = re.compile(r"```(?:bash|sh)?\n(.*?)```", re.S)
_COMMENT = re.compile(r"\s+#\s")
_SHELL = re.compile(r"\s(?:>|>>|\||&&|2>&1)\s.*$")  # redirections and pipes end the command


def documented_commands(path: Path) -> list[str]:
    """The `dmao ...` lines of a Markdown file's code blocks, continuations joined, comments and
    shell redirections cut; lines that abbreviate (``...``) or name a placeholder (``<x>``) are
    left out."""
    commands = []
    for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(_SHELL.sub("", _COMMENT.split(line.strip())[0]).split())
            if line.startswith("dmao ") and "..." not in line and "<" not in line:
                commands.append(line)
    return commands


COMMANDS = [(path, command) for path in DOCS for command in documented_commands(path)]


def test_the_docs_hold_many_commands():
    assert len(COMMANDS) > 60
    files = {path.name for path, _ in COMMANDS}
    assert {"README.md", "corpora.md", "decoding.md", "export.md"} <= files
    with_overrides = [c for _, c in COMMANDS if getattr(
        build_parser().parse_args(shlex.split(c)[1:]), "overrides", None)]  # fmt: skip
    assert len(with_overrides) >= 15  # the config check below is not vacuous


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[f"{p.name}:{c[:60]}" for p, c in COMMANDS]
)
def test_a_documented_command_parses_and_its_overrides_load(path, command, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes are named relative to the repository
    try:
        args = build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit:
        pytest.fail(f"{path.name}: `{command}` does not parse")
    overrides = getattr(args, "overrides", None)
    config = getattr(args, "config", None)
    if overrides is not None and (config is None or Path(config).is_file()):
        load_config(config, list(overrides))  # raises naming an unknown key or a bad value


def test_a_stale_command_would_be_caught(tmp_path):
    """The check fails on a renamed flag and on an unknown setting (what it exists to catch)."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```bash\n"
        "dmao decode exp/run --splitt test   # a renamed flag\n"
        "dmao train --config dmao/configs/synthetic/small.yaml --out x data.nosuch=1\n"
        "dmao train --out x \\\n    train.max_steps=5 > log.txt   # continued, redirected\n"
        "dmao compare ... --status\n"
        "```\n"
    )
    first, second, third = documented_commands(doc)
    assert third == "dmao train --out x train.max_steps=5"
    with pytest.raises(SystemExit):
        build_parser().parse_args(shlex.split(first)[1:])
    args = build_parser().parse_args(shlex.split(second)[1:])
    with pytest.raises(Exception, match="nosuch"):
        load_config(str(ROOT / args.config), list(args.overrides))
