"""``spikefit bench train``: training-step speed, side by side in one run, on every device asked for.

For each workload (:mod:`spikefit.bench.train_models`) and device it times, on the same network,
data, batch and T: spikefit's float step, its CAT step (M = 4 per layer, hard), its CAT + FSC step
(90 % of the synapses pruned by FSC: masked weights), snnTorch's float step and SpikingJelly's
(each where installed), spikefit's float and CAT steps under bfloat16 autocast (``-bf16``, GPUs only)
and FSC's Fisher scoring (samples per second). Each figure is the median of
``--reps`` timed steps after ``--warmup`` untimed ones, with the device synchronised around each
step. ``--processes 1,2`` adds data-parallel fits of the conv network (:mod:`spikefit.bench.ddp_fit`).
The targets of docs/training.md are checked on what was measured and printed with the figures.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from functools import partial
from pathlib import Path

import click
import torch

from .. import cat as C
from .. import devices, fsc
from ..errors import SpikefitError
from ..nn import count_loss
from ..training.loop import autocast
from . import train_models as W

# the peers right after spikefit's float step: a run cut short by a time limit has the side-by-side rows first
IMPLS = ("spikefit-float", "snntorch-float", "spikingjelly-float", "spikefit-cat", "spikefit-cat-fsc",
         "spikefit-float-bf16", "spikefit-cat-bf16")   # -bf16: the same step under bfloat16 autocast
DEFAULT_WORKLOADS = "mlp-256,mlp-1024,mlp-4096,conv,lif-512,lif-4096,lif-16384"
FISHER_SAMPLES = 64
SPARSITY = 0.9


class BenchTrainError(SpikefitError, ValueError):
    """A bench train option that names no workload, device or implementation."""


def parse_workload(name: str) -> W.Workload:
    kind, _, size = name.partition("-")
    try:
        if kind == "mlp" and size:
            return W.mlp(int(size))
        if kind == "lif" and size:
            return W.lif(int(size))
        if kind == "conv":
            return W.conv(int(size)) if size else W.conv()
    except ValueError:
        pass
    raise BenchTrainError(f"workload {name!r} is not one of mlp-WIDTH, lif-N, conv, conv-SIZE (e.g. {DEFAULT_WORKLOADS})")


def parse_devices(text: str) -> list[torch.device]:
    """``all`` (the CPU and every visible GPU) or a comma list of --device values."""
    if text == "all":
        out = [torch.device("cpu")]
        if torch.cuda.is_available():
            out += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return out
    return [devices.resolve(t) for t in text.split(",") if t]


def inputs(w: W.Workload, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded inputs (t, b, *shape) and labels: sparse spikes, or currents for lif-N."""
    g = torch.Generator().manual_seed(seed)
    shape = (w.steps, w.batch, *w.input_shape)
    if w.kind == "lif":
        x = torch.randn(shape, generator=g)
    else:
        x = (torch.rand(shape, generator=g) < (0.05 if w.kind == "conv" else 0.3)).float()
    return x, torch.randint(0, w.classes, (w.batch,), generator=g)


def build(impl: str, w: W.Workload, x: torch.Tensor, y: torch.Tensor, device: torch.device):
    """(module to call, model whose masks to re-apply or None), or None when the peer is missing."""
    model = W.spikefit_model(w)
    impl = impl.removesuffix("-bf16")
    if impl.startswith("spikefit"):
        if impl != "spikefit-float":
            C.attach_cat(model, C.CatSpec(4, "layer", 8, "layer", "hard", True))
        if impl == "spikefit-cat-fsc":
            _, synapse = fsc.fisher_scores(model, x[:, :FISHER_SAMPLES], y[:FISHER_SAMPLES], 8.0 / w.steps,
                                           batch_size=16, device=device)
            fsc.prune_to_sparsity(model, synapse, SPARSITY)
        return model.to(device), model
    net = (W.snntorch_model if impl == "snntorch-float" else W.spikingjelly_model)(model, w.dv)
    return None if net is None else (net.to(device), None)


def step_fn(net, model, w: W.Workload, x, y, precision: str = "fp32"):
    params = [p for p in net.parameters() if p.requires_grad]
    amp = partial(autocast, x.device, precision)
    if not w.full_step:  # forward + backward of the spikes only (the kernel benchmark)
        def step():
            for p in params:
                p.grad = None
            with amp():
                s = net(x).sum()
            s.backward()
        return step
    opt = torch.optim.Adam(params, lr=1e-3)
    scale = 8.0 / w.steps

    def step():
        with amp():
            loss = count_loss(net(x), y, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if model is not None:
            model.apply_masks()
    return step


def timed(step, device: torch.device, warmup: int, reps: int) -> float:
    """Median seconds of ``reps`` calls after ``warmup`` calls, synchronised around each."""
    for _ in range(warmup):
        step()
    devices.synchronize(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        devices.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fisher_rate(w: W.Workload, x, y, device: torch.device) -> float:
    """Samples per second of FSC's Fisher scores (per-neuron and per-synapse) on the workload."""
    model = W.spikefit_model(w)
    C.attach_cat(model, C.CatSpec(4, "layer", 8, "layer", "hard", True))
    n = min(FISHER_SAMPLES, x.shape[1])
    fsc.fisher_scores(model, x[:, :n], y[:n], 8.0 / w.steps, batch_size=16, device=device)  # warm-up
    devices.synchronize(device)
    t0 = time.perf_counter()
    fsc.fisher_scores(model, x[:, :n], y[:n], 8.0 / w.steps, batch_size=16, device=device)
    devices.synchronize(device)
    return n / (time.perf_counter() - t0)


def measure(workloads: list[W.Workload], devs: list[torch.device], impls=IMPLS, warmup: int = 3, reps: int = 10,
            fisher: bool = True, log=print) -> list[dict]:
    rows = []
    for w in workloads:
        x_cpu, y_cpu = inputs(w)
        if w.kind != "lif":  # Fisher inputs: the batch repeated to FISHER_SAMPLES samples
            reps_n = -(-FISHER_SAMPLES // w.batch)
            xf, yf = x_cpu.repeat(1, reps_n, *[1] * (x_cpu.dim() - 2)), y_cpu.repeat(reps_n)
        for dev in devs:
            x, y = x_cpu.to(dev), y_cpu.to(dev)
            for impl in impls:
                if impl == "spikefit-cat-fsc" and w.kind == "lif" or impl.endswith("-bf16") and dev.type == "cpu":
                    continue  # one layer, no labels: FSC has nothing to rank by
                built = build(impl, w, xf if impl == "spikefit-cat-fsc" else x_cpu,
                              yf if impl == "spikefit-cat-fsc" else y_cpu, dev)
                if built is None:
                    log(f"  {w.name:10s} {str(dev):7s} {impl:20s} not installed")
                    continue
                net, model = built
                try:
                    sec = timed(step_fn(net, model, w, x, y, "bf16" if impl.endswith("-bf16") else "fp32"),
                                dev, warmup, reps)
                except torch.OutOfMemoryError:
                    log(f"  {w.name:10s} {str(dev):7s} {impl:20s} out of memory")
                    torch.cuda.empty_cache()
                    continue
                row = {"workload": w.name, "device": str(dev), "impl": impl, "ms": sec * 1e3,
                       "samples_per_s": w.batch / sec, "batch": w.batch, "steps": w.steps,
                       "step": "train" if w.full_step else "forward+backward"}
                rows.append(row)
                log(f"  {w.name:10s} {str(dev):7s} {impl:20s} {sec * 1e3:10.2f} ms  {w.batch / sec:12.1f} samples/s")
                del net, model
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            if fisher and w.kind != "lif":
                rate = fisher_rate(w, xf, yf, dev)
                rows.append({"workload": w.name, "device": str(dev), "impl": "fsc-fisher", "ms": None,
                             "samples_per_s": rate, "batch": FISHER_SAMPLES, "steps": w.steps, "step": "fisher"})
                log(f"  {w.name:10s} {str(dev):7s} {'fsc-fisher':20s} {'':>13s}  {rate:12.1f} samples/s")
    return rows


def _find(rows, workload, device, impl):
    for r in rows:
        if r["workload"] == workload and r["device"] == device and r["impl"] == impl:
            return r
    return None


def targets(rows: list[dict]) -> list[dict]:
    """The issue's speed targets, on what was measured (a target whose rows are missing is skipped)."""
    out = []

    def claim(name, value, bound, higher):
        out.append({"target": name, "value": round(value, 3), "bound": bound,
                    "met": value >= bound if higher else value <= bound})

    gpus = sorted({r["device"] for r in rows if r["device"].startswith("cuda")})
    for gpu in gpus:
        for n in (4096, 16384):
            a, b = _find(rows, f"lif-{n}", gpu, "spikefit-float"), _find(rows, f"lif-{n}", gpu, "spikingjelly-float")
            if a and b:
                claim(f"lif-{n} on {gpu}: spikefit float / SpikingJelly (<= 1.5)", a["ms"] / b["ms"], 1.5, False)
        for wl in sorted({r["workload"] for r in rows}):
            f, c = _find(rows, wl, gpu, "spikefit-float"), _find(rows, wl, gpu, "spikefit-cat")
            if f and c and wl.startswith("lif"):
                claim(f"{wl} on {gpu}: CAT / float step (<= 1.3)", c["ms"] / f["ms"], 1.3, False)
        for wl in ("mlp-4096", "conv"):
            f, s = _find(rows, wl, gpu, "spikefit-float"), _find(rows, wl, gpu, "snntorch-float")
            if f and s:
                claim(f"{wl} on {gpu}: spikefit float / snnTorch float (<= 0.5)", f["ms"] / s["ms"], 0.5, False)
            g, c = _find(rows, wl, gpu, "spikefit-float"), _find(rows, wl, "cpu", "spikefit-float")
            if g and c:
                claim(f"{wl}: {gpu} / {os.cpu_count()} CPU cores, samples/s (>= 10)",
                      g["samples_per_s"] / c["samples_per_s"], 10.0, True)
    return out


def table(rows: list[dict]) -> str:
    lines = ["| workload | device | implementation | step | ms / step | samples / s |", "|---|---|---|---|---:|---:|"]
    for r in rows:
        ms = "-" if r["ms"] is None else f"{r['ms']:.2f}"
        lines.append(f"| {r['workload']} | {r['device']} | {r['impl']} | {r['step']} | {ms} | {r['samples_per_s']:,.0f} |")
    return "\n".join(lines)


def environment() -> dict:
    import platform

    env = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
           "torch_threads": torch.get_num_threads(),
           "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
           if torch.cuda.is_available() else []}
    for lib in ("snntorch", "spikingjelly", "triton"):
        try:
            from importlib.metadata import version

            env[lib] = version(lib)
        except Exception:
            env[lib] = None
    return env


@click.command("train")
@click.option("--device", "device_text", default="all", show_default=True,
              help="Devices to time: all (the CPU and every visible GPU) or a comma list of cpu, cuda, cuda:N.")
@click.option("--workloads", default=DEFAULT_WORKLOADS, show_default=True,
              help="Comma list of mlp-WIDTH, conv, conv-SIZE, lif-N.")
@click.option("--cpu-workloads", default="mlp-256,mlp-1024,mlp-4096,conv", show_default=True,
              help="The workloads the CPU runs when GPUs are timed too (a lif-N step takes seconds on CPUs).")
@click.option("--impls", default=",".join(IMPLS), show_default=True, help="Implementations to time.")
@click.option("--warmup", type=click.IntRange(0, 100), default=3, show_default=True)
@click.option("--reps", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--processes", default="", help="Also run data-parallel fits of the conv network on these process "
              "counts (e.g. 1,2): samples/s and accuracy after the same epochs.")
@click.option("--ddp-size", type=click.IntRange(16, 128), default=128, show_default=True,
              help="Event-frame size of the data-parallel fits (128: the conv workload).")
@click.option("--ddp-epochs", type=click.IntRange(1, 100), default=8, show_default=True)
@click.option("--ddp-limit", type=click.IntRange(min=16), default=None, help="Training samples of those fits.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write train.json and train.md here.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def train(device_text, workloads, cpu_workloads, impls, warmup, reps, processes, ddp_size, ddp_epochs, ddp_limit, out, as_json):
    """Training-step speed: spikefit float / CAT / CAT+FSC beside snnTorch and SpikingJelly, per device."""
    wls = [parse_workload(t.strip()) for t in workloads.split(",") if t.strip()]
    chosen = tuple(t.strip() for t in impls.split(",") if t.strip())
    bad = [i for i in chosen if i not in IMPLS]
    if bad:
        raise BenchTrainError(f"implementation {bad[0]!r} is not one of {', '.join(IMPLS)}")
    devs = parse_devices(device_text)
    procs = [int(p) for p in processes.split(",") if p.strip()] if processes else []
    if any(p < 1 for p in procs):
        raise BenchTrainError(f"--processes {processes!r} must be positive process counts, e.g. 1,2")
    log = (lambda *_: None) if as_json else print
    log(f"spikefit bench train: {', '.join(w.name for w in wls)} on {', '.join(map(str, devs))}")
    only_cpu = devs == [torch.device("cpu")]
    cpu_names = {w.name for w in wls} if only_cpu else {t.strip() for t in cpu_workloads.split(",") if t.strip()}
    rows = []
    command = "spikefit bench train " + " ".join(_command(device_text, workloads, impls, warmup, reps, processes,
                                                          ddp_size, ddp_epochs, ddp_limit))
    for w in wls:
        for dev in devs:
            if dev.type == "cpu" and w.name not in cpu_names:
                continue
            rows += measure([w], [dev], chosen, warmup, reps, log=log)
            if out is not None:   # after every workload: a run stopped by a time limit keeps what it measured
                write(out, _report(rows, [], None, targets(rows), command, partial=True))
    ddp, ddp_error = [], None
    if procs:
        from .ddp_fit import run_counts

        try:
            ddp = run_counts(procs, devs[-1], ddp_size, ddp_epochs, ddp_limit, log=log)
        except SpikefitError as e:   # the step figures above still stand; the report says what failed
            ddp_error = str(e)
            log(f"  data-parallel fits failed: {ddp_error}")
    claims = targets(rows)
    if ddp and len(ddp) > 1:
        base = ddp[0]
        for r in ddp[1:]:
            speed = r["samples_per_s"] / base["samples_per_s"]
            claims.append({"target": f"conv fit, {r['processes']} vs {base['processes']} processes on {r['device']}: "
                                     "samples/s (>= 1.7)", "value": round(speed, 3), "bound": 1.7, "met": speed >= 1.7})
            gap = abs(r["accuracy"] - base["accuracy"]) * 100
            claims.append({"target": f"conv fit, {r['processes']} vs {base['processes']} processes: accuracy gap pp "
                                     "(<= 1)", "value": round(gap, 2), "bound": 1.0, "met": gap <= 1.0})
    report = _report(rows, ddp, ddp_error, claims, command)
    if out is not None:
        write(out, report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo("\n" + markdown(report))


def _report(rows, ddp, ddp_error, claims, command, partial: bool = False) -> dict:
    return {"rows": rows, "ddp": ddp, "ddp_error": ddp_error, "targets": claims, "environment": environment(),
            "command": command, "partial": partial}


def write(out: Path, report: dict) -> None:
    """train.json and train.md in ``out``, each replaced whole (a reader never sees half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.json", json.dumps(report, indent=2) + "\n"), ("train.md", markdown(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)


def _command(device_text, workloads, impls, warmup, reps, processes, ddp_size, ddp_epochs, ddp_limit) -> list[str]:
    parts = [f"--device {device_text}", f"--workloads {workloads}", f"--warmup {warmup}", f"--reps {reps}"]
    if impls != ",".join(IMPLS):
        parts.append(f"--impls {impls}")
    if processes:
        parts += [f"--processes {processes}", f"--ddp-size {ddp_size}", f"--ddp-epochs {ddp_epochs}"]
        if ddp_limit:
            parts.append(f"--ddp-limit {ddp_limit}")
    return parts


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"`{report['command']}`", ""]
    if report.get("partial"):
        lines += ["Partial: the run has not finished (or was stopped); the rows are those measured so far.", ""]
    lines += [f"Python {env['python']}, torch {env['torch']}, {env['cpus']} CPUs ({env['torch_threads']} torch threads), "
              f"GPUs: {', '.join(env['gpus']) or 'none'}; snnTorch {env['snntorch']}, "
              f"SpikingJelly {env['spikingjelly']}, Triton {env['triton']}.", "", table(report["rows"])]
    if report["ddp"]:
        lines += ["", "| data-parallel conv fit | device | processes | epochs | samples / s | test accuracy |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in report["ddp"]:
            lines.append(f"| {r['size']}x{r['size']} event digits | {r['device']} | {r['processes']} | {r['epochs']} | "
                         f"{r['samples_per_s']:,.1f} | {r['accuracy'] * 100:.2f} % |")
    if report.get("ddp_error"):
        lines += ["", f"Data-parallel fits failed: {report['ddp_error']}"]
    if report["targets"]:
        lines += ["", "| target | measured | bound | met |", "|---|---:|---:|---|"]
        for c in report["targets"]:
            lines.append(f"| {c['target']} | {c['value']} | {c['bound']} | {'yes' if c['met'] else 'MISSED'} |")
    return "\n".join(lines) + "\n"
