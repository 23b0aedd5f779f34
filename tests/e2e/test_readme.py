"""The README's code works as written: its Python blocks run against a live system, and
every `checkout-orchestrator ...` command it shows exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.bootstrap import orchestrator
from orchestrator.cli import app
from orchestrator.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


async def test_the_python_blocks_run_against_a_live_orchestrator(nats_url, capsys):
    blocks = _blocks("python")
    assert blocks, "the README shows Python usage"
    # the README uses the default stream names; nothing else in the suite does
    async with orchestrator(Settings(), nats_url):
        for block in blocks:
            namespace: dict[str, object] = {}
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our README
            main = namespace["main"]
            await main(nats_url)  # type: ignore[operator]
    out = capsys.readouterr().out
    assert "validation_failed" in out
    assert "requested" in out
    assert "canceled" in out


def test_every_cli_command_the_readme_shows_exists():
    runner = CliRunner()
    shown = set()
    for block in _blocks("bash"):
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.strip().rstrip("\\"))
                if words[:1] == ["checkout-orchestrator"] and len(words) > 1:
                    shown.add(words[1])
    assert {"demo", "route", "status"} <= shown
    for command in shown:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
