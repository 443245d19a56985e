"""Xylo Audio 2 (SYNS61201): the rules its TOML cannot say, as Rockpool states them.

Rockpool's mapper (``rockpool/devices/xylo/syns61201/xylo_mapper.py``) runs a list of design-rule
functions and then fills three integer matrices of one SNN core: input weights (inputs -> hidden
neurons), recurrent weights (hidden -> hidden, which also holds every hidden -> hidden layer of a deeper
chain) and output weights (hidden -> output neurons); XyloSim (``xylosim`` 0.1.3, ``src/v2/cpp``) stores
weights as int8, thresholds and biases as int16, and left-shifts each matrix by one ``weight_shift``.

:func:`read` is spikefit's one reading of a :class:`~spikefit.network.Network` as that core: which
populations are hidden or output neurons, which weight layer lands in which matrix, and the integers
the chip stores. The rules below and the rockpool conversion in ``plugins/spikefit-xylo`` both use it,
so what spikefit judges is what the vendor is shown. No vendor SDK is imported here.

The integers (see docs/xylo.md):

* a connection's integer step is its ``Quantization.scale``, or 1 when it has none (its weights are
  then the chip's integers themselves);
* a population's unit is the smallest step among its incoming connections (1 when it has none); each
  incoming weight is stored as ``w / unit``, which must be a whole number;
* per matrix, the smallest shift ``s`` with every integer a multiple of ``2**s`` and ``k >> s`` within
  int8 is the matrix's ``weight_shift``;
* threshold ``floor(vth / unit) + 1`` (spikefit spikes when ``v > vth``, Xylo when ``v >= threshold``),
  bias ``round(bias / unit)``; decays map to the nearest ``dash`` in 1..15 (not a fit criterion).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spikefit.network import Dense, Flatten, Input, Network, Neurons, Output
from spikefit.rules import Rule, RuleSet

MATRICES = ("input", "recurrent", "output")
SHIFT_FIELD_MAX = 7        # CTRL1's IWBS/RWBS/OWBS fields are u3 (xa2_devkit_utils.py Xylo2RegistersStruct)
DASH_MAX = 15              # dash is a 4-bit shift (rockpool docs, xylo-overview.ipynb)
REL_TOL = 1e-6             # w / unit counts as whole when within this relative distance


# -- the reading --------------------------------------------------------------------------------

@dataclass
class Link:
    """One weight layer with what it connects, looked through Flatten nodes."""

    conn: Dense
    sources: list            # nodes feeding it (Input, Neurons, Dense, or anything else)
    targets: list            # nodes it feeds
    matrix: str | None       # "input" | "recurrent" | "output"; None where Xylo has no such matrix


@dataclass
class Reading:
    hidden: list[Neurons]
    output: list[Neurons]
    links: list[Link]
    unit: dict[str, float] = field(default_factory=dict)        # population -> weight units per integer
    ints: dict[str, np.ndarray] = field(default_factory=dict)   # layer -> (n_out, n_in) w / unit, rounded
    off_grid: dict[str, float] = field(default_factory=dict)    # layer -> its unit, where w / unit is not whole

    @property
    def populations(self) -> list[Neurons]:
        return self.hidden + self.output

    def matrix_links(self, matrix: str) -> list[Link]:
        return [k for k in self.links if k.matrix == matrix and len(k.targets) == 1]

    def matrix_values(self, matrix: str) -> np.ndarray:
        """Every non-zero integer of a matrix (layers off the integer grid left out)."""
        vals = [self.ints[k.conn.name] for k in self.matrix_links(matrix) if k.conn.name in self.ints]
        flat = np.concatenate([v[v != 0].ravel() for v in vals]) if vals else np.zeros(0)
        return flat.astype(np.int64)

    def threshold(self, pop: Neurons) -> int:
        """The integer threshold: Xylo spikes at ``v >= threshold``, spikefit at ``v > vth``."""
        return int(math.floor(pop.vth / self.unit[pop.name] * (1 + 1e-12))) + 1

    def bias(self, pop: Neurons) -> np.ndarray:
        return np.rint(pop.bias / self.unit[pop.name]).astype(np.int64)


def _through_flatten(net: Network, names: list[str], step) -> list:
    out, todo = [], list(names)
    while todo:
        node = net.nodes[todo.pop(0)]
        if isinstance(node, Flatten):
            todo.extend(step(node.name))
        elif node not in out:
            out.append(node)
    return out


def sources(net: Network, name: str) -> list:
    """The nodes that feed ``name``, looking back through Flatten."""
    return _through_flatten(net, net.predecessors(name), net.predecessors)


def targets(net: Network, name: str) -> list:
    """The nodes ``name`` feeds, looking forward through Flatten."""
    return _through_flatten(net, net.successors(name), net.successors)


def output_populations(net: Network) -> list[Neurons]:
    """Populations that feed an Output node: Xylo's output neurons (as ChipView.output_populations)."""
    out = []
    for node in net.nodes.values():
        if isinstance(node, Output):
            for src in sources(net, node.name):
                if isinstance(src, Neurons) and src not in out:
                    out.append(src)
    return out


def _matrix(srcs: list, dsts: list, hidden: list, output: list) -> str | None:
    if len(srcs) != 1 or len(dsts) != 1 or not isinstance(dsts[0], Neurons):
        return None
    src, dst = srcs[0], dsts[0]
    if isinstance(src, Input):
        return "input" if dst in hidden else None
    if src in hidden:
        return "recurrent" if dst in hidden else "output"
    return None


def _whole(x: np.ndarray) -> bool:
    return bool(np.all(np.abs(x - np.rint(x)) <= REL_TOL * np.maximum(np.abs(x), 1.0)))


def read(net: Network) -> Reading:
    """spikefit's reading of ``net`` as Xylo's one core (see the module docstring)."""
    output = output_populations(net)
    hidden = [p for p in net.populations() if p not in output]
    links = []
    for conn in net.connections():
        if isinstance(conn, Dense):
            srcs, dsts = sources(net, conn.name), targets(net, conn.name)
            links.append(Link(conn, srcs, dsts, _matrix(srcs, dsts, hidden, output)))
    r = Reading(hidden, output, links)
    for pop in r.populations:
        steps = [k.conn.quant.scale if k.conn.quant is not None else 1.0 for k in links if pop in k.targets]
        r.unit[pop.name] = min(steps, default=1.0)
    for k in links:
        if len(k.targets) != 1 or not isinstance(k.targets[0], Neurons):
            continue
        unit = r.unit[k.targets[0].name]
        x = k.conn.dense_weight() / unit
        if _whole(x):
            r.ints[k.conn.name] = np.rint(x).astype(np.int64)
        else:
            r.off_grid[k.conn.name] = unit
    return r


def smallest_shift(values: np.ndarray, weight_bits: int = 8, limit: int = SHIFT_FIELD_MAX) -> int | None:
    """The smallest ``s`` in 0..limit with every value a multiple of ``2**s`` and ``value >> s`` a signed
    ``weight_bits`` integer; None when there is none."""
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    v = np.asarray(values, dtype=np.int64)
    for s in range(limit + 1):
        if np.all(v % (1 << s) == 0) and np.all((v >> s) >= lo) and np.all((v >> s) <= hi):
            return s
    return None


def dash(decay: float) -> int:
    """Xylo's bit-shift decay ``x -= x >> dash`` nearest to losing the fraction ``decay`` per step."""
    if decay <= 0:
        return DASH_MAX
    return int(np.clip(round(-math.log2(decay)), 1, DASH_MAX))


# -- the rules ---------------------------------------------------------------------------------

def _reading(view) -> Reading:
    cached = getattr(view, "_xylo_reading", None)
    if cached is None or cached[0] is not view.network:
        view._xylo_reading = (view.network, read(view.network))
    return view._xylo_reading[1]


def hidden_neurons(view):
    hidden = _reading(view).hidden
    n = sum(p.size for p in hidden)
    limit = view.params["max_hidden_neurons"]
    big = max(hidden, key=lambda p: p.size, default=None)
    return view.row(n, limit, n <= limit, f"largest: layer {big.name}" if big is not None else "",
                    "" if n <= limit else f"the populations before the readout hold {n} neurons; "
                    f"prune hidden neurons (output neurons have their own budget, limits.outputs)")


def two_neuron_layers(view):
    n = len(view.network.populations())
    return view.row(n, ">= 2", n >= 2, "", "" if n >= 2 else
                    "Xylo needs a hidden and an output layer of neurons; add a hidden population")


def outputs_from_neurons(view):
    bad = [o.name for o in view.network.outputs
           if not sources(view.network, o.name) or not all(isinstance(s, Neurons) for s in sources(view.network, o.name))]
    return view.row(len(bad), 0, not bad, f"output {bad[0]}" if bad else "",
                    f"output {bad[0]!r} is not fed by neurons; end the network with a population" if bad else "")


def neurons_fed_by_weights(view):
    net = view.network
    bad = [p.name for p in net.populations()
           if not all(isinstance(s, Dense) for s in sources(net, p.name)) or not sources(net, p.name)]
    return view.row(len(bad), 0, not bad, f"layer {bad[0]}" if bad else "",
                    f"population {bad[0]!r} receives something other than a weight layer; put a Dense "
                    f"layer in front of it" if bad else "")


def no_consecutive_weights(view):
    net = view.network
    bad = [c.name for c in net.connections() if any(isinstance(s, Dense) for s in sources(net, c.name))]
    return view.row(len(bad), 0, not bad, f"layer {bad[0]}" if bad else "",
                    f"weight layer {bad[0]!r} reads another weight layer; merge the two matrices or put "
                    f"neurons between them" if bad else "")


def input_layer(view):
    r = _reading(view)
    readers = [k for k in r.links if any(isinstance(s, Input) for s in k.sources)]
    n_in = sum(i.size for i in view.network.inputs)
    ok = (len(readers) == 1 and readers[0].matrix == "input"
          and readers[0].conn.weight.shape[1] == n_in)
    why = ""
    if not readers:
        why = "no weight layer reads the inputs; add a Dense layer after the Input"
    elif len(readers) > 1:
        why = (f"{len(readers)} weight layers read the inputs ({readers[0].conn.name}, {readers[1].conn.name}); "
               f"Xylo has one input matrix: concatenate them into one layer")
    elif not ok:
        why = (f"weight layer {readers[0].conn.name!r} reads the inputs but feeds no hidden population (or not "
               f"all {n_in} inputs); inputs reach only hidden neurons: add a hidden layer")
    return view.row(len(readers), 1, ok, f"layer {readers[0].conn.name}" if readers and not ok else "", why)


def output_not_recurrent(view):
    r = _reading(view)
    bad = [p.name for p in r.output for k in r.links if p in k.sources and p in k.targets]
    return view.row(len(bad), 0, not bad, f"layer {bad[0]}" if bad else "",
                    f"output population {bad[0]!r} feeds itself; move the recurrence to a hidden population"
                    if bad else "")


def output_is_last(view):
    r = _reading(view)
    bad = [(p.name, k.conn.name) for p in r.output for k in r.links if p in k.sources]
    return view.row(len(bad), 0, not bad, f"layer {bad[0][0]}" if bad else "",
                    f"output population {bad[0][0]!r} feeds weight layer {bad[0][1]!r}; Xylo's recurrent and "
                    f"output weights start at hidden neurons only" if bad else "")


def no_weight_bias(view):
    bad = [c.name for c in view.network.connections() if c.bias is not None]
    return view.row(len(bad), 0, not bad, f"layer {bad[0]}" if bad else "",
                    f"weight layer {bad[0]!r} has a bias, which Xylo's weights do not hold; move it into "
                    f"the population's bias" if bad else "")


def weight_shift(view):
    r = _reading(view)
    bits, limit = view.spec.limits.weight_bits or 8, view.params["max_weight_shift"]
    if r.off_grid:
        name, unit = next(iter(r.off_grid.items()))
        return view.row(None, f"int{bits} << 0..{limit}", False, f"layer {name}",
                        f"weights of layer {name} are not whole multiples of {unit:g} (the unit of the population "
                        f"they feed: its smallest Quantization scale, or 1 without one); quantize them")
    rows = []
    for m in MATRICES:
        v = r.matrix_values(m)
        s = smallest_shift(v, bits, limit)
        worst = max(r.matrix_links(m), key=lambda k: np.abs(r.ints[k.conn.name]).max(initial=0), default=None)
        where = f"layer {worst.conn.name}" if worst is not None and s is None else ""
        big = int(np.abs(v).max(initial=0))
        rows.append(view.row(f"{m}: shift {s}" if s is not None else f"{m}: max |w| {big}",
                             f"int{bits} << 0..{limit}", s is not None, where,
                             "" if s is not None else f"the {m} weights are not int{bits} values times one "
                             f"power of two 2**0..2**{limit}; requantize the layers of that matrix"))
    return rows


def threshold_range(view):
    r = _reading(view)
    hi = (1 << (view.spec.neuron.threshold_bits or 15)) - 1
    worst = max(r.populations, key=r.threshold, default=None)
    t = r.threshold(worst) if worst is not None else 0
    return view.row(t, hi, t <= hi, f"layer {worst.name}" if worst is not None else "",
                    "" if t <= hi else f"vth {worst.vth:g} of {worst.name!r} is threshold {t} in units of "
                    f"{r.unit[worst.name]:g}; Xylo holds int16 thresholds: lower vth or coarsen the scale")


def bias_range(view):
    r = _reading(view)
    bits = view.spec.neuron.bias_bits or 16
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    worst, big = None, 0
    for p in r.populations:
        b = r.bias(p)
        m = int(b[np.argmax(np.abs(b))]) if b.size else 0
        if worst is None or abs(m) > abs(big):
            worst, big = p, m
    ok = lo <= big <= hi
    return view.row(big, f"{lo}..{hi}", ok, f"layer {worst.name}" if worst is not None else "",
                    "" if ok else f"bias {big} (units of {r.unit[worst.name]:g}) of {worst.name!r} is beyond "
                    f"int{bits}; lower the bias or coarsen the scale")


def recurrent_fan_out(view):
    r = _reading(view)
    counts: dict[str, np.ndarray] = {p.name: np.zeros(p.size, np.int64) for p in r.hidden}
    for k in r.matrix_links("recurrent"):
        csr = k.conn.csr()
        counts[k.sources[0].name] += np.bincount(csr.indices, minlength=csr.shape[1])
    limit = view.params["max_recurrent_fan_out"]
    worst = max(counts, key=lambda n: counts[n].max(initial=0), default=None)
    n = int(counts[worst].max(initial=0)) if worst is not None else 0
    where = f"layer {worst} neuron {int(np.argmax(counts[worst]))}" if worst is not None and n else ""
    return view.row(n, limit, n <= limit, where,
                    "" if n <= limit else f"a hidden neuron sends {n} recurrent (hidden -> hidden) synapses; "
                    f"prune them to {limit}")


RULES = RuleSet(
    name="xylo",
    targets=("xylo-audio2",),
    params={
        "max_hidden_neurons": (int, 1000),    # xylo_mapper.py mapper(max_hidden_neurons=1000)
        "max_weight_shift": (int, SHIFT_FIELD_MAX),
        "max_recurrent_fan_out": (int, 64),  # xylo-overview.ipynb "Max. fanout" (rockpool checks nothing)
    },
    doc="Xylo Audio 2 as rockpool's mapper and XyloSim define it (docs/xylo.md)",
    rules=(
        Rule("xylo.hidden_neurons", hidden_neurons, "hidden neurons (not feeding the readout) <= 1000: "
             "xylo_mapper.py max_hidden_neurons, a budget separate from the 8 output neurons", "size"),
        Rule("xylo.two_neuron_layers", two_neuron_layers,
             "at least two layers of neurons: xylo_mapper.py at_least_two_neuron_layers_needed"),
        Rule("xylo.outputs_from_neurons", outputs_from_neurons,
             "every network output comes from neurons: xylo_mapper.py output_nodes_have_neurons_as_source"),
        Rule("xylo.neurons_fed_by_weights", neurons_fed_by_weights, "neurons receive only weight layers: "
             "xylo_mapper.py input_to_neurons_is_a_weight, first_module_is_a_weight"),
        Rule("xylo.no_consecutive_weights", no_consecutive_weights,
             "no weight layer reads a weight layer: xylo_mapper.py no_consecutive_weights"),
        Rule("xylo.input_layer", input_layer, "one weight layer reads all inputs and feeds hidden neurons: "
             "the mapper's single weights_in matrix (inputs x hidden)"),
        Rule("xylo.output_not_recurrent", output_not_recurrent,
             "output neurons are not recurrent: xylo_mapper.py output_neurons_cannot_be_recurrent"),
        Rule("xylo.output_is_last", output_is_last, "output neurons feed no weights: the mapper's "
             "weights_rec and weights_out start at hidden neurons"),
        Rule("xylo.no_weight_bias", no_weight_bias, "weight layers have no bias: xylo_mapper.py "
             "weight_nodes_have_no_biases (rockpool drops it with a DRCWarning)"),
        Rule("xylo.weight_shift", weight_shift, "int8 weights times one power-of-two shift per matrix (input, "
             "recurrent, output): xylosim int8_t weights, CTRL1 3-bit weight-shift fields", "weights"),
        Rule("xylo.threshold_range", threshold_range,
             "integer threshold within int16 (neuron.threshold_bits): xylosim int16_t v_th", "weights"),
        Rule("xylo.bias_range", bias_range, "integer bias within int16 (neuron.bias_bits): xylosim int16_t bias",
             "weights"),
        Rule("xylo.recurrent_fan_out", recurrent_fan_out, "<= 64 recurrent synapses per hidden neuron: "
             "xylo-overview.ipynb 'Max. fanout' (documented; rockpool and xylosim check nothing)", "size"),
    ),
)
