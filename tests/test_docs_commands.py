"""Every ``vpr-bench …`` command the README and docs/ show parses with the CLI's own click parser.

The commands are collected from README.md and docs/*.md — lines of fenced shell blocks (continuation
lines joined, trailing ``# comments`` dropped) and inline code spans — and each one goes through
``make_context`` of its (sub-)command, which parses the options and converts their values without
running anything: an unknown, renamed or removed option, a bad choice or a malformed value fails the test
that bears the command's text. ``<placeholders>`` and upper-case metavars (``RUN``, ``FILE``, ``S``)
stand for a dummy value; a template whose sub-command itself is a placeholder (``vpr-bench <args> …``)
names no command and is left out. ``make run`` / ``make test`` are not vpr-bench commands.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from vpr_bench import load_all

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh", "text"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
# the program, as typed or under torchrun / python -m; at least one argument must follow
PROGRAM = re.compile(r"(?:^|(?<=[\s/$]))(?:vpr-bench|-m\s+vpr_bench)\s+(?=\S)")
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
PLACEHOLDER = re.compile(r"<[^<>]+>")
METAVAR = re.compile(r"^[A-Z][A-Z0-9_]*$")  # RUN, FILE, DIR, N, S …
SHELL_SEPARATORS = {"&&", "||", ";", "|", ">", ">>", "2>&1"}
RUN_ID = "20261206-120000-abcdef"


def _strip_comment(line: str) -> str:
    """The line without a trailing shell comment: an unquoted ``#`` at the start or after a blank."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _shell_lines(block: list[str]) -> list[str]:
    """A fenced block's logical lines: comments dropped, backslash continuations joined."""
    lines, pending = [], ""
    for raw in block:
        line = _strip_comment(raw)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append((pending + line).strip())
        pending = ""
    if pending:
        lines.append(pending.strip())
    return lines


def _commands_in(text: str) -> list[str]:
    """``vpr-bench`` command lines of one piece of text (a shell line or an inline code span)."""
    match = PROGRAM.search(text)
    return [" ".join(text[match.start() :].split())] if match else []


def _block_commands(block: list[str], language: str) -> list[str]:
    if language not in SHELL_LANGUAGES:  # python, ini, yaml …: not typed at a shell
        return []
    return [command for line in _shell_lines(block) for command in _commands_in(line)]


def collect(path: Path) -> list[str]:
    """The vpr-bench commands shown in one Markdown file, in order."""
    commands: list[str] = []
    block: list[str] | None = None
    paragraph: list[str] = []  # an inline code span may wrap onto the next line of its paragraph
    language = ""
    fence = ""

    def inline_spans() -> None:
        for _, span in INLINE.findall(" ".join(paragraph)):
            commands.extend(_commands_in(span.replace("\\|", "|")))
        paragraph.clear()

    for line in path.read_text(encoding="utf-8").splitlines():
        opened = FENCE.match(line)
        if block is not None:
            if opened and opened.group(1).startswith(fence[0]) and len(opened.group(1)) >= len(fence):
                commands += _block_commands(block, language)
                block = None
            else:
                block.append(line)
        elif opened:
            inline_spans()
            block, fence, language = [], opened.group(1), opened.group(2).lower()
        elif line.strip():
            paragraph.append(line.strip())
        else:
            inline_spans()
    inline_spans()
    if block is not None:  # a fence left open runs to the end of the page
        commands += _block_commands(block, language)
    return commands


def _arguments(command: str) -> list[str] | None:
    """The arguments after the program name, placeholders filled; None for a template."""
    match = PROGRAM.search(command)
    text = command[match.end() :]
    if PLACEHOLDER.match(text):  # `vpr-bench <args> …`: the sub-command itself is elided
        return None
    text = re.sub(r"<run[-_ ]?id>|<run>", RUN_ID, text)
    text = PLACEHOLDER.sub("1", text)
    args = []
    for token in shlex.split(text):
        if token in SHELL_SEPARATORS:
            break
        args.append("1" if METAVAR.match(token) else token)
    return args


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) of every vpr-bench command in the README and docs/, templates left out."""
    found = []
    for path in DOC_FILES:
        for command in collect(path):
            if _arguments(command) is not None:
                found.append((path.relative_to(ROOT).as_posix(), command))
    return found


COMMANDS = documented_commands()


def parse(args: list[str]) -> click.Context:
    """Parse ``args`` as ``vpr-bench`` would, down to the leaf command, without invoking anything."""
    from vpr_bench.cli import cli

    load_all()  # what the group's callback does before any command runs
    command: click.Command = cli
    ctx = click.Context(cli, info_name="vpr-bench")
    while isinstance(command, click.Group):
        if not args:
            raise click.UsageError(f"missing sub-command of {ctx.command_path!r}", ctx=ctx)
        name, command, args = command.resolve_command(ctx, args)
        if isinstance(command, click.Group):  # the groups take no options of their own
            ctx = click.Context(command, info_name=name, parent=ctx)
        else:
            ctx = command.make_context(name, list(args), parent=ctx)
    return ctx


def test_the_docs_show_commands():
    files = {file for file, _ in COMMANDS}
    assert COMMANDS, "no vpr-bench command found in README.md or docs/*.md: the collector is broken"
    assert "README.md" in files, "the README shows no vpr-bench command"


@pytest.mark.parametrize(("file", "command"), COMMANDS, ids=[command for _, command in COMMANDS])
def test_documented_command_parses(file, command):
    args = _arguments(command)
    try:
        parse(args)
    except click.exceptions.Exit as exc:  # --help / --version: printed, exits 0
        assert exc.exit_code == 0, f"{file}: {command}"
    except click.ClickException as exc:
        pytest.fail(f"{file}: `{command}` does not parse: {exc.format_message()}", pytrace=False)


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("```bash\nvpr-bench list   # everything\nmake run\n```\n", ["vpr-bench list"]),
        (
            "```\nvpr-bench run --method gem \\\n    --dataset synthetic  # note\n```\n",
            ["vpr-bench run --method gem --dataset synthetic"],
        ),
        (
            "```python\nx = 'vpr-bench list'\n```\nSee `vpr-bench compare --all`.\n",
            ["vpr-bench compare --all"],
        ),
        (
            "```bash\ntorchrun --standalone -m vpr_bench run --method gem\n```\n",
            ["-m vpr_bench run --method gem"],
        ),
        ("`make test`, `vpr-bench` and `pip install 'vpr-bench[tensorboard]'`\n", []),
        (
            "Run `vpr-bench eval\n--method gem` or\n\n`vpr-bench list`.\n",
            ["vpr-bench eval --method gem", "vpr-bench list"],
        ),
    ],
)
def test_collector(tmp_path, markdown, expected):
    page = tmp_path / "page.md"
    page.write_text(markdown, encoding="utf-8")
    assert collect(page) == expected


def test_a_removed_option_or_bad_choice_fails():
    assert parse(_arguments("vpr-bench eval --method gem --checkpoint <run-id> --split test"))
    assert parse(_arguments("vpr-bench datasets synth --out DIR --places N"))
    for bad in (
        "vpr-bench run --method gem --no-such-flag 3",
        "vpr-bench eval --method gem --split testing",
        "vpr-bench plot recall --dataset synthetic",  # --output is required
        "vpr-bench no-such-command",
    ):
        with pytest.raises(click.UsageError):
            parse(_arguments(bad))
