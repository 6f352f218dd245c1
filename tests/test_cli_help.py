"""Every command of ``python -m metalearning`` explains itself: help on every option, defaults shown,
descriptions written as sentences."""

from __future__ import annotations

import argparse

import pytest

from metalearning.cli import _parser, main


def _commands(parser: argparse.ArgumentParser, prog: str = "metalearning"):
    """``(prog, parser)`` for the parser and every (nested) subcommand."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prog} {name}")


COMMANDS = dict(_commands(_parser()))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_walk_finds_every_command():
    assert {"metalearning train", "metalearning runs", "metalearning runs ls", "metalearning runs sync",
            "metalearning bench", "metalearning adapt"} <= set(COMMANDS)


@pytest.mark.parametrize("prog", COMMANDS)
def test_every_option_has_help(prog):
    missing = [a.dest for a in _options(COMMANDS[prog]) if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert missing == []


@pytest.mark.parametrize("prog", COMMANDS)
def test_every_default_is_shown(prog):
    parser = COMMANDS[prog]
    text = _flat(parser.format_help())
    with_default = [a for a in _options(parser) if a.option_strings and a.default not in (None, argparse.SUPPRESS)
                    and a.default is not False and a.default != []]
    assert [a.dest for a in with_default if f"default: {a.default}" not in text] == []


@pytest.mark.parametrize("prog", COMMANDS)
def test_help_reads_as_sentences(prog):
    parser = COMMANDS[prog]
    text = parser.format_help()
    description = _flat(parser.description or "")
    assert "``" not in text and "(default: None)" not in text
    assert description[:1].isupper() and description.endswith("."), description


def test_help_exits_cleanly_for_every_command(capsys):
    for prog in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([*prog.split()[1:], "--help"])
        assert done.value.code == 0 and "``" not in capsys.readouterr().out


@pytest.mark.parametrize("make", [lambda path: None, lambda path: path.mkdir()], ids=["missing", "empty"])
def test_runs_ls_without_mongo_does_not_suggest_local(tmp_path, capsys, monkeypatch, make):
    monkeypatch.delenv("METALEARNING_MONGO_URL", raising=False)
    make(tmp_path / "runs")
    main(["runs", "ls", "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr()
    assert "--local" not in out.out + out.err
    assert "no file store at" in out.err or "0 runs" in out.out


def test_runs_ls_with_an_unreachable_mongo_suggests_local(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METALEARNING_MONGO_URL", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=20")
    assert main(["runs", "ls", "--runs-dir", str(tmp_path)]) == 2
    assert f"--local reads the file store in {tmp_path}/" in capsys.readouterr().err
