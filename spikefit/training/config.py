"""How to train: :class:`FitConfig` (one dataclass, defaults with their reasons) and the time steps."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..datasets import Dataset
from ..errors import DatasetError, TrainingError

DEFAULT_HIDDEN = {"digits": (128,), "mnist1d": (256,)}  # one hidden layer: accurate, fast on 2 cores
DEFAULT_STEPS = {"digits": 16, "mnist1d": 20}           # rate codes need ~16-20 steps to resolve intensities
MODES = ("hard", "soft")                                 # CAT assignment (spikefit.cat.MODES)


@dataclass
class FitConfig:
    """How to train. Defaults reach good accuracy on digits in ~15 s on 2 CPU cores."""

    # -- network (used when no model is given) ------------------------------------------------
    hidden: tuple[int, ...] | None = None  # hidden layer sizes; None: per dataset (digits 128, mnist1d 256)
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
    prune_rounds: int = 3                  # budgets approached geometrically: gentler than one cut
    prune_epochs: int = 3                  # recovery after each pruning round
    finetune_epochs: int = 5               # hard codebook, lower learning rate
    # -- CAT ------------------------------------------------------------------------------------
    cat_mode: str = "hard"                 # "hard" (STE) or "soft" (annealed DKM); hard measured better, docs/method.md
    tau_start: float = 0.5                 # soft mode: attention temperature (x group weight variance) at CAT start
    tau_end: float = 0.005                 # ... and at CAT end, then hard
    max_weight_bits: int | None = 8        # Lava's mixed-sign 8-bit mantissa: the emulator and Lava run the fit
    # -- FSC -----------------------------------------------------------------------------------
    fisher_samples: int = 1024             # training samples per Fisher estimate (beyond ~1k scores are stable)
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
        if self.cat_mode not in MODES:
            raise TrainingError(f"unknown cat_mode {self.cat_mode!r}; use one of {', '.join(MODES)}")
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
        return cls(**{k: v for k, v in d.items() if k in known})


SCORERS = ("fsc", "magnitude", "random")
PRECISIONS = ("fp32", "bf16")
ENCODINGS = ("rate", "current")
CURRENT_CONVENTIONS = ("snntorch", "norse-1.1")  # libraries whose models take static inputs as currents


def steps_for(dataset: Dataset, config: FitConfig) -> int:
    """Time steps: the config's, else a sequence's own length, else the per-dataset default."""
    if config.steps is not None:
        if dataset.steps is not None and config.steps > dataset.steps:
            raise DatasetError(f"steps {config.steps} exceed the {dataset.steps} time steps of x_train "
                               f"{tuple(dataset.x_train.shape)}; pass --steps {dataset.steps} or fewer")
        return int(config.steps)
    return int(dataset.steps or DEFAULT_STEPS.get(dataset.name, 16))
