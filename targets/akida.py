"""Akida AKD1000's rules that the TOML schema cannot say: spikefit's own reading of BrainChip's
``akida`` 2.19.3 mapper (``Model.map(AKD1000(), hw_only=True)``), measured by mapping networks built
around each limit (docs/akida.md lists how). No vendor package is imported here; the vendor-agreement
benchmark holds these rules against ``akida`` itself.

How a spikefit network reads as Akida layers (:func:`akida_layers`, shared with the converter of the
``spikefit-akida`` plugin): one chain Input -> connection -> [population] -> [pooling] -> ... ; each
connection and the population after it is one Akida layer (the population is its activation). A
Conv2d on an input of 1 or 3 channels is the ``InputConvolutional`` (8-bit weights, run on the
host-side HRC, no neural processor); every other Conv2d is a ``Convolutional``, every Dense a
``FullyConnected``. Akida's (x, y, c) is spikefit's (h, w, c). An average pooling after a convolution
is that layer's pooling (Akida has global average pooling only); a Flatten is implicit.

Integer weights (:func:`integer_weights`, also shared with the converter): a connection's weights are
``scale * k`` with integers ``k``; ``scale`` is the connection's Quantization scale, else the coarsest
grid of its non-zero values (spikefit.synapses.grid_step, as verify measures ``weight_bits``). A layer
stores ``k`` in the narrowest Akida width that holds them: 1 bit {0, 1}, 2 bits [-1, 1], 4 bits
[-7, 7] and, for the InputConvolutional only, 8 bits [-128, 127].

Neural processors (NPs): AKD1000 has 78; 18 of them can be an FNP3 and 4 an FNP2, every one a CNP.
A FullyConnected takes one FNP: an FNP3 when ``units * (WF[bits] * ceil(inputs / 32) + 4) <= 10752``
(its on-chip weight memory), else an FNP2 (weights in external memory); at most 4 FNP2s. A
Convolutional takes ``spatial_split * ceil(filters / per_np)`` CNPs: its input map is cut in chunks
of at most 32 rows (x) and 256 columns (y), fewer when a chunk (with the kernel's overlap) would not
fit a CNP's 344,064-entry input memory (:func:`spatial_split`), and ``per_np`` is how many filters of
``c`` input channels one CNP's filter memory holds::

    per_np = min(504, FILTERS_MAX, 8 * floor(FILTERS_PER_ROW[bits][k] * floor(FILTER_ROWS[bits] / c) / 8))

(0: the filter does not fit in a CNP). The mapper gives convolutions the NPs that cannot be FNPs
first, so the network fits when the FNP2 layers number <= 4, the FullyConnected layers <= 22 and all
NPs <= 78. Every formula was fitted to the mapper's own ``layer.mapping.nps`` and checked on held-out
shapes (1,806 filter-memory points, 27 FNP3 shapes, 277 random convolutions; docs/akida.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from spikefit.errors import ModelError
from spikefit.network import Conv2d, Dense, Flatten, Input, Network, Neurons, Output, Pool2d
from spikefit.rules import Rule, RuleSet
from spikefit.synapses import REL_TOL, grid_step

NPS, FNP3, FNP2 = 78, 18, 4                   # akida.AKD1000().mesh.nps and their NP.Type lists
FC_MAX_INPUTS = 57334                        # "Input dimensions are too large to fit in a FNP"
FC_MAX_UNITS = 2 ** 17 - 1                   # units are written into a 17-bit field
MAX_CHANNELS = 2048                          # "The maximum input channel value is 2048", filters too
MAX_SIDE = 4096                              # "The maximum input width/height is 4096"
KERNELS = (1, 3, 5, 7)                       # Convolutional; the InputConvolutional takes 3, 5, 7
IC_CHANNELS, IC_MAX_Y = (1, 3), 256
IC_MAX_FILTERS = {(1, 3): 512, (1, 5): 192, (1, 7): 96, (3, 3): 192, (3, 5): 64, (3, 7): 32}  # by (c, k)
CNP_X, CNP_Y, CNP_FILTERS = 32, 256, 504     # akida.MapConstraints(AKD1000()) defaults
CNP_INPUT = 344064                           # a CNP's input memory: rows (8-padded) x columns x channels
IC_MIN_SIDE = 5                              # InputConvolutional input x >= max(5, k), y >= 5
GAP_MAX_X, GAP_MIN_OUT_Y = 32, 3             # global average pooling input/output bounds
RANGES = {1: (0, 1), 2: (-1, 1), 4: (-7, 7), 8: (-128, 127)}   # integer range of each weight width
FILTER_ROWS = {1: 896, 2: 896, 4: 448}       # rows of a CNP's filter memory, one per input channel
FILTERS_PER_ROW = {1: {1: 192, 3: 40, 5: 16, 7: 8},
                   2: {1: 192, 3: 20, 5: 8, 7: 4},
                   4: {1: 192, 3: Fraction(64, 3), 5: 8, 7: Fraction(64, 21)}}
FILTERS_MAX = {(4, 7): 384}                  # a further per-CNP cap seen at 4 bits, 7 x 7
FNP3_MEMORY, FNP3_WORDS = 10752, {1: 1, 2: 2, 4: 6}


class NotAkida(ModelError):
    """The network has no Akida layer sequence (Akida runs one chain of layers)."""


# -- integer weights (shared with the converter) --------------------------------------------------

def integer_weights(conn: Dense | Conv2d) -> tuple[np.ndarray, float]:
    """``(k, scale)`` with ``conn``'s weights ``== scale * k``, ``k`` integral (see the module doc).
    Raises NotAkida when the weights lie on no integer grid."""
    w = conn.dense_weight() if isinstance(conn, Dense) else conn.weight
    nz = np.unique(w[w != 0])
    if not nz.size:
        return np.zeros(w.shape, dtype=np.int64), 1.0
    scale = conn.quant.scale if conn.quant is not None else grid_step(nz)
    k = None if scale is None else nz / scale
    if k is None or not np.all(np.abs(k - np.rint(k)) <= REL_TOL * np.maximum(np.abs(k), 1.0)):
        where = f"the Quantization scale {scale:g}" if conn.quant is not None else "an integer grid"
        raise NotAkida(f"weights of layer {conn.name!r} are not on {where}; quantize them (spikefit fit --target akida)")
    return np.rint(w / scale).astype(np.int64), float(scale)


def weight_bits(kmin: int, kmax: int, input_conv: bool) -> int | None:
    """The narrowest Akida weight width holding kmin..kmax (None: no width holds them)."""
    for bits in ((1, 2, 4, 8) if input_conv else (1, 2, 4)):
        lo, hi = RANGES[bits]
        if lo <= kmin and kmax <= hi:
            return bits
    return None


# -- the Akida layer sequence (shared with the converter) ----------------------------------------

@dataclass
class AkidaLayer:
    """One Akida layer: a spikefit connection with the population and pooling that follow it."""

    conn: Dense | Conv2d
    kind: str                                 # "input_conv" | "conv" | "fc"
    in_shape: tuple[int, int, int]            # Akida (x, y, c) it reads
    post: Neurons | None = None               # its activation (None: activation off)
    pool: Pool2d | None = None                # average pooling folded into the layer

    @property
    def units(self) -> int:
        return int(self.conn.weight.shape[0])

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.conn.weight.shape[2:]) if isinstance(self.conn, Conv2d) else (1, 1)

    @property
    def padding(self) -> str:
        """"same" (padding k // 2), "valid" (0) or "other" (Akida has no such padding)."""
        if self.kind == "fc":
            return "same"
        p, (kh, kw) = self.conn.padding, self.kernel
        if p == (kh // 2, kw // 2):
            return "same"
        return "valid" if p == (0, 0) else "other"

    @property
    def global_pool(self) -> bool:
        """The pooling covers the whole conv output (Akida's global average pooling)."""
        pl = self.pool
        return pl is not None and pl.kernel == tuple(pl.input_shape[1:]) and pl.padding == (0, 0)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        if self.kind == "fc":
            return (1, 1, self.units)
        c, h, w = (self.pool or self.conn).output_shape
        return (h, w, c)

    @property
    def inputs(self) -> int:
        return int(np.prod(self.in_shape))


def _chain(net: Network) -> list:
    if len(net.inputs) != 1:
        raise NotAkida(f"the network has {len(net.inputs)} inputs; an Akida model has one")
    if net.back_edges():
        a, b = sorted(net.back_edges())[0]
        raise NotAkida(f"edge {a} -> {b} is recurrent; Akida runs feed-forward layer sequences only")
    nodes, name = [], net.inputs[0].name
    while True:
        nodes.append(net.nodes[name])
        succ = net.successors(name)
        if len(succ) > 1 or len(net.predecessors(name)) > 1:
            raise NotAkida(f"node {name} branches; an Akida model is one chain of layers")
        if not succ:
            break
        name = succ[0]
    if len(nodes) != len(net.nodes):
        raise NotAkida("the network is not one chain from its input; an Akida model is one chain of layers")
    return nodes


def akida_layers(net: Network) -> list[AkidaLayer]:
    """The Akida layers ``net`` reads as (module doc); NotAkida when it reads as none."""
    nodes = _chain(net)
    shape = nodes[0].shape
    if len(shape) not in (1, 3):
        raise NotAkida(f"input shape {shape} is neither (n,) nor (c, h, w)")
    xyc = (1, 1, shape[0]) if len(shape) == 1 else (shape[1], shape[2], shape[0])
    layers: list[AkidaLayer] = []
    for node in nodes[1:]:
        last = layers[-1] if layers else None
        if isinstance(node, (Dense, Conv2d)):
            if isinstance(node, Conv2d):
                kind = "input_conv" if not layers and xyc[2] in IC_CHANNELS else "conv"
                if last is not None and last.kind == "fc":
                    raise NotAkida(f"convolution {node.name} follows a fully connected layer; Akida has no reshape")
            else:
                kind = "fc"
            layers.append(AkidaLayer(node, kind, xyc))
            xyc = layers[-1].out_shape
        elif isinstance(node, Neurons):
            if last is None or last.post is not None or last.pool is not None:
                raise NotAkida(f"population {node.name} does not follow a connection; an Akida layer is a "
                               "connection with its activation")
            last.post = node
        elif isinstance(node, Pool2d):
            if node.kind_ != "avg" or last is None or last.kind == "fc" or last.pool is not None:
                raise NotAkida(f"{node.kind_} pooling {node.name} has no Akida form; Akida pools only the output "
                               "of a convolution, by average (global) or maximum")
            last.pool = node
            xyc = last.out_shape
        elif isinstance(node, (Flatten, Output)):
            continue
        else:  # a second Input cannot occur in a chain
            raise NotAkida(f"node {node.name} has no Akida form")
    if not layers:
        raise NotAkida("the network has no connection; an Akida model needs at least one layer")
    return layers


# -- neural processors ----------------------------------------------------------------------------


def runnable_layers(net: Network, who: str) -> list:
    """Akida's layer chain of ``net`` for something that runs it and reports every population's spikes
    (the emulator's ``akida-act``, the akida backend); one BackendError line naming ``who`` otherwise."""
    from spikefit.errors import BackendError

    try:
        layers = akida_layers(net)
    except NotAkida as e:
        raise BackendError(f"{who} cannot run this network: {e}") from None
    pooled = [la.post.name for la in layers if la.pool is not None and la.post is not None]
    if pooled:
        raise BackendError(f"population {pooled[0]} is pooled inside its Akida layer, so {who} cannot report its "
                           "spikes; run the network without pooling")
    return layers


def filters_per_np(c: int, k: int, bits: int) -> int:
    """Filters of ``c`` input channels, ``k x k``, ``bits`` one CNP holds (0: not even one)."""
    rows = FILTER_ROWS[bits] // max(c, 1)
    n = 8 * int(FILTERS_PER_ROW[bits][k] * rows // 8)
    return min(CNP_FILTERS, FILTERS_MAX.get((bits, k), CNP_FILTERS), n)


def fc_on_fnp3(units: int, inputs: int, bits: int) -> bool:
    """A FullyConnected fits an FNP3's on-chip weight memory (else it takes an FNP2)."""
    return units * (FNP3_WORDS[bits] * math.ceil(inputs / 32) + 4) <= FNP3_MEMORY


def layer_bits(layer: AkidaLayer) -> int:
    """The layer's weight width (the widest its kind takes when no width holds its integers)."""
    k, _ = integer_weights(layer.conn)
    ic = layer.kind == "input_conv"
    return weight_bits(int(k.min()), int(k.max()), ic) or (8 if ic else 4)


def processors(layer: AkidaLayer) -> tuple[str, int]:
    """(type, count) of NPs the layer takes: ("HRC", 0), ("FNP3" | "FNP2", 1) or ("CNP", n); n = 0 when
    one filter does not fit a CNP."""
    if layer.kind == "input_conv":
        return "HRC", 0
    bits = layer_bits(layer)
    if layer.kind == "fc":
        return ("FNP3" if fc_on_fnp3(layer.units, layer.inputs, bits) else "FNP2"), 1
    x, y, c = layer.in_shape
    per = filters_per_np(c, layer.kernel[0], bits) if layer.kernel[0] in KERNELS else CNP_FILTERS
    if per == 0:
        return "CNP", 0
    return "CNP", spatial_split(layer) * math.ceil(layer.units / per)


def spatial_split(layer: AkidaLayer) -> int:
    """How many parts a convolution's input map is cut into, one CNP group each (measured, see the
    module doc): ``nx`` chunks of ``P = ceil(x / nx) <= 32`` rows, each holding ``P`` plus the kernel's
    overlap rows (none for one chunk, (k - 1) // 2 for two, k - 1 for more), rounded up to 8; a chunk
    of ``rows8`` rows holds ``mem = 344064 // (rows8 * c)`` columns, so y is cut in ``ny`` parts: 1 when
    y <= min(256, mem), 2 when 2 * min(256, mem - (k - 1) // 2) >= y, else ceil(y / min(256, mem - k + 1)).
    The mapper takes the ``nx`` that needs the fewest parts ``nx * ny``."""
    x, y, c = layer.in_shape
    h, best = layer.kernel[0] - 1, None
    first = math.ceil(x / CNP_X)
    for nx in range(first, min(x, first + 64) + 1):
        rows = math.ceil(x / nx) + (0 if nx == 1 else h // 2 if nx == 2 else h)
        mem = CNP_INPUT // (8 * math.ceil(rows / 8) * max(c, 1))
        if y <= min(CNP_Y, mem):
            ny = 1
        elif 2 * min(CNP_Y, mem - h // 2) >= y:
            ny = 2
        elif mem > h:
            ny = max(3, math.ceil(y / min(CNP_Y, mem - h)))
        else:
            continue
        best = nx * ny if best is None else min(best, nx * ny)
    return 10 ** 6 if best is None else best


# -- rules ------------------------------------------------------------------------------------------

def _layers(view) -> list[AkidaLayer]:
    """The Akida layers, or none when the network has no Akida form (rule akida.sequential says why)."""
    try:
        layers = akida_layers(view.network)
        for la in layers:
            integer_weights(la.conn)
    except NotAkida:
        return []
    return layers


def _first(view, bad: list[tuple[str, str]], usage_ok, limit, usage_bad=None):
    """One row: ok when ``bad`` is empty, else the first (where, why)."""
    if not bad:
        return view.row(usage_ok, limit, True)
    where, why = bad[0]
    return view.row(usage_bad if usage_bad is not None else why.split(";")[0], limit, False, where, why)


def sequential(view):
    """The network reads as one Akida layer sequence."""
    try:
        layers = akida_layers(view.network)
        for la in layers:
            integer_weights(la.conn)
    except NotAkida as e:
        return view.row("no", "one chain of layers", False, "", str(e))
    return view.row(f"{len(layers)} layers", "one chain of layers", True)


def kernels(view):
    """Convolution kernels are square, 1/3/5/7 (InputConvolutional 3/5/7), stride 1, or 2 with 3 x 3
    kernels (1 to 3 in the InputConvolutional), padding 'same' (InputConvolutional: 'same' or 'valid')."""
    bad = []
    for la in _layers(view):
        if la.kind == "fc":
            continue
        (kh, kw), n = la.kernel, la.conn.name
        ic = la.kind == "input_conv"
        allowed = (3, 5, 7) if ic else KERNELS
        if kh != kw or kh not in allowed:
            bad.append((f"layer {n}", f"kernel {kh}x{kw} of layer {n} is not square {', '.join(map(str, allowed))}; "
                        "use a square kernel of those sizes"))
        elif max(la.conn.stride) > (3 if ic else 2 if kh == 3 else 1):
            bad.append((f"layer {n}", f"stride {la.conn.stride} of {kh}x{kh} layer {n} is not supported; use stride 1 "
                        "(2 with 3x3 kernels; up to 3 in the input convolution)"))
        elif la.padding == "other" or (la.padding == "valid" and not ic):
            bad.append((f"layer {n}", f"padding {la.conn.padding} of layer {n} is not 'same' (k // 2); pad by k // 2"))
    return _first(view, bad, "ok", "k 1/3/5/7 square, stride 1 (2 at 3x3), same padding")


def sizes(view):
    """Dimensions: x, y <= 4096; channels and filters <= 2048; InputConvolutional filters <= 512 (1
    channel, 3 x 3) down to 32 (3 channels, 7 x 7), 5 <= y <= 256 and x >= max(5, k); FullyConnected inputs <= 57,334 (zeros
    included) and units < 2^17."""
    bad, worst = [], 0
    for la in _layers(view):
        x, y, c = la.in_shape
        n = la.conn.name
        if la.kind == "fc":
            worst = max(worst, la.inputs)
            if la.inputs > FC_MAX_INPUTS:
                bad.append((f"layer {n}", f"fully connected layer {n} reads {la.inputs} inputs, more than "
                            f"{FC_MAX_INPUTS}; pool or shrink its input"))
            elif la.units > FC_MAX_UNITS:
                bad.append((f"layer {n}", f"layer {n} has {la.units} units, more than {FC_MAX_UNITS}"))
        elif la.kind == "conv" and max(x, y) > MAX_SIDE:
            bad.append((f"layer {n}", f"layer {n} reads a {x}x{y} map, larger than {MAX_SIDE}; downsample the input"))
        elif la.kind == "input_conv" and la.units > IC_MAX_FILTERS.get((c, la.kernel[0]), la.units):
            most = IC_MAX_FILTERS[(c, la.kernel[0])]
            bad.append((f"layer {n}", f"input convolution {n} ({c} channels, {la.kernel[0]}x{la.kernel[0]}) has "
                        f"{la.units} filters, more than {most}; use fewer filters or a smaller kernel"))
        elif la.kind == "input_conv" and y > IC_MAX_Y:
            bad.append((f"layer {n}", f"input convolution {n} reads width {y}, more than {IC_MAX_Y}"))
        elif la.kind == "input_conv" and (x < max(IC_MIN_SIDE, la.kernel[0]) or y < IC_MIN_SIDE):
            bad.append((f"layer {n}", f"input convolution {n} reads a {x}x{y} map, smaller than "
                        f"{max(IC_MIN_SIDE, la.kernel[0])}x{IC_MIN_SIDE}; use a larger input"))
        elif max(c, la.units) > MAX_CHANNELS:
            bad.append((f"layer {n}", f"layer {n} has {max(c, la.units)} channels, more than {MAX_CHANNELS}"))
    return _first(view, bad, worst, FC_MAX_INPUTS)


def pooling(view):
    """Average pooling is global (the whole conv output), after a Convolutional (not the
    InputConvolutional), with input x <= 32 and output y >= 3, on a map that one CNP holds."""
    bad = []
    for la in _layers(view):
        if la.pool is None:
            continue
        n, p = la.conn.name, la.pool.name
        x, y = la.in_shape[:2]
        out_y = la.conn.output_shape[2]
        if la.kind == "input_conv":
            bad.append((f"pool {p}", f"pooling {p} follows the input convolution {n}, which cannot average; "
                        "move it after a later convolution"))
        elif not la.global_pool:
            bad.append((f"pool {p}", f"pooling {p} ({la.pool.kernel[0]}x{la.pool.kernel[1]}) is not global; "
                        "Akida averages the whole map only"))
        elif x > GAP_MAX_X:
            bad.append((f"pool {p}", f"global pooling {p} after layer {n} reads x = {x}, more than {GAP_MAX_X}"))
        elif spatial_split(la) > 1:
            bad.append((f"pool {p}", f"global pooling {p} after layer {n}: its {x}x{y}x{la.in_shape[2]} input does "
                        "not fit one CNP, and a pooled map cannot be split; use fewer channels or a smaller map"))
        elif out_y < GAP_MIN_OUT_Y:
            bad.append((f"pool {p}", f"global pooling {p} averages {out_y} columns, fewer than {GAP_MIN_OUT_Y}"))
    return _first(view, bad, "ok", "global average, x <= 32, y >= 3")


def weights(view):
    """Integer weights per layer within 4-bit [-7, 7] (1 bit {0, 1}, 2 bits [-1, 1]); the
    InputConvolutional within 8-bit [-128, 127] and not all zero."""
    bad, worst = [], 0
    for la in _layers(view):
        k, scale = integer_weights(la.conn)
        kmin, kmax = int(k.min()), int(k.max())
        ic = la.kind == "input_conv"
        lo, hi = RANGES[8 if ic else 4]
        worst = max(worst, abs(kmin), kmax)
        n = la.conn.name
        if kmin < lo or kmax > hi:
            bad.append((f"layer {n} (scale {scale:g})", f"integer weights of layer {n} span [{kmin}, {kmax}], outside "
                        f"[{lo}, {hi}]; quantize to {'8' if ic else '4'}-bit symmetric integers"))
        elif ic and kmax == 0 and kmin == 0:
            bad.append((f"layer {n}", f"input convolution {n} has only zero weights, which Akida refuses"))
    return _first(view, bad, worst, 7, worst)


def filter_memory(view):
    """One filter (c input channels, k x k, at the layer's width) fits a CNP's filter memory:
    c <= 896 at 1-2 bits, c <= 448 at 4 bits for k <= 5 and c <= 149 at 4 bits, 7 x 7."""
    bad = []
    for la in _layers(view):
        if la.kind == "conv" and la.kernel[0] in KERNELS and la.kernel[0] == la.kernel[1]:
            bits, c = layer_bits(la), la.in_shape[2]
            if filters_per_np(c, la.kernel[0], bits) == 0:
                bad.append((f"layer {la.conn.name}", f"a {la.kernel[0]}x{la.kernel[0]} filter of {c} channels at {bits} "
                            f"bits does not fit a CNP; use fewer input channels or fewer weight bits"))
    return _first(view, bad, "ok", "c <= 896 (1-2 bit), 448 (4 bit), 149 (4 bit 7x7)")


def neural_processors(view):
    """NPs: CNPs per convolution, one FNP3 or FNP2 per fully connected layer; <= 78 in all, <= 4 FNP2,
    <= 22 fully connected layers."""
    cnp = fnp3 = fnp2 = 0
    worst, most = "", -1
    for la in _layers(view):
        if la.kind == "conv" and (la.kernel[0] not in KERNELS or la.kernel[0] != la.kernel[1]):
            continue
        kind, n = processors(la)
        cnp += n if kind == "CNP" else 0
        fnp3 += kind == "FNP3"
        fnp2 += kind == "FNP2"
        if n > most:
            worst, most = f"layer {la.conn.name} ({n} {kind})", n
    total = cnp + fnp3 + fnp2
    if fnp2 > FNP2:
        return view.row(fnp2, f"{FNP2} FNP2", False, worst, f"{fnp2} fully connected layers exceed an FNP3's memory "
                        f"and need an FNP2; AKD1000 has {FNP2}: shrink them or use fewer weight bits")
    if fnp3 + fnp2 > FNP3 + FNP2:
        return view.row(fnp3 + fnp2, f"{FNP3 + FNP2} FNP", False, worst, f"{fnp3 + fnp2} fully connected layers; "
                        f"AKD1000 has {FNP3 + FNP2} FNPs: merge layers")
    ok = total <= NPS
    return view.row(total, NPS, ok, worst, "" if ok else f"the layers need {total} neural processors "
                    f"({cnp} CNP, {fnp3} FNP3, {fnp2} FNP2), AKD1000 has {NPS}: fewer filters or a smaller map")


def weight_grids(model) -> dict[str, tuple[int, bool]]:
    """The grid CAT trains each connection of a spikefit.nn.SNN on, (bits, symmetric): 4-bit [-7, 7],
    8-bit [-128, 127] for a first convolution on 1 or 3 channels (the InputConvolutional)."""
    from spikefit.nn import Conv

    syns = model.synapses()
    grids = {s.name: (4, True) for s in syns}
    if syns and isinstance(syns[0], Conv) and syns[0].weight.shape[1] in IC_CHANNELS:
        grids[syns[0].name] = (8, False)
    return grids


RULES = RuleSet(
    name="akida",
    targets=("akida",),
    rules=(
        Rule("akida.sequential", sequential, "one chain Input -> (connection, population, average pooling)*; "
             "integer weights (akida Model is a layer sequence)"),
        Rule("akida.kernels", kernels, "square kernels 1/3/5/7, stride 1 (2 at 3x3), same padding (akida mapper messages)"),
        Rule("akida.sizes", sizes, "x, y <= 4096, channels <= 2048, FC inputs <= 57,334, IC filters <= 32..512",
             about="size"),
        Rule("akida.pooling", pooling, "global average pooling only, input x <= 32, output y >= 3, one CNP's map"),
        Rule("akida.weights", weights, "4-bit [-7, 7] weights, 8-bit [-128, 127] in the input convolution",
             about="weights"),
        Rule("akida.filter_memory", filter_memory, "a filter fits a CNP's filter memory (measured)", about="size"),
        Rule("akida.neural_processors", neural_processors, "78 NPs: CNPs per conv, one FNP3/FNP2 per FC (measured)",
             about="size"),
    ),
    doc="BrainChip AKD1000 as akida 2.19.3 maps it (docs/akida.md)",
)
