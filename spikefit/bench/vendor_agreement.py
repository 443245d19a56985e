"""``spikefit bench vendor-agreement``: spikefit's verdict next to the vendor's own fit check.

Every registered vendor check (``register_vendor_checks``: Rockpool's Xylo mapper, Sinabs's Speck core
mapping, Akida's ``map(hw_only=True)``) brings a corpus of networks built around its chip's limits.
Each case runs through :func:`spikefit.verify` and through the vendor's tool, side by side. A case
agrees when both say "fits" or both say "does not fit" (spikefit refusing the graph counts as "does
not fit"). Cases where the vendor checks nothing, skips a documented rule or silently rescales carry
the corpus author's ``known_difference``: the table marks them and says why spikefit differs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..errors import SpikefitError


def _word(v: bool | None) -> str:
    return "-" if v is None else ("fits" if v else "no")


def run_agreement(targets: list[str] | None = None) -> dict:
    """Run every corpus; returns {"cases": [...], "summary": {target: {...}}}."""
    from ..plugins import get_target, registry
    from ..vendor import spikefit_verdict, vendor_verdict

    checks = registry("vendor_check")
    if not checks:
        from ..errors import PluginError

        raise PluginError("no vendor check is installed; install a chip SDK plugin, e.g. pip install -e "
                          "plugins/spikefit-xylo (make install does)")
    wanted = sorted(checks) if not targets else targets
    for t in wanted:
        if t not in checks:
            from ..vendor import get_vendor_check

            get_vendor_check(t)  # raises the one-line error naming what is installed
    cases, summary = [], {}
    for t in wanted:
        check, spec = checks[t], get_target(t)
        t0 = time.perf_counter()
        agree = differ = known = unchecked = 0
        for case in check.corpus():
            v = vendor_verdict(case.network, spec)
            fits, why = spikefit_verdict(case.network, spec)
            sf = bool(fits) if fits is not None else False
            if v.fits is None:
                status = "vendor checks nothing"
                unchecked += 1
            elif sf == v.fits:
                status = "agree"
                agree += 1
            elif case.known_difference:
                status = "known difference"
                known += 1
            else:
                status = "DISAGREE"
                differ += 1
            cases.append({"target": t, "tool": check.name, "case": case.name, "vendor": v.fits,
                          "vendor_message": v.message, "spikefit": fits, "spikefit_message": why,
                          "status": status, "note": case.known_difference})
        summary[t] = {"tool": check.name, "cases": agree + differ + known + unchecked, "agree": agree,
                      "disagree": differ, "known_difference": known, "vendor_checks_nothing": unchecked,
                      "seconds": round(time.perf_counter() - t0, 2)}
    return {"cases": cases, "summary": summary}


def table(result: dict) -> str:
    rows = [("target", "case", "vendor", "spikefit", "status", "note / vendor's words")]
    for c in result["cases"]:
        note = c["note"] if c["status"] != "agree" and c["note"] else c["vendor_message"]
        rows.append((c["target"], c["case"], _word(c["vendor"]), "refused" if c["spikefit"] is None else _word(c["spikefit"]),
                     c["status"], " ".join(str(note).split())[:110]))
    width = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(r[i].ljust(width[i]) for i in range(5)) + "  " + r[5] for r in rows]
    lines += ["", "target        tool       cases  agree  disagree  known difference  vendor checks nothing"]
    for t, s in result["summary"].items():
        lines.append(f"{t:<13} {s['tool']:<10} {s['cases']:>5}  {s['agree']:>5}  {s['disagree']:>8}  "
                     f"{s['known_difference']:>16}  {s['vendor_checks_nothing']:>21}")
    return "\n".join(lines)


@click.command("vendor-agreement")
@click.option("--target", "-t", "targets", multiple=True,
              help="Only this chip (repeatable); default: every chip with a vendor check installed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the result as JSON to this file.")
def vendor_agreement(targets: tuple[str, ...], as_json: bool, out: Path | None) -> None:
    """Run each vendor check's corpus through spikefit's verify and the vendor's own tool, side by side.
    Exit 0 when every case the vendor checks agrees (or is a documented known difference), else 1."""
    result = run_agreement(list(targets) or None)
    if out is not None:
        try:
            out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        except OSError as e:
            raise SpikefitError(f"cannot write {str(out)!r}: {e.strerror}; choose another --out") from None
    click.echo(json.dumps(result, indent=2) if as_json else table(result))
    raise SystemExit(0 if all(s["disagree"] == 0 for s in result["summary"].values()) else 1)
