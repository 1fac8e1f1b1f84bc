"""What the docs and messages tell users to type exists, and the cache is where they say."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lcgee import cli
from lcgee.demo.world import default_cache_dir

ROOT = Path(__file__).resolve().parents[2]
_COMMAND = re.compile(r"`(lcgee [^`]+)`")
_NEEDS_ARG = {("run",): ["p.yaml"], ("params", "check"): ["p.yaml"], ("ee", "verify"): ["out"],
              ("ee", "classify"): ["out"],
              ("doctor",): ["p.yaml"], ("evaluate",): ["out"]}


def _sources() -> list[Path]:
    return [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("lcgee/**/*.py"),
            *ROOT.glob("notebooks/*.py")]


def _commands() -> list[tuple[str, str]]:
    found = []
    for path in _sources():
        for cmd in _COMMAND.findall(path.read_text(encoding="utf-8")):
            found.append((path.relative_to(ROOT).as_posix(), cmd))
    return found


def test_docs_mention_commands():
    assert ("lcgee/params.py", "lcgee params fields") in _commands()


@pytest.mark.parametrize("where,cmd", _commands())
def test_every_command_in_docs_and_messages_parses(where, cmd):
    argv = shlex.split(cmd.replace("<", "").replace(">", ""))[1:]
    for prefix, extra in _NEEDS_ARG.items():  # a bare `lcgee run` names the command only
        if tuple(argv) == prefix:
            argv += extra
    try:
        cli._parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `{cmd}` is not a valid command (exit {exc.code})")


def test_readme_states_the_cache_location_the_code_uses(monkeypatch, tmp_path):
    readme = (ROOT / "README.md").read_text()
    monkeypatch.setenv("LCGEE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "demo"
    assert "`$LCGEE_CACHE/demo/`" in readme
    monkeypatch.delenv("LCGEE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "lcgee" / "demo"
    assert "`~/.cache/lcgee/demo/`" in readme
