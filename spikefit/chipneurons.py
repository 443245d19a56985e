"""The chips' own neurons in integer arithmetic: what ``--target`` makes the emulator run.

A target whose ``[neuron] models`` names a chip model (:data:`spikefit.spec.CHIP_MODELS`) is emulated
with that chip's neuron and timing, read from the same integers the chip's rules and exporter use:

* ``xylo-lif`` (Xylo Audio 2, XyloSim's ``XyloIAFNeuron``): integers from
  :func:`spikefit.targets.xylo_audio2.read`. Each step: input events (at most 15 per channel) add
  ``w`` to the synaptic current, and the previous step's hidden spikes (at most 31 per neuron) add
  theirs through the recurrent and output matrices (every hidden -> hidden or hidden -> output layer
  delivers one step later, as the one recurrent pool does), saturating at 16 bits; the current decays
  by ``max(i >> dash_syn, 1)`` (``i >> dash_syn`` when negative) *before* it is integrated; the membrane
  decays the same way by ``dash_mem``, adds the current and the bias (16-bit saturation); while
  ``v >= threshold`` and fewer than 31 (hidden) or 1 (output) spikes: spike and subtract the threshold.
* ``speck-if`` (Speck 2f, sinabs's discretized ``IAFSqueeze`` with ``MultiSpike``): sinabs's own
  discretization (one factor per layer from the int8 weights and the 16-bit thresholds), then
  ``v += w . s + b``; ``floor(v / threshold)`` spikes where ``v > 0``; reset to 0 or subtract the
  threshold per spike (the target's ``reset``); ``v >= min_v_mem``.
* ``akida-act`` (Akida 1.0, ``Model.forward``): stateless; every step is one inference of the layer
  chain, ``clip(ceil((sum w.x - threshold) / act_step), 0, 2^act_bits - 1)`` with 1-bit activations
  and ``act_step`` 1, threshold ``floor((vth - bias) / scale)``: a spike where the integer sum exceeds
  the threshold.
* ``truenorth-lif``: a linear leak toward zero, ``v += a + bias; v -= sign(v) * min(|v|, leak)`` with
  ``leak = dv * vth``, spike at ``v > vth``, reset to 0 (float64; no vendor simulator to match).

Each ``run_*`` returns ``{population: (t, b, n) spike counts}`` (int16) for inputs (t, b, n_in).
Vendor packages are never imported here.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .errors import BackendError, SpikefitError
from .network import Conv2d, Dense, Flatten, Network, Neurons, Output, Pool2d

XYLO_STATE = (-(2 ** 15), 2 ** 15 - 1)
XYLO_MAX_INPUT_EVENTS = 15        # MAX_NUM_INP_SPIKES
XYLO_MAX_HIDDEN_SPIKES = 31       # MAX_NUM_SPIKES
XYLO_MAX_OUTPUT_SPIKES = 1        # MAX_NUM_OUT_SPIKES
SPECK_WEIGHT_BITS, SPECK_STATE_BITS = 8, 16   # sinabs discretize.py DYNAPCNN_*_PRECISION_BITS
# What the emulator of each chip neuron takes per input channel and step (spikefit.capabilities): Xylo up
# to 15 input events, Speck any number of events (its forward pass is linear in them), Akida's 1-bit input
# layer one spike. TrueNorth's axons carry spikes, but its emulator is float64 with no vendor simulator to
# match and integrates any input, as emulator-float does: a model fitted on currents runs there too.
CHIP_INPUTS = {"xylo-lif": ("counts", XYLO_MAX_INPUT_EVENTS), "speck-if": ("counts", None),
               "akida-act": ("spikes", None), "truenorth-lif": ("currents", None)}


def _counts(x, n_in: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise BackendError(f"inputs must be spikes of shape (t, b, n), got shape {tuple(x.shape)}")
    if x.shape[2] != n_in:
        raise BackendError(f"inputs have {x.shape[2]} channels per step but the network's input has {n_in}; "
                           "pass inputs that match the model")
    if x.size and (x.min() < 0 or np.any(x != np.rint(x))):
        raise BackendError(f"inputs must be spike counts (whole numbers >= 0); got values in "
                           f"[{float(x.min()):g}, {float(x.max()):g}]")
    return np.rint(x).astype(np.int64)


# -- Xylo --------------------------------------------------------------------------------------------

def _xylo_decay(x: torch.Tensor, dash: torch.Tensor) -> torch.Tensor:
    """XyloIAFNeuron's decay(): ``x >> dash``, and 1 where that is 0 and x > 0."""
    d = x >> dash
    return torch.where((d == 0) & (x > 0), torch.ones_like(d), d)


def _sat(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(*XYLO_STATE)


def xylo_plan(net: Network) -> dict:
    """Per population: threshold, bias, dashes, and the (source, integer matrix (n_src, n), delayed)
    connections it receives, from spikefit's reading of the network as Xylo's core."""
    from spikefit.targets.xylo_audio2 import dash, read

    for node in net.nodes.values():
        if isinstance(node, (Conv2d, Pool2d)):
            raise BackendError(f"layer {node.name!r} ({node.kind}): Xylo runs dense weights only; use Dense layers")
    if len(net.inputs) != 1:
        raise BackendError(f"network has {len(net.inputs)} inputs; Xylo takes one input layer")
    r = read(net)
    plan = {"input": net.inputs[0].name, "pops": []}
    for pop in r.hidden + r.output:
        conns = []
        for k in r.links:
            if pop not in k.targets:
                continue
            if k.matrix is None:
                raise BackendError(f"weight layer {k.conn.name!r} has no Xylo matrix (input -> hidden, hidden -> "
                                   f"hidden or hidden -> output); spikefit verify --target xylo-audio2 names the rule")
            if k.conn.name not in r.ints:
                raise BackendError(f"weights of layer {k.conn.name!r} are not whole multiples of "
                                   f"{r.off_grid[k.conn.name]:g}; quantize them (fit --target xylo-audio2)")
            src = k.sources[0]
            conns.append((src.name, torch.from_numpy(np.ascontiguousarray(r.ints[k.conn.name].T)),
                          k.matrix != "input"))
        out = pop in r.output
        thr = r.threshold(pop)
        bias = r.bias(pop)
        for what, val in (("threshold", np.array([thr])), ("bias", bias)):
            if val.size and (val.min() < XYLO_STATE[0] or val.max() > XYLO_STATE[1]):
                raise BackendError(f"population {pop.name!r}: {what} {int(val[np.argmax(np.abs(val))])} is outside "
                                   f"Xylo's int16; lower it or the weight scale")
        if thr <= 0:
            raise BackendError(f"population {pop.name!r}: threshold {thr} must be positive")
        plan["pops"].append({"name": pop.name, "size": pop.size, "conns": conns, "threshold": thr,
                             "bias": torch.from_numpy(bias.astype(np.int64)), "dash_mem": dash(pop.dv),
                             "dash_syn": dash(pop.du), "max": XYLO_MAX_OUTPUT_SPIKES if out else XYLO_MAX_HIDDEN_SPIKES})
    return plan


def run_xylo(net: Network, inputs) -> dict[str, np.ndarray]:
    plan = xylo_plan(net)
    x = _counts(inputs, net.inputs[0].size)
    if x.size and x.max() > XYLO_MAX_INPUT_EVENTS:
        raise BackendError(f"input event count {int(x.max())} exceeds Xylo's limit of {XYLO_MAX_INPUT_EVENTS} events "
                           f"per channel and step; split the events over more steps or clip them to "
                           f"{XYLO_MAX_INPUT_EVENTS}")
    x = torch.from_numpy(x)
    T, B, _ = x.shape
    pops = plan["pops"]
    isyn = {p["name"]: torch.zeros(B, p["size"], dtype=torch.int64) for p in pops}
    v = {p["name"]: torch.zeros(B, p["size"], dtype=torch.int64) for p in pops}
    prev = {p["name"]: torch.zeros(B, p["size"], dtype=torch.int64) for p in pops}
    out = {p["name"]: torch.zeros(T, B, p["size"], dtype=torch.int64) for p in pops}
    with torch.no_grad():
        for t in range(T):
            now = {}
            for p in pops:            # deliveries: this step's input events, the previous step's hidden spikes
                drive = sum(((prev[s] if delayed else x[t]).to(torch.float64) @ w.to(torch.float64)
                             for s, w, delayed in p["conns"]), torch.zeros(B, p["size"], dtype=torch.float64))
                i = _sat(isyn[p["name"]] + drive.to(torch.int64))
                i = i - _xylo_decay(i, torch.tensor(p["dash_syn"]))
                isyn[p["name"]] = i
                vm = v[p["name"]]
                dv = _sat(-_xylo_decay(vm, torch.tensor(p["dash_mem"])) + i)
                if bool(p["bias"].any()):
                    dv = _sat(dv + p["bias"])
                vm = _sat(vm + dv)
                n = torch.where(vm >= p["threshold"], torch.div(vm, p["threshold"], rounding_mode="floor"),
                                torch.zeros_like(vm)).clamp(max=p["max"])
                v[p["name"]] = vm - n * p["threshold"]
                now[p["name"]] = n
                out[p["name"]][t] = n
            prev = now
    return {k: o.numpy().astype(np.int16) for k, o in out.items()}


# -- Akida -------------------------------------------------------------------------------------------

def _akida_conv(x: torch.Tensor, k: torch.Tensor, la) -> torch.Tensor:
    """Akida's convolution: padding "same" is TensorFlow's (``(out - 1) * stride + k - in`` zeros in all,
    the odd one after), which equals spikefit's ``k // 2`` on both sides only at stride 1."""
    c = la.conn
    if la.padding != "same":
        return F.conv2d(x, k, stride=tuple(c.stride), padding=tuple(c.padding))
    pads = []
    for size, kk, s in zip(x.shape[2:], k.shape[2:], c.stride):
        total = max((math.ceil(size / s) - 1) * s + kk - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return F.conv2d(F.pad(x, (left, right, top, bottom)), k, stride=tuple(c.stride))


def run_akida(net: Network, inputs) -> dict[str, np.ndarray]:
    """Every step one stateless inference of Akida's layer chain (1-bit activations, act_step 1)."""
    from spikefit.targets.akida import integer_weights, runnable_layers

    layers = runnable_layers(net, "akida-act")
    ints = [integer_weights(la.conn) for la in layers]
    x = _counts(inputs, net.inputs[0].size)
    T, B, n = x.shape
    h = torch.from_numpy((x != 0).reshape(T * B, n).astype(np.float64))
    out = {}
    for la, (k, scale) in zip(layers, ints):
        kt = torch.from_numpy(k.astype(np.float64))
        if isinstance(la.conn, Conv2d):
            a = _akida_conv(h.reshape(T * B, *la.conn.input_shape), kt, la).reshape(T * B, -1)
        else:
            a = h.reshape(T * B, -1) @ kt.T
        if la.post is None:
            h = a
            continue
        bias = la.post.bias.reshape(la.units, -1).mean(axis=1)
        if getattr(la.conn, "bias", None) is not None:
            bias = bias + la.conn.bias
        thr = np.clip(np.floor((la.post.vth - bias) / scale), -(2 ** 31), 2 ** 31 - 1)
        per = a.shape[1] // la.units
        thr = torch.from_numpy(np.repeat(thr, per).astype(np.float64))
        # clip(ceil((sum - threshold) / act_step), 0, 2**act_bits - 1), act_step 1, act_bits 1
        act = torch.clamp(torch.ceil(a - thr), 0, 1)
        out[la.post.name] = act.reshape(T, B, -1).numpy().astype(np.int16)
        h = act
    return out


# -- Speck -------------------------------------------------------------------------------------------

def _sinabs_scale(obj: torch.Tensor, bits: int) -> float:
    """sinabs discretize.determine_discretization_scale, in float32 as sinabs computes it."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    mn, mx = torch.min(obj), torch.max(obj)
    if abs(mn) <= abs(mx) * abs(lo / hi):
        return abs(hi / mx)
    return abs(lo / mn)


def _speck_chain(net: Network) -> list:
    """The network as Speck layers: [(conn, pooled-before factor, population)], a chain from the input."""
    if len(net.inputs) != 1:
        raise BackendError(f"network has {len(net.inputs)} inputs; Speck takes one")
    if net.back_edges():
        raise BackendError("the network is recurrent; Speck's layers are feed-forward")
    chain, node = [], net.inputs[0].name
    while True:
        succ = [s for s in net.successors(node) if not isinstance(net.nodes[s], Output)]
        if not succ:
            return chain
        if len(succ) != 1:
            raise BackendError(f"node {node!r} feeds {len(succ)} layers; the speck-if emulator runs a chain of layers")
        node = succ[0]
        chain.append(net.nodes[node])


def speck_plan(net: Network) -> list[dict]:
    """Per population (in order): the pooling before its layer, the layer's discretized integer weights,
    bias, threshold and min_v_mem, exactly as sinabs's DynapcnnNetwork(discretize=True) computes them."""
    from spikefit.synapses import grid_step

    layers, pools = [], []
    nodes = _speck_chain(net)
    conn = None
    for node in nodes:
        if isinstance(node, Pool2d):
            if any(node.padding):
                raise BackendError(f"pooling {node.name!r} pads its input; Speck pools without padding")
            if conn is not None:
                raise BackendError(f"pooling {node.name!r} sits between a weight layer and its neurons")
            pools.append(node)
        elif isinstance(node, Flatten):
            continue
        elif isinstance(node, (Dense, Conv2d)):
            if conn is not None:
                raise BackendError(f"layer {node.name!r} follows layer {conn.name!r} with no neurons between them")
            conn = node
        elif isinstance(node, Neurons):
            if conn is None:
                raise BackendError(f"population {node.name!r} is fed by no weight layer")
            if node.model != "if":
                raise BackendError(f"population {node.name!r} leaks (du {node.du:g}, dv {node.dv:g}); Speck runs "
                                   f"integrate-and-fire neurons only")
            factor = 1.0
            for p in pools:
                if p.kind_ == "avg":
                    factor /= p.kernel[0] * p.kernel[1]
            w = conn.dense_weight() if isinstance(conn, Dense) else conn.weight
            b = np.zeros(conn.weight.shape[0]) if conn.bias is None else conn.bias.copy()
            pb = node.bias.reshape(node.shape[0], -1)
            if np.any(pb != pb[:, :1]):
                raise BackendError(f"population {node.name!r} has a bias that differs within a channel; Speck has "
                                   "one bias per channel")
            b = b + pb[:, 0]
            has_bias = conn.bias is not None or bool(np.any(pb))
            # the grid sinabs is shown (spikefit_speck.convert.grid): Quantization scale, else the values' step
            if conn.quant is not None:
                step = float(conn.quant.scale) * factor
            else:
                vals = np.concatenate([np.asarray(w, dtype=np.float64).ravel(), b if has_bias else []])
                vals = vals[vals != 0]
                g = grid_step(vals) if vals.size else None
                step = None if g is None else float(g) * factor
            thr = float(node.vth) if step is None else (math.floor(node.vth / step + 1e-9) + 1) * step
            min_v = -(2.0 ** 15) if step is None else -float(2 ** 15) * step
            wt = torch.as_tensor(np.asarray(w), dtype=torch.float32)
            if factor != 1.0:
                wt = wt * factor
            bt = torch.as_tensor(b if has_bias else np.zeros(conn.weight.shape[0]), dtype=torch.float32)
            if has_bias and factor != 1.0:
                bt = bt * factor
            thresholds = torch.tensor((min_v, thr))
            scaling = min(_sinabs_scale(wt, SPECK_WEIGHT_BITS), _sinabs_scale(bt, SPECK_WEIGHT_BITS),
                          _sinabs_scale(thresholds, SPECK_STATE_BITS))
            wq = torch.round(wt * scaling).int().double()
            bq = torch.round(bt * scaling).int().double()
            mv, th = torch.round(thresholds * scaling).int().double()
            if not th > 0:
                raise BackendError(f"population {node.name!r}: its threshold discretizes to {int(th)} (weights off any "
                                   f"grid are scaled by {float(scaling):g}); quantize the weights (fit --target speck2f)")
            layers.append({"name": node.name, "conn": conn, "pools": pools, "w": wq, "b": bq, "threshold": th,
                           "min_v": mv, "shape": node.shape})
            conn, pools = None, []
    if not layers:
        raise BackendError("the network has no neuron population; Speck runs layers of neurons")
    return layers


def _pool(h: torch.Tensor, pools, shape) -> tuple[torch.Tensor, tuple]:
    for p in pools:
        h = F.avg_pool2d(h.reshape(h.shape[0], *shape), p.kernel, p.stride) * (p.kernel[0] * p.kernel[1])
        shape = tuple(h.shape[1:])
        h = h.reshape(h.shape[0], -1)
    return h, shape


def run_speck(net: Network, inputs, reset: str = "zero") -> dict[str, np.ndarray]:
    if reset not in ("zero", "subtract"):
        raise BackendError(f"reset {reset!r} is not one of zero, subtract")
    plan = speck_plan(net)
    inp = net.inputs[0]
    x = _counts(inputs, inp.size)
    T, B, n = x.shape
    h = torch.from_numpy(x.astype(np.float64)).reshape(T, B, n)
    shape = tuple(inp.shape) if len(inp.shape) == 3 else (inp.size, 1, 1)
    out = {}
    for la in plan:
        flat, shape = _pool(h.reshape(T * B, -1), la["pools"], shape)
        c = la["conn"]
        if isinstance(c, Conv2d):
            a = F.conv2d(flat.reshape(T * B, *shape), la["w"], la["b"], stride=tuple(c.stride),
                         padding=tuple(c.padding)).reshape(T, B, -1)
        else:
            a = (flat @ la["w"].T + la["b"]).reshape(T, B, -1)
        v = torch.zeros(B, a.shape[2], dtype=torch.float64)
        s = torch.zeros_like(a)
        th = la["threshold"]
        for t in range(T):
            v = v + a[t]
            k = torch.where(v > 0, torch.div(v, th, rounding_mode="trunc"), torch.zeros_like(v))
            v = v * (k == 0) if reset == "zero" else v - k * th
            v = torch.clamp(v, min=float(la["min_v"]))
            s[t] = k
        out[la["name"]] = s.numpy().astype(np.int16)
        h = s
        shape = tuple(la["shape"]) if len(la["shape"]) == 3 else (int(np.prod(la["shape"])), 1, 1)
    return out


# -- TrueNorth -----------------------------------------------------------------------------------------

def run_truenorth(net: Network, inputs) -> dict[str, np.ndarray]:
    """Linear leak toward zero (``leak = dv * vth`` per step), spike at ``v > vth``, reset to 0; float64."""
    from .emulator import float_plan

    name, pops = float_plan(net)
    x = torch.from_numpy(np.asarray(inputs, dtype=np.float64))
    if x.ndim != 3 or x.shape[2] != net.inputs[0].size:
        raise BackendError(f"inputs must be spikes (t, b, {net.inputs[0].size}), got shape {tuple(x.shape)}")
    T, B, _ = x.shape
    spikes = {name: x}
    state = {p.name: torch.zeros(B, p.size, dtype=torch.float64) for p in pops}
    for p in pops:
        spikes[p.name] = torch.zeros(T, B, p.size, dtype=torch.float64)
    for t in range(T):
        for p in pops:
            a = torch.zeros(B, p.size, dtype=torch.float64)
            for c in p.conns:          # a recurrent connection delivers the previous step's spikes
                if c.recurrent:
                    src = spikes[c.source][t - 1] if t > 0 else torch.zeros_like(spikes[c.source][0])
                else:
                    src = spikes[c.source][t]
                a = a + c.apply(src)
            v = state[p.name] + a + p.params.bias
            leak = p.params.dv * p.params.vth
            v = v - torch.sign(v) * torch.clamp(v.abs(), max=leak)
            s = v > p.params.vth
            state[p.name] = v.masked_fill(s, 0.0)
            spikes[p.name][t] = s.to(torch.float64)
    return {p.name: spikes[p.name].numpy().astype(np.int16) for p in pops}


def run_chip(model: str, net: Network, inputs, reset: str = "zero") -> dict[str, np.ndarray]:
    """Run ``net`` with chip neuron ``model`` (a key of spikefit.spec.CHIP_MODELS)."""
    try:
        if model == "xylo-lif":
            return run_xylo(net, inputs)
        if model == "speck-if":
            return run_speck(net, inputs, reset)
        if model == "akida-act":
            return run_akida(net, inputs)
        if model == "truenorth-lif":
            return run_truenorth(net, inputs)
    except BackendError:
        raise
    except SpikefitError as e:
        raise BackendError(str(e)) from None
    raise BackendError(f"unknown chip neuron model {model!r}; use xylo-lif, speck-if, akida-act or truenorth-lif")


__all__ = ["run_chip", "run_xylo", "run_speck", "run_akida", "run_truenorth", "xylo_plan", "speck_plan"]
