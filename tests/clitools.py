"""Helpers shared by the CLI tests: run the click app in-process, check one-line errors."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from spikefit.cli import cli

SPIKEFIT = Path(sys.executable).parent / "spikefit"  # the installed console script, for subprocess runs


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, pattern: str) -> None:
    """Exit 2, nothing on stdout, exactly one 'Error: ...' line on stderr and no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    assert re.search(pattern, lines[0]), lines[0]
    assert result.stdout == ""
