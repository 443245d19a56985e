"""NIR written by snnTorch 1.0.0 imports into spikefit and spikes as snnTorch simulates it.

The files are produced here by snnTorch's own ``export_to_nir``, which needs per-neuron parameter
tensors and ``ignore_dims=[0]`` (scalar parameters give 0-d NIR shapes that fail type inference,
and without ``ignore_dims`` the batch dimension lands on the Input node). snnTorch hard-codes
dt = 1e-4 and writes r = tau/dt (w_in = tau_syn/dt), which ``read_nir`` recognises.

snnTorch stores no reset mode: every file says v_reset = 0 (reset to zero). The comparisons hold
what the FILE says against snnTorch simulating the same file: ``reset_mechanism="zero"``; Synaptic
and RLeaky also need ``reset_delay=False``, because with their default delayed reset the membrane
is zeroed one step after the spike, input included (a one-step refractory period NIR cannot state).

Tolerance: zero differing spikes against spikefit's float emulator, the test oracle and Lava's
floating_pt simulation; Lava's fixed_pt equals the fixed-point emulator exactly. snnTorch
computes in float32, spikefit in float64; a spike can only flip where a membrane potential comes
within float32 rounding (~1e-7 relative) of its threshold, so every test also checks that no
potential came closer than 1e-5 (``reference_run``'s margin). The fixed-point emulator (the
``"emulator"`` backend, Lava's bit-accurate arithmetic) rounds weights to 8-bit integers and du, dv
to 1/4096: potentials near threshold move and their spikes flip, so it must agree on at least 95%
of (step, sample, neuron) entries (measured: 98-99.9%).
"""
from __future__ import annotations

import nir
import numpy as np
import snntorch as snn
import snntorch.utils
import torch
from snntorch.export_nir import export_to_nir

from spikefit import plugins
from spikefit.nir_io import read_nir
from test_nir_io import emulate, reference_run, spike_input

T, B = 40, 3
FIXED_AGREEMENT = 0.95  # fraction of (step, sample, neuron) spike entries; see the module docstring


def leaky(shape, beta=0.9, threshold=1.0, **kw):
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, threshold), init_hidden=True,
                     reset_mechanism=kw.pop("reset_mechanism", "zero"), **kw)


def synaptic(shape, alpha, beta, threshold=1.0, **kw):
    return snn.Synaptic(alpha=torch.full(shape, alpha), beta=torch.full(shape, beta), threshold=torch.full(shape, threshold),
                        init_hidden=True, reset_mechanism="zero", **kw)


def run_snntorch(net: torch.nn.Sequential, x: np.ndarray, in_shape) -> dict[str, np.ndarray]:
    """snnTorch's own simulation: spikes (t, b, n) of every spiking module, by NIR node name."""
    snntorch.utils.reset(net)  # export_to_nir ran a forward pass: start from zero state
    out: dict[str, list] = {}
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = torch.from_numpy(x[t]).float().reshape(x.shape[1], *in_shape)
            for name, module in net.named_children():
                h = module(h)
                if isinstance(module, snn.SpikingNeuron):
                    node = f"{name}.lif" if isinstance(module, snn.RLeaky) else name
                    out.setdefault(node, []).append(h.reshape(h.shape[0], -1).numpy())
    return {k: np.stack(v).astype(bool) for k, v in out.items()}


def export_and_read(net, in_shape, tmp_path):
    graph = export_to_nir(net, torch.zeros(1, *in_shape), ignore_dims=[0])
    nir.write(tmp_path / "snntorch.nir", graph)
    return read_nir(tmp_path / "snntorch.nir")


def check_agreement(net, x, in_shape, tmp_path):
    """snnTorch, the test oracle and spikefit's float emulator give the same spikes everywhere;
    the fixed-point emulator agrees within its quantisation (``FIXED_AGREEMENT``)."""
    model = export_and_read(net, in_shape, tmp_path)
    theirs = run_snntorch(net, x, in_shape)
    ours, margin = reference_run(model, x)
    emulated = emulate(model, x)
    assert set(theirs) == set(ours) == set(emulated)
    for name in theirs:
        assert np.array_equal(theirs[name], ours[name]), name
        assert np.array_equal(emulated[name], ours[name]), name
    assert margin > 1e-5
    assert all(s.sum() >= 5 for s in theirs.values())  # every layer is active: the comparison means something
    fixed = plugins.get_backend("emulator").run(model, x)
    for name in theirs:
        assert (fixed[name] == ours[name]).mean() >= FIXED_AGREEMENT, name
    check_on_lava(model, x, ours, fixed)
    return model, theirs


def check_on_lava(model, x, floating, fixed=None):
    """The imported file on Lava's simulator: floating_pt gives the float spikes exactly (the margin
    check above rules out rounding flips); fixed_pt gives the fixed-point emulator's spikes exactly."""
    lava = plugins.get_backend("lava")
    got = lava.run(model, x, select_tag="floating_pt")
    for name in floating:
        assert np.array_equal(got[name], floating[name]), name
    if fixed is not None:
        got = lava.run(model, x, select_tag="fixed_pt")
        for name in fixed:
            assert np.array_equal(got[name], fixed[name]), name


def test_dense_leaky_and_synaptic(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 10), leaky((10,), beta=0.9),
                              torch.nn.Linear(10, 4, bias=False), synaptic((4,), alpha=0.5, beta=0.8, reset_delay=False))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(2.0)
    model, _ = check_agreement(net, spike_input(1, T, B, (6,)), (6,), tmp_path)
    assert model.dt == 1e-4 and model.metadata["nir_convention"]["name"] == "snntorch"
    assert [(p.model, round(p.du, 6), round(p.dv, 6)) for p in model.populations()] == [("lif", 1.0, 0.1), ("cuba-lif", 0.5, 0.2)]


def test_conv_avgpool_flatten(tmp_path):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), leaky((4, 6, 6), beta=0.8, threshold=0.5), torch.nn.AvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(36, 3), leaky((3,), beta=0.9, threshold=0.5))
    with torch.no_grad():
        net[0].weight.mul_(2.0)
        net[4].weight.mul_(4.0)
    model, _ = check_agreement(net, spike_input(2, T, B, (1, 8, 8)), (1, 8, 8), tmp_path)
    assert [n.kind for n in model.connections()] == ["conv2d", "dense"]


def test_recurrent_rleaky_subgraph(tmp_path):
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8),
                              snn.RLeaky(beta=torch.full((8,), 0.85), threshold=torch.full((8,), 1.0), linear_features=8,
                                         init_hidden=True, reset_mechanism="zero", reset_delay=False))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    model, _ = check_agreement(net, spike_input(3, T, B, (5,)), (5,), tmp_path)
    assert [la.recurrent for la in model.synapse_layers()] == [False, True]


def test_reset_mode_is_what_the_file_says(tmp_path):
    """A default Leaky resets by subtraction, but the file says v_reset = 0: spikefit runs the file,
    which equals snnTorch with reset-to-zero on the same weights, not the subtracting original."""
    torch.manual_seed(3)
    subtract = torch.nn.Sequential(torch.nn.Linear(6, 10), leaky((10,), beta=0.9, reset_mechanism="subtract"))
    with torch.no_grad():
        subtract[0].weight.mul_(3.0)
    zero = torch.nn.Sequential(torch.nn.Linear(6, 10), leaky((10,), beta=0.9))
    zero.load_state_dict(subtract.state_dict())
    x = spike_input(4, T, B, (6,))
    model = export_and_read(subtract, (6,), tmp_path)
    ours, margin = reference_run(model, x)
    assert np.array_equal(ours["1"], run_snntorch(zero, x, (6,))["1"]) and margin > 1e-5
    assert not np.array_equal(ours["1"], run_snntorch(subtract, x, (6,))["1"])


def test_synaptic_delayed_reset_agrees_up_to_the_first_spike(tmp_path):
    """Synaptic's default reset_delay=True zeroes the membrane, input included, on the step after a
    spike; the file cannot say so. Each neuron's train agrees up to and including its first spike."""
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(6, 10), synaptic((10,), alpha=0.6, beta=0.85))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    x = spike_input(5, T, B, (6,))
    theirs = run_snntorch(net, x, (6,))["1"]
    ours, _ = reference_run(export_and_read(net, (6,), tmp_path), x)
    ours = ours["1"]
    fired = ours.any(0)
    assert fired.sum() >= 5
    first = np.where(fired, ours.argmax(0), T - 1)          # (b, n) first spike step
    upto = np.arange(T)[:, None, None] <= first[None]       # (t, b, n)
    assert np.array_equal(theirs[upto], ours[upto])
    assert not np.array_equal(theirs, ours)                 # after it, the refractory step differs
