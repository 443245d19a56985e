"""Seeded fuzzing of everything spikefit reads: target specs, NIR graphs, checkpoints and command
lines. Whatever the input, the answer is a result or a one-line SpikefitError, the command exits 0,
1 or 2 without a traceback, and it does so in bounded time. Generators are seeded: a failure names
its case and reproduces."""
from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from clitools import SPIKEFIT, invoke
from spikefit import checkpoint as ckpt
from spikefit.errors import SpikefitError
from spikefit.network import Dense, Input, Network, Neurons, Output
from spikefit.nir_io import nir_to_network, write_nir
from spikefit.spec import SCHEMA_KEYS, SECTIONS, load_target
from spikefit.trainer import load_checkpoint, load_network

CASE_S = 10.0  # no single case may take longer


def assert_contract(result, case) -> None:
    """Exit 0, 1 or 2; no traceback; an error is one line (plus any warnings)."""
    assert result.exit_code in (0, 1, 2), (case, result.exit_code, result.output[-2000:])
    assert result.exception is None or isinstance(result.exception, SystemExit), (case, repr(result.exception))
    assert "Traceback" not in result.output, (case, result.output[-2000:])
    if result.exit_code == 2:
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
        assert len(errors) == 1, (case, result.stderr)


class Clock:
    def __init__(self, case):
        self.case = case

    def __enter__(self):
        self.t0 = time.monotonic()

    def __exit__(self, *exc):
        took = time.monotonic() - self.t0
        assert took < CASE_S, f"{self.case} took {took:.1f} s"


# -- values ----------------------------------------------------------------------------------------
WEIRD_INTS = [0, -1, 1, 2, 7, 32, 33, 255, 2 ** 31, 2 ** 40, 2 ** 63 - 1, -(2 ** 63), 10 ** 30]


def toml_value(rng: random.Random, depth: int = 0) -> str:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return str(rng.choice(WEIRD_INTS))
    if kind == 1:
        return rng.choice(["1.5", "-0.0", "inf", "nan", "1e308", "-1e-308"])
    if kind == 2:
        return rng.choice(['"neuron"', '"core"', '"layer"', '"chip"', '"lif"', '"cuba-lif"', '""', '"\\u00e9"',
                           '"x" ', "'''multi\nline'''"])
    if kind == 3:
        return rng.choice(["true", "false"])
    if kind == 4:
        return "1979-05-27T07:32:00Z"
    if kind == 5:
        return '["' + '", "'.join(rng.sample(["lif", "if", "cuba-lif", "dense", "conv2d", "du", "bogus"], 2)) + '"]'
    if kind == 6:
        return "[" + ", ".join(toml_value(rng, depth + 1) for _ in range(rng.randrange(3))) + "]"
    if kind == 7:
        return "{ a = " + toml_value(rng, depth + 1) + " }"
    return "[" * (depth + 5) + "]" * (depth + 5)


def random_spec_text(rng: random.Random) -> str:
    lines = []
    if rng.random() < 0.9:
        lines.append("name = " + rng.choice(['"chip"', '"Chip X"', "3", '""', '"a.b-c_d"']))
    keys = [k for k in SCHEMA_KEYS if not k.startswith("energy.")] + ["limits.neuron_per_core", "limit.cores", "limits.fanin", "rules.xylo.x", "energy.pj",
                                "bogus", "neuron.models", "core.shared", "layers.kinds"]
    top = [k for k in keys if "." not in k]
    for key in rng.sample(top, rng.randrange(len(top) + 1)):
        lines.append(f"{key} = {toml_value(rng)}")
    sections: dict[str, list[str]] = {}
    for key in rng.sample(keys, rng.randrange(1, 12)):
        if "." in key:
            sec, leaf = key.split(".", 1)
            sections.setdefault(sec, []).append(f"{leaf} = {toml_value(rng)}")
    for sec, body in sections.items():
        lines.append(f"[{sec}]")
        lines += body
    text = "\n".join(lines) + "\n"
    if rng.random() < 0.1:  # structural damage
        cut = rng.randrange(len(text))
        text = text[:cut] + rng.choice(["", "[", "=", "\x00", "\"", "\n[[x]]\n"]) + text[cut:]
    return text


def test_fuzz_specs_in_process(tmp_path):
    rng = random.Random(11)
    outcomes = {"ok": 0, "error": 0}
    for i in range(300):
        path = tmp_path / f"s{i}.toml"
        path.write_text(random_spec_text(rng), encoding="utf-8")
        with Clock(f"spec {i}"):
            try:
                load_target(path)
                outcomes["ok"] += 1
            except SpikefitError as e:
                assert "\n" not in str(e), (i, str(e))
                outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 100, outcomes


def test_fuzz_specs_through_the_cli(tmp_path, plugin_env):
    rng = random.Random(12)
    folder = tmp_path / "specs"
    folder.mkdir()
    for i in range(25):
        path = folder / f"s{i}.toml"
        path.write_bytes(random_spec_text(rng).encode() if i % 5 else bytes(rng.randrange(256) for _ in range(200)))
        with Clock(f"targets check {i}"):
            assert_contract(invoke("targets", "check", path, *(["--json"] if i % 2 else [])), f"spec {i}")
    plugin_env(SPIKEFIT_TARGETS_PATH=str(folder))  # every broken file in the path at once
    for args in (["targets"], ["targets", "show", "loihi2"], ["plugins"]):
        r = invoke(*args)
        assert_contract(r, args)
        assert r.exit_code == 0, (args, r.output[-1000:])


# -- NIR graphs ------------------------------------------------------------------------------------
def param(rng: random.Random, n: int, positive: bool = True):
    roll = rng.random()
    if roll < 0.93:
        return np.full(n, rng.choice([1e-3, 2e-3, 1e-2, 0.5, 1.0, 1e3]) if positive else rng.choice([0.0, 0.1, -0.2]))
    return rng.choice([np.full(n, np.nan), np.full(n, np.inf), np.zeros(n), -np.ones(n), np.ones(n) * (1 + 1j),
                       np.ones(n + 1), np.array(["a"] * n), np.ones((n, 2))])


def random_graph(rng: random.Random):
    n_in = rng.choice([1, 3, 4])
    sizes = [n_in] + [rng.choice([0, 1, 2, 5]) or 1 for _ in range(rng.randrange(0, 3))]
    nodes = {"in": nir.Input({"input": np.array([n_in if rng.random() < 0.9 else rng.choice([0, -1])])})}
    chain = ["in"]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.choice([np.ones((b, a)) * 0.6, np.full((b, a), np.nan), np.ones((a, b)), np.ones((b, a)) * 1j,
                        np.ones((b, a)), np.ones((b, a, 1))]) if rng.random() < 0.1 else np.ones((b, a)) * 0.6
        nodes[f"w{i}"] = nir.Affine(weight=w, bias=param(rng, b, False)) if rng.random() < 0.3 else nir.Linear(weight=w)
        kind = rng.choice(["LIF", "IF", "CubaLIF"])
        if kind == "LIF":
            nodes[f"n{i}"] = nir.LIF(tau=param(rng, b), r=param(rng, b), v_leak=param(rng, b, False),
                                     v_threshold=param(rng, b))
        elif kind == "IF":
            nodes[f"n{i}"] = nir.IF(r=param(rng, b), v_threshold=param(rng, b))
        else:
            nodes[f"n{i}"] = nir.CubaLIF(tau_syn=param(rng, b), tau_mem=param(rng, b), r=param(rng, b),
                                         v_leak=param(rng, b, False), v_threshold=param(rng, b), w_in=param(rng, b))
        chain += [f"w{i}", f"n{i}"]
    if rng.random() < 0.85:
        nodes["out"] = nir.Output({"output": np.array([sizes[-1] if rng.random() < 0.85 else rng.choice([5, 0])])})
        chain.append("out")
    edges = list(zip(chain[:-1], chain[1:]))
    if rng.random() < 0.1 and len(chain) > 2:
        edges.append((chain[-1], rng.choice(chain)))  # a stray edge, maybe a cycle
    if rng.random() < 0.05:
        edges.append(("in", "nowhere"))
    meta = {}
    if rng.random() < 0.3:
        meta["spikefit"] = {rng.choice(["dt", "node_order", "network_metadata", "format"]):
                            rng.choice(["abc", -1.0, 0.0, 1e-3, "[not json", "[1]", '{"a": 1}', 7, np.nan])}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def test_fuzz_nir_graphs(tmp_path):
    from spikefit.plugins import get_target
    from spikefit.fitcheck import verify

    rng = random.Random(21)
    target = get_target("loihi2")
    built = accepted = 0
    for i in range(250):
        try:
            graph = random_graph(rng)
        except Exception:  # the nir library itself refused to build the node: not spikefit's input
            continue
        built += 1
        with Clock(f"graph {i}"):
            try:
                net = nir_to_network(graph)
            except SpikefitError as e:
                assert "\n" not in str(e), (i, str(e))
                continue
            accepted += 1
            assert net.populations() and net.outputs
            try:
                verify(net, target)
            except SpikefitError:
                pass
    assert built > 150 and 10 < accepted < built, (built, accepted)


def test_fuzz_nir_files_through_the_cli(tmp_path):
    rng = random.Random(22)
    x = tmp_path / "x.npy"
    done = 0
    for i in range(60):
        try:
            graph = random_graph(rng)
            nir.write(tmp_path / f"g{i}.nir", graph)
        except Exception:  # not writable by the nir library: not a file spikefit can be handed
            continue
        np.save(x, np.ones((3, 2, max(1, int(np.prod(graph.nodes["in"].input_type["input"])))), np.float32))
        command = [["verify", tmp_path / f"g{i}.nir", "--target", "loihi2", "--json"],
                   ["export", tmp_path / f"g{i}.nir", "-o", tmp_path / f"o{i}.nir"],
                   ["run", tmp_path / f"g{i}.nir", "--inputs", x]][i % 3]
        with Clock(f"nir file {i}"):
            r = invoke(*command)
        assert_contract(r, (i, command[0]))
        if "--json" in command:
            assert isinstance(json.loads(r.stdout), dict)
        done += 1
    assert done >= 30


# -- checkpoints -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from test_trainer import TINY, tiny_target
    from spikefit.trainer import FitConfig, fit

    out = tmp_path_factory.mktemp("fitted") / "fit"
    fit(None, "digits", tiny_target(), FitConfig(**{**TINY, "deploy": False}), out=out, progress=False)
    return out / "checkpoint.pt"


def _junk(rng: random.Random):
    return rng.choice([None, -5, 2 ** 62, "x", [], {}, [1, "a"], {"stages": "x"}, 1.5, True, torch.zeros(3),
                       torch.zeros(10 ** 4, dtype=torch.uint8), {"kind": "dense", "n_in": 10 ** 9, "n_out": 10 ** 9}])


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def test_fuzz_checkpoint_bytes(fitted, tmp_path):
    rng = random.Random(31)
    raw = bytearray(fitted.read_bytes())
    for i in range(40):
        data = bytearray(raw)
        if i % 3 == 0:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"c{i}.pt"
        path.write_bytes(bytes(data))
        with Clock(f"checkpoint bytes {i}"):
            try:
                load_network(path)  # a flipped byte that torch ignores (zip padding) leaves a valid file
            except SpikefitError as e:
                assert "\n" not in str(e)


def test_fuzz_checkpoint_structure(fitted, tmp_path):
    rng = random.Random(32)
    payload = ckpt.read(fitted)
    paths = [p for p in _paths(payload) if p]
    refused = 0
    for i in range(80):
        mutated = ckpt.read(fitted)
        path = rng.choice(paths)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = _junk(rng)
        file = tmp_path / f"s{i}.pt"
        ckpt.save(mutated, file)  # a valid checksum: only the structure is wrong
        with Clock(f"checkpoint structure {i} {path}"):
            for load in (load_network, load_checkpoint):
                try:
                    load(file)
                except SpikefitError as e:
                    assert "\n" not in str(e), (path, str(e))
                    refused += 1
    assert refused > 40
    for i in range(0, 80, 20):  # and through the commands
        assert_contract(invoke("verify", tmp_path / f"s{i}.pt", "--target", "loihi2"), i)
        assert_contract(invoke("run", tmp_path / f"s{i}.pt", "--dataset", "digits", "--samples", "3", "--steps", "3"), i)


# -- command lines ---------------------------------------------------------------------------------
def _cli_case(rng: random.Random, files: dict) -> list:
    values = ["-5", "0", "1", "3", "1e3", "nan", "inf", "", "abc", "9" * 30, "-0", "\u00e9", "4.5"]
    options = {
        "verify": ["--target", "--dt", "--json"],
        "run": ["--backend", "--dataset", "--samples", "--steps", "--seed", "--inputs", "--labels", "--dt", "--json",
                "--compare"],
        "export": ["--format", "--out", "--target", "--dt", "--force", "--json"],
        "fit": ["--target", "--target-file", "--dataset", "--out", "--seed", "--preset", "--epochs", "--steps",
                "--cat-mode", "--json", "--resume", "--force"],
        "targets": ["--json"],
    }
    command = rng.choice(list(options))
    args: list = [command]
    if command in ("verify", "run", "export"):
        args.append(rng.choice([files["model"], files["dir"], files["missing"], files["text"], "-", ""]))
    if command == "targets" and rng.random() < 0.6:
        args += [rng.choice(["show", "check", "bogus"]), rng.choice(["loihi2", "nope", files["text"], files["dir"]])]
    for opt in rng.sample(options[command], rng.randrange(len(options[command]) + 1)):
        if opt in ("--json", "--force", "--resume"):
            args.append(opt)
            continue
        pool = {"--target": ["loihi2", "truenorth", "nope", files["text"]], "--dataset": ["digits", "cifar", ""],
                "--backend": ["emulator", "nope", ""], "--compare": ["emulator,emulator", "emulator", ",,"],
                "--inputs": [files["x"], files["text"], files["missing"], files["empty"]],
                "--labels": [files["y"], files["yfloat"], files["text"]],
                "--out": [files["out"], files["under_file"], files["text"], "/proc/1/x", "n" * 300],
                "--target-file": [files["text"], files["missing"], files["dir"]],
                "--format": ["nir", "nope"], "--preset": ["demo", "nope"], "--cat-mode": ["hard", "x"],
                "--epochs": ["0,0,0,0", "-1", "a,b", "0,0,0,0,0"]}.get(opt, values)
        args += [opt, rng.choice(pool)]
    if command == "fit" and "--epochs" not in args:
        args += ["--epochs", "0,0,0,0"]  # never a long training
    if command == "run" and "--steps" not in args:
        args += ["--steps", "4"]
    if "--samples" not in args and command == "run":
        args += ["--samples", "8"]
    if rng.random() < 0.05:
        args.insert(rng.randrange(len(args) + 1), rng.choice(["--bogus", "--", "-x"]))
    return args


def test_fuzz_command_lines(tmp_path):
    rng = random.Random(41)
    rnd = np.random.default_rng(0)
    net = Network.sequential(Input("in", (64,)), Dense("fc", rnd.normal(0, 0.3, (10, 64))), Neurons("p", (10,), dv=0.1),
                             Output("o", (10,)))
    files = {"model": write_nir(net, tmp_path / "m.nir"), "dir": tmp_path, "missing": tmp_path / "nope.nir",
             "text": tmp_path / "t.toml", "x": tmp_path / "x.npy", "empty": tmp_path / "e.npy", "y": tmp_path / "y.npy",
             "yfloat": tmp_path / "yf.npy", "out": tmp_path / "out", "under_file": tmp_path / "t.toml" / "o"}
    files["text"].write_text('name = "tt"\n[limits]\nneurons = 50\n')
    np.save(files["x"], (rnd.random((4, 3, 64)) < 0.3).astype(np.float32))
    np.save(files["empty"], np.zeros((0, 64), np.float32))
    np.save(files["y"], np.array([1, 2, 3]))
    np.save(files["yfloat"], np.array([1.5, 2.0, 3.0]))
    codes = set()
    for i in range(120):
        args = _cli_case(rng, files)
        with Clock(f"cli {i}: {args}"):
            r = invoke(*args)
        assert_contract(r, args)
        if "--json" in args and "--" not in args and "--bogus" not in args and "-x" not in args:
            data = json.loads(r.stdout)  # --json: stdout is JSON whatever happened
            if r.exit_code:
                assert data["ok"] is False and data["exit_code"] == r.exit_code, (args, data)
        codes.add(r.exit_code)
    assert codes >= {0, 2}, codes


@pytest.mark.parametrize("args", [
    ["fit", "--seed", "-5", "--dataset", "digits", "--target", "loihi2", "--out", "o"],
    ["run", "nope.nir", "--dataset", "digits", "--json"],
    ["targets", "check", "/dev/zero"],
    ["verify", "--target"],
])
def test_real_processes_keep_the_contract(tmp_path, args):
    r = subprocess.run([str(SPIKEFIT), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("Error: ")
    if "--json" in args:
        assert json.loads(r.stdout) == {"ok": False, "error": r.stderr[len("Error: "):].strip(), "exit_code": 2}
