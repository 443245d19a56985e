"""How to train: :class:`FitConfig` (one dataclass, defaults with their reasons) and the time steps."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..datasets import Dataset
from ..errors import DatasetError, TrainingError


@dataclass(frozen=True)
class ConvLayers:
    """The hidden convolutions of a default convolutional network (channel counts come from
    ``hidden``): square ``kernel``, one stride per layer, ``padding``; each convolution feeds a LIF
    population, the last one's spikes are flattened into a dense readout."""

    strides: tuple[int, ...]
    kernel: int = 3
    padding: int = 1

    def __post_init__(self):
        if not self.strides or min(self.strides) < 1 or self.kernel < 1 or self.padding < 0:
            raise TrainingError(f"convolution layers {self} need one stride >= 1 per layer, kernel >= 1, padding >= 0")

    def shapes(self, input_shape, channels) -> list[tuple[int, int, int]]:
        """Output shape (c, h, w) of every convolution on ``input_shape`` (c, h, w)."""
        _, h, w = input_shape
        out = []
        for c, s in zip(channels, self.strides):
            h = (h + 2 * self.padding - self.kernel) // s + 1
            w = (w + 2 * self.padding - self.kernel) // s + 1
            if h < 1 or w < 1:
                raise TrainingError(f"convolution layers {self} shrink input {tuple(input_shape)} to nothing; use "
                                    "smaller strides or more padding")
            out.append((int(c), h, w))
        return out

    def synapses(self, input_shape, channels, n_out: int) -> int:
        """Weights of the network (kernel entries of every convolution, as :func:`spikefit.fsc.sparsity`
        and ``Synapse.nonzero`` count them, plus the dense readout's)."""
        c_in = [int(input_shape[0]), *channels[:-1]]
        conv = sum(a * b * self.kernel ** 2 for a, b in zip(c_in, channels))
        c, h, w = self.shapes(input_shape, channels)[-1]
        return conv + c * h * w * int(n_out)


# Per-dataset default networks. DEFAULT_HIDDEN: hidden layer sizes of an MLP, or the channel counts of
# the datasets in DEFAULT_CONV (whose entry gives the convolutions' geometry).
# digits-image: conv 1->16 3x3 pad 1 + LIF (16x8x8), conv 16->32 3x3 stride 2 pad 1 + LIF (32x4x4),
# dense 512->10 + LIF: 144 + 4,608 + 5,120 = 9,872 weights (the digits MLP's 64*128 + 128*10 = 9,472).
DEFAULT_HIDDEN = {"digits": (128,), "mnist1d": (256,), "digits-image": (16, 32)}
DEFAULT_CONV = {"digits-image": ConvLayers(strides=(1, 2))}
DEFAULT_STEPS = {"digits": 16, "mnist1d": 20, "digits-image": 16}  # rate codes need ~16-20 steps to resolve intensities
MODES = ("auto", "hard", "lloyd", "soft")                # CAT codebook updates (spikefit.cat.resolve_mode)


@dataclass
class FitConfig:
    """How to train. Defaults reach good accuracy on digits in ~15 s on 2 CPU cores."""

    # -- network (used when no model is given) ------------------------------------------------
    hidden: tuple[int, ...] | None = None  # hidden layer sizes (channel counts of a conv default, DEFAULT_CONV);
                                           # None: per dataset (digits 128, mnist1d 256, digits-image 16, 32)
    steps: int | None = None               # time steps T; None: per dataset (digits 16, mnist1d 20; a sequence its own t)
    du: float = 1.0                        # u = this step's input: no current state to round (Lava du=4095)
    dv: float = 0.125                      # 512/4096: a mild leak; exact on 12-bit decays (IF when the chip lacks LIF)
    vth: float = 1.0                       # threshold; weights scale to it
    encoding: str | None = None            # static inputs: "rate" (chips take spikes; fresh every epoch) or "current";
                                           # None: what the model expects (snnTorch/Norse files: current, else rate)
    # -- optimisation -----------------------------------------------------------------------
    batch_size: int = 64                   # small batches: more steps per epoch on a small dataset
    lr: float = 3e-3                       # Adam; float warm-up, CAT and pruning rounds
    prune_lr: float = 1e-3                 # recovery after each pruning round: a restart at lr would shake the codebook
    finetune_lr: float = 1e-3              # last stage: settle on the hard codebook
    logit_scale: float = 8.0               # logits = logit_scale * counts / T (a full-rate neuron = 8 nats)
    # -- stages (epochs) --------------------------------------------------------------------
    warmup_epochs: int = 20                # float accuracy plateaus near 20 epochs on digits
    init_warmup_epochs: int = 0            # a given (trained) model: its float weights start CAT as they are
    cat_epochs: int = 10                   # codebook and weights co-adapt
    prune_rounds: int = 9                  # budgets approached geometrically in small cuts: gentler than one cut
    prune_epochs: int = 1                  # recovery after each pruning round (9 x 1 ahead of 3 x 3 before CAT,
                                           # docs/method.md)
    prune_order: str = "before-cat"        # "before-cat": the rounds prune the float network, CAT learns the pruned
                                           # one (ahead at 90 % for every pruner, docs/method.md); "after-cat":
                                           # CAT first, the rounds prune the quantized network
    finetune_epochs: int = 5               # hard codebook, its values fixed (docs/method.md), lower learning rate
    # -- CAT ------------------------------------------------------------------------------------
    cat_mode: str = "auto"                 # "auto": "lloyd" for codebooks shared by many neurons (layer, core, chip
                                           # scope), "hard" per neuron (docs/method.md, measured both ways);
                                           # "hard" (STE, codebook learned), "lloyd" (a Lloyd step of the codebook
                                           # after every CAT step), "soft" (annealed attention)
    tau_start: float = 0.5                 # soft mode: attention temperature (x group weight variance) at CAT start
    tau_end: float = 0.005                 # ... and at CAT end, then hard
    max_weight_bits: int | None = 8        # Lava's mixed-sign 8-bit mantissa: the emulator and Lava run the fit
    # -- FSC -----------------------------------------------------------------------------------
    fisher_samples: int = 1024             # training samples per Fisher estimate (beyond ~1k scores are stable)
    fisher_shrinkage: float = 0.5          # weight of the connection's mean curvature in a synapse's FSC score
                                           # (spikefit.fsc.shrink_synapse_scores; docs/method.md, measured)
    prune_scorer: str = "fsc"              # "fsc" | "magnitude" | "random" (benchmarks)
    # -- data and runtime ------------------------------------------------------------------------
    train_limit: int | None = None         # first N training samples (tests, quick runs)
    test_limit: int | None = None          # first N test samples
    seed: int = 0                          # model init, spikes, order: same seed, same result
    threads: int | None = None             # torch threads; None keeps torch's default
    device: str = "auto"                   # "auto" (the first visible GPU, else the CPU), "cpu", "cuda", "cuda:N"
    precision: str = "fp32"                # "bf16": matmuls and convolutions of training steps in bfloat16
                                           # (autocast; neurons, loss and optimizer stay float32)
    deploy: bool = True                    # measure deployed accuracy on the fixed-point emulator

    def __post_init__(self):
        if self.hidden is not None:
            self.hidden = tuple(int(h) for h in self.hidden)
            if not self.hidden or min(self.hidden) < 1:
                raise TrainingError(f"hidden {self.hidden} must list at least one layer size, each at least 1")
        if self.cat_mode not in MODES:
            raise TrainingError(f"unknown cat_mode {self.cat_mode!r}; use one of {', '.join(MODES)}")
        if self.prune_order not in PRUNE_ORDERS:
            raise TrainingError(f"unknown prune_order {self.prune_order!r}; use one of {', '.join(PRUNE_ORDERS)}")
        if not 0.0 <= self.fisher_shrinkage <= 1.0:
            raise TrainingError(f"fisher_shrinkage {self.fisher_shrinkage} must lie in [0, 1]")
        if self.prune_scorer not in SCORERS:
            raise TrainingError(f"unknown prune_scorer {self.prune_scorer!r}; use one of {', '.join(SCORERS)}")
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise TrainingError(f"unknown encoding {self.encoding!r}; use one of {', '.join(ENCODINGS)}")
        for f in ("warmup_epochs", "init_warmup_epochs", "cat_epochs", "prune_rounds", "prune_epochs",
                  "finetune_epochs"):
            if getattr(self, f) < 0:
                raise TrainingError(f"{f} {getattr(self, f)} must be 0 or more")
        if self.precision not in PRECISIONS:
            raise TrainingError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if not isinstance(self.device, str) or not self.device:
            raise TrainingError(f"device {self.device!r} must be a string: auto, cpu, cuda or cuda:N")
        if self.batch_size < 1:
            raise TrainingError(f"batch_size {self.batch_size} must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise TrainingError(f"steps {self.steps} must be at least 1")

    @classmethod
    def preset(cls, name: str, **overrides) -> "FitConfig":
        """``"full"`` (the defaults) or ``"demo"`` (about a third of the epochs: a digits fit in ~5 s)."""
        presets = {"full": {}, "demo": dict(warmup_epochs=8, cat_epochs=4, prune_rounds=2, prune_epochs=2,
                                            finetune_epochs=3)}
        if name not in presets:
            raise TrainingError(f"unknown preset {name!r}; use one of {', '.join(presets)}")
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "prune_rounds" in d and "prune_order" not in d:   # written before the order was a choice: CAT first
            d["prune_order"] = "after-cat"
        if "prune_rounds" in d and "fisher_shrinkage" not in d:   # written before shrinkage: F_ij as estimated
            d["fisher_shrinkage"] = 0.0
        return cls(**d)


SCORERS = ("fsc", "magnitude", "random")
PRUNE_ORDERS = ("before-cat", "after-cat")
PRECISIONS = ("fp32", "bf16")
ENCODINGS = ("rate", "current")
CURRENT_CONVENTIONS = ("snntorch", "norse-1.1")  # libraries whose models take static inputs as currents


def default_hidden(dataset: Dataset, config: FitConfig) -> tuple[int, ...]:
    """The hidden sizes of the dataset's default network: the config's, else the per-dataset default;
    a convolutional default needs one channel count per convolution."""
    hidden = tuple(config.hidden or DEFAULT_HIDDEN.get(dataset.name, (128,)))
    conv = DEFAULT_CONV.get(dataset.name)
    if conv is not None and len(hidden) != len(conv.strides):
        raise TrainingError(f"hidden {hidden} gives {len(hidden)} channel counts but the default network of "
                            f"{dataset.name!r} has {len(conv.strides)} convolutions; pass {len(conv.strides)} "
                            f"(default {DEFAULT_HIDDEN[dataset.name]})")
    return hidden


def default_synapses(dataset: Dataset, hidden: tuple[int, ...]) -> int:
    """Weights of the dataset's default network with ``hidden`` sizes (channel counts of a conv default)."""
    conv = DEFAULT_CONV.get(dataset.name)
    if conv is not None:
        return conv.synapses(dataset.input_shape, hidden, dataset.n_classes)
    sizes = [dataset.n_inputs, *hidden, dataset.n_classes]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def steps_for(dataset: Dataset, config: FitConfig) -> int:
    """Time steps: the config's, else a sequence's own length, else the per-dataset default."""
    if config.steps is not None:
        if dataset.steps is not None and config.steps > dataset.steps:
            raise DatasetError(f"steps {config.steps} exceed the {dataset.steps} time steps of x_train "
                               f"{tuple(dataset.x_train.shape)}; pass --steps {dataset.steps} or fewer")
        return int(config.steps)
    return int(dataset.steps or DEFAULT_STEPS.get(dataset.name, 16))
