"""NIR written by Norse 1.1.0 imports into spikefit and spikes as Norse simulates it.

The files are produced here by Norse's own ``norse.torch.to_nir`` (default dt = 1e-3). What Norse
writes and what ``read_nir`` does about it (``docs/nir.md``, "Norse 1.1.0"):

* tau = dt / tau_inv, so every time constant is dt times too short (tau_mem_inv = 100 gives 1e-5 s
  instead of 0.01 s): recognised (r = 1, w_in = 1 and a tau shorter than the 1 ms step) and undone;
* LIFCell (written as CubaLIF) adds each input to its synaptic current in full and IAFCell (IF) to
  its voltage, while NIR's equations with w_in = 1 and r = 1 scale inputs by dt/tau_syn and dt: Norse
  files are read as Norse simulates them;
* scalar (default) parameters make 0-d arrays: ``nir.write`` then needs ``compression=None``, and
  ``nir.read`` needs ``type_check=False`` (``read_nir`` always reads without nir's type check);
* Conv2d nodes are written with ``input_shape=None``, which ``nir.write`` cannot store: the tests
  call ``graph.infer_types()`` first. Norse exports no Flatten or pooling node, so the conv network
  here is conv -> conv.

Tolerance: zero differing spikes against spikefit's float emulator and the test oracle (float32 in
Norse vs float64 here; every membrane potential stays more than 1e-5 from its threshold, far above
float32 rounding, checked by ``reference_run``). The fixed-point emulator (``"emulator"``, Lava's
bit-accurate arithmetic: 8-bit weights, du and dv in 1/4096) must agree on at least 95% of
(step, sample, neuron) entries. It cannot run a connection bias into a population with du < 1 (Lava
adds biases to v only), so the layers feeding LIFCell have zero bias where the fixed-point backend is
checked.
"""
from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch

from spikefit import plugins
from spikefit.errors import ExportError
from spikefit.nir_io import read_nir
from test_interop_snntorch import check_on_lava
from test_nir_io import emulate, reference_run, spike_input

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import norse.torch as norse

T, B = 40, 3
FIXED_AGREEMENT = 0.95  # fraction of (step, sample, neuron) spike entries; see the module docstring
CELLS = (norse.LIFBoxCell, norse.LIFCell, norse.IAFCell)


def lif_box(shape, tau_mem_inv=100.0, v_th=0.5):
    return norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.full(shape, tau_mem_inv), v_th=torch.full(shape, v_th),
                                                   v_leak=torch.zeros(shape)))


def lif(shape, tau_syn_inv=200.0, tau_mem_inv=100.0, v_th=0.5):
    return norse.LIFCell(norse.LIFParameters(tau_syn_inv=torch.full(shape, tau_syn_inv),
                                             tau_mem_inv=torch.full(shape, tau_mem_inv),
                                             v_th=torch.full(shape, v_th), v_leak=torch.zeros(shape)))


def run_norse(net: norse.SequentialState, x: np.ndarray, in_shape) -> dict[str, np.ndarray]:
    """Norse's own simulation: spikes (t, b, n) of every cell, by NIR node name (module index)."""
    state: dict[str, object] = {}
    out: dict[str, list] = {}
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = torch.from_numpy(x[t]).float().reshape(x.shape[1], *in_shape)
            for name, module in net.named_children():
                if isinstance(module, CELLS):
                    h, state[name] = module(h, state.get(name))
                    out.setdefault(name, []).append(h.reshape(h.shape[0], -1).numpy())
                else:
                    h = module(h)
    return {k: np.stack(v).astype(bool) for k, v in out.items()}


def export_and_read(net, in_shape, tmp_path, **write):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse.to_nir(net, torch.rand(*in_shape))
    if any(isinstance(n, nir.Conv2d) for n in graph.nodes.values()):
        graph.infer_types()  # sets the conv input_shape that Norse leaves None
    nir.write(tmp_path / "norse.nir", graph, **write)
    return read_nir(tmp_path / "norse.nir")


def check_agreement(net, x, in_shape, tmp_path, fixed_point=True, **write):
    """Norse, the test oracle and spikefit's float emulator give the same spikes everywhere;
    the fixed-point emulator agrees within its quantisation (``FIXED_AGREEMENT``)."""
    model = export_and_read(net, in_shape, tmp_path, **write)
    theirs = run_norse(net, x, in_shape)
    ours, margin = reference_run(model, x)
    emulated = emulate(model, x)
    assert set(theirs) == set(ours) == set(emulated)
    for name in theirs:
        assert np.array_equal(theirs[name], ours[name]), name
        assert np.array_equal(emulated[name], ours[name]), name
    assert margin > 1e-5
    assert all(s.sum() >= 5 for s in theirs.values())  # every layer is active: the comparison means something
    if fixed_point:
        fixed = plugins.get_backend("emulator").run(model, x)
        for name in theirs:
            assert (fixed[name] == ours[name]).mean() >= FIXED_AGREEMENT, name
        check_on_lava(model, x, ours, fixed)
    else:  # Lava adds a bias to v only: a connection bias into a population with du < 1 has no Lava form
        with pytest.raises(ExportError, match=r"has a bias, which Lava adds to v only, so it needs du = 1"):
            plugins.get_backend("lava").run(model, x, select_tag="floating_pt")
    return model


def test_dense_lifbox_iaf_and_lif(tmp_path):
    torch.manual_seed(0)
    net = norse.SequentialState(torch.nn.Linear(6, 10), lif_box((10,)), torch.nn.Linear(10, 8), norse.IAFCell(
        norse.IAFParameters(v_th=torch.full((8,), 1.0))), torch.nn.Linear(8, 4, bias=False), lif((4,)))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(3.0)
        net[4].weight.mul_(6.0)
    model = check_agreement(net, spike_input(1, T, B, (6,)), (6,), tmp_path)
    assert model.dt == 1e-3 and model.metadata["nir_convention"]["name"] == "norse-1.1"
    assert [(p.model, round(p.du, 6), round(p.dv, 6)) for p in model.populations()] == \
        [("lif", 1.0, 0.1), ("if", 1.0, 0.0), ("cuba-lif", 0.2, 0.1)]


def test_conv_lifbox_then_conv_lif(tmp_path):
    torch.manual_seed(1)
    net = norse.SequentialState(torch.nn.Conv2d(1, 4, 3), lif_box((4, 6, 6), v_th=0.3), torch.nn.Conv2d(4, 2, 3),
                                lif((2, 4, 4), v_th=0.3))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(6.0)
        net[2].bias.zero_()  # Norse's exporter needs a conv bias; zero keeps the fixed-point check possible
    model = check_agreement(net, spike_input(2, T, B, (1, 8, 8)), (1, 8, 8), tmp_path)
    assert [n.kind for n in model.connections()] == ["conv2d", "conv2d"]


def test_default_scalar_parameters(tmp_path):
    """Norse's default (scalar) parameters: nir.write needs compression=None; the shapes come from
    the weights (tau_mem_inv = 100, tau_syn_inv = 200, v_th = 1)."""
    torch.manual_seed(2)
    net = norse.SequentialState(torch.nn.Linear(6, 10), norse.LIFCell())
    with torch.no_grad():
        net[0].weight.mul_(12.0)
    model = check_agreement(net, spike_input(3, T, B, (6,)), (6,), tmp_path, fixed_point=False, compression=None)
    assert model.nodes["0"].bias is not None  # an Affine bias into a CubaLIF (du < 1): float backends only
    assert model.nodes["1"].shape == (10,)
