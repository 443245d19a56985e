"""The neurons Lava runs: its LIF (``cuba-lif``, and ``lif`` / ``if`` as special cases). A network trained
for a chip's own neuron (its target's ``[neuron] models``, spikefit.capabilities) is refused with the
reason Lava's LIF cannot express that neuron exactly."""
from __future__ import annotations

from spikefit.capabilities import network_neuron
from spikefit.spec import GENERIC_MODELS

NEURONS = GENERIC_MODELS   # u <- u (1 - du) + a;  v <- v (1 - dv) + u + bias;  spike at v > vth, reset to 0

WHY = {
    "truenorth-lif": "its leak is linear (v <- v - sign(v) min(|v|, leak) every step), and Lava's LIF only leaks "
                     "multiplicatively (v <- v (1 - dv)); a bias is a constant drift, not a leak toward zero",
    "xylo-lif": "its decays are bit shifts with a minimum step of 1, the current decays before it is integrated, "
                "and it spikes up to 31 times a step with subtractive reset; Lava's LIF spikes once and resets to 0",
    "speck-if": "it spikes floor(v / vth) times a step; Lava's LIF spikes once and resets to 0",
    "akida-act": "it is a stateless activation of each step's input; Lava's LIF integrates a membrane over steps",
}


def refuse_chip_neuron(network, target, error) -> None:
    """Raise ``error`` (one line) when ``network`` runs a chip neuron Lava cannot express."""
    model, _, origin = network_neuron(network, target)
    if model is None or model in NEURONS:
        return
    raise error(f"Lava cannot run this network's {model} neurons ({origin}): {WHY.get(model, 'not a LIF')}; "
                f"fit it to a target whose neuron is {', '.join(NEURONS)}")
