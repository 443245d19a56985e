"""Option types shared by the commands: every number has a documented range (docs/cli.md)."""
from __future__ import annotations

import math

import click

from ..bounds import SEED_MAX, STEPS_MAX

DT_MAX = 3600.0  # seconds per step; beyond an hour a step is a unit mistake

SEED = click.IntRange(0, SEED_MAX)
STEPS = click.IntRange(1, STEPS_MAX)
SAMPLES = click.IntRange(min=1)


class Seconds(click.ParamType):
    """A finite number of seconds in (0, DT_MAX]."""

    name = "seconds"

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(x) or not 0 < x <= DT_MAX:
            self.fail(f"{value!r} is not in the range 0 < dt <= {DT_MAX:g} seconds", param, ctx)
        return x


DT = Seconds()
