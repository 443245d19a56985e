"""Stages: what happens on entering a stage, at every step, and on leaving it.

A stage trains ``epochs`` epochs at learning rate ``lr`` (cosine-decayed within the stage) after
its entry action; ``enter`` returns how many epochs it trains (a pruning round with nothing left to
prune trains none). The fit's plan (:mod:`spikefit.trainer`) is ``Warmup -> ChipPrune x rounds ->
Cat -> Finetune`` (``Cat`` before the rounds with ``FitConfig.prune_order="after-cat"``); the
compression benchmark's plans (:mod:`spikefit.baselines`) swap in ``Compress``, ``SparsityPrune`` and
``KMeansAfter``. ``Settle`` (the fit's ``Finetune`` is one) ends every plan: fine-tuning with the
codebook values fixed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .. import cat as C
from .. import fsc
from ..errors import TrainingError
from .engine import cat_schedule
from .loop import epoch_seed


@dataclass
class Stage:
    """Train ``epochs`` epochs at ``lr``; subclasses add entry, step and exit actions."""

    name: str
    epochs: int
    lr: float

    def __post_init__(self):
        if self.epochs < 0:
            raise TrainingError(f"stage {self.name!r}: epochs {self.epochs} must be 0 or more")

    def enter(self, engine) -> int:
        return self.epochs

    def on_step(self, engine, epoch: int, epochs: int, n: int) -> Callable[[], None] | None:
        return None

    def exit(self, engine) -> None:
        pass


@dataclass
class Warmup(Stage):
    """Float training; its accuracy is the float reference (``accuracy["float"]``)."""

    def exit(self, engine) -> None:
        engine.state.accuracy["float"] = engine.evaluate()


# -- the fit's stages (engine: spikefit.trainer.Trainer) -----------------------------------------

@dataclass
class Cat(Stage):
    """Clusterization-Aware Training with the target's codebook spec (core codebooks from the placement)."""

    def enter(self, engine) -> int:
        spec, groups = engine.spec, None
        if spec.M is not None and spec.scope == "core":
            groups = C.core_groups(engine.model, engine.target)
        elif spec.M is not None and spec.scope == "neuron" and multi_input(engine.model):
            # M values per neuron whichever connection a weight arrives on (TrueNorth: 4 weights per
            # neuron, one per axon type): one codebook row per neuron, shared across its connections
            spec, groups = replace(spec, scope="core"), neuron_groups(engine.model)
        C.attach_cat(engine.model, spec, groups)
        return self.epochs

    def on_step(self, engine, epoch, epochs, n):
        return cat_schedule(engine, engine.spec.mode, epoch, epochs, n)

    def exit(self, engine) -> None:
        C.harden(engine.model)
        engine.state.accuracy["cat"] = engine.evaluate()


@dataclass
class ChipPrune(Stage):
    """Pruning round ``round`` of ``rounds``: budgets approached geometrically (FSC), then recovery.
    Nothing binding: no pruning and no epochs."""

    round: int = 1
    rounds: int = 1

    def enter(self, engine) -> int:
        from .. import chipfit

        binding = chipfit.binding(engine.model, engine.target)
        if not binding:
            return 0
        engine.prune(self.round / self.rounds, self.round)
        engine.state.pruned[self.name] = {"binding": binding,
                                          **chipfit.usage(chipfit.report(engine.model, engine.target))}
        return self.epochs

    def on_step(self, engine, epoch, epochs, n):
        if self.name in engine.state.pruned and self.round < self.rounds and engine.config.prune_scorer == "fsc":
            return fisher_epochs(engine, epoch, n)
        return None

    def exit(self, engine) -> None:
        if self.name in engine.state.pruned:
            engine.state.accuracy["pruned"] = engine.evaluate()


@dataclass
class Settle(Stage):
    """The last stage: the weights settle, at a lower learning rate, on codebooks that no longer move."""

    def enter(self, engine) -> int:
        C.fix_codebooks(engine.model)
        return self.epochs


@dataclass
class Finetune(Settle):
    """The hard, fixed codebook, a lower learning rate; prunes once here when the budgets still bind."""

    def enter(self, engine) -> int:
        from .. import chipfit

        C.harden(engine.model)
        if chipfit.binding(engine.model, engine.target):
            engine.prune(1.0, engine.config.prune_rounds + 1)
            engine.state.pruned["finetune"] = chipfit.usage(chipfit.report(engine.model, engine.target))
            engine.state.accuracy["pruned"] = engine.evaluate()
        return super().enter(engine)


def multi_input(model) -> bool:
    """Some population receives more than one connection (e.g. feed-forward and recurrent)."""
    return any(len(model.incoming(p)) > 1 for p in model.populations())


def neuron_groups(model) -> tuple[dict[str, np.ndarray], int]:
    """Codebook groups (the form :func:`spikefit.cat.core_groups` returns): one per neuron of every
    population, shared by every dense connection into it; a convolution's rows are its channels."""
    from ..nn import Conv

    offset, total = {}, 0
    for p in model.populations():
        offset[p.name] = total
        total += p.size
    groups = {}
    for s in model.synapses():
        post = model.post_of(s)
        if isinstance(s, Conv):   # per-channel rows of a conv: its own groups after every dense neuron
            groups[s.name] = total + np.arange(s.n_out)
            total += s.n_out
        else:
            groups[s.name] = offset[post.name] + np.arange(s.n_out)
    return groups, total


# -- the compression benchmark's stages (engine: spikefit.training.engine.Engine) ------------------

CAT_METHODS = ("cat", "cat-lloyd", "cat-hard", "cat-soft", "fsc", "fsc-point", "magnitude", "random")


@dataclass
class Compress(Stage):
    """A compression method's quantizer, attached at entry (no target: M values per ``scope`` group)."""

    method: str = "cat"
    M: int | None = None
    scope: str = "layer"
    weight_bits: int | None = 8
    zero: bool = True
    mode: str | None = None     # set on entry: CAT's mode ("lloyd", "hard", "soft"), None otherwise

    def enter(self, engine) -> int:
        model, cfg = engine.model, engine.config
        if self.method in CAT_METHODS:
            if self.M is None and self.method.startswith("cat"):
                raise TrainingError(f"method {self.method!r} needs M (codebook size)")
            mode = {"cat-lloyd": "lloyd", "cat-hard": "hard", "cat-soft": "soft"}.get(self.method, cfg.cat_mode)
            self.mode = C.resolve_mode(mode, self.scope)
            if self.M is not None:
                C.attach_cat(model, C.CatSpec(self.M, self.scope, self.weight_bits, "layer", self.mode, self.zero))
        elif self.method == "uniform":
            if self.M is None or self.M < 2 or self.M & (self.M - 1):
                raise TrainingError(f"method 'uniform' needs M a power of two (2^bits values), got {self.M}")
            bits = int(math.log2(self.M))
            for s in model.synapses():
                qmax = max(2 ** (bits - 1) - 1, 1)
                init = 2 * float(s.weight.detach().abs().mean()) / math.sqrt(qmax)  # LSQ's initial step size
                s.quant = C.UniformQuantizer(bits, init)
        elif self.method == "ternary":
            for s in model.synapses():
                s.quant = C.TernaryQuantizer()
        return self.epochs

    def on_step(self, engine, epoch, epochs, n):
        return cat_schedule(engine, self.mode, epoch, epochs, n)

    def exit(self, engine) -> None:
        if self.mode is not None:
            C.harden(engine.model)


@dataclass
class SparsityPrune(Stage):
    """Pruning round ``round`` of ``rounds`` towards ``sparsity`` (geometric), scored by ``scorer``."""

    round: int = 1
    rounds: int = 1
    sparsity: float = 0.0
    scorer: str = "fsc"
    per_layer: bool = False      # every layer pruned to the level (else one global ranking)
    structured: bool = True      # FSC may remove whole neurons

    def enter(self, engine) -> int:
        if self.sparsity > 0:
            level = 1.0 - (1.0 - self.sparsity) ** (self.round / self.rounds)
            synapse, neuron = scores(self.scorer, engine, self.round)
            fsc.prune_to_sparsity(engine.model, synapse, level, per_layer=self.per_layer,
                                  neuron_scores=neuron if self.structured else None)
        return self.epochs

    def on_step(self, engine, epoch, epochs, n):
        if self.scorer == "fsc" and self.round < self.rounds and self.sparsity > 0:
            return fisher_epochs(engine, epoch, n)
        return None


@dataclass
class KMeansAfter(Stage):
    """Post-training quantization: k-means to M values per ``scope`` group, no training after it."""

    M: int | None = None
    scope: str = "layer"
    weight_bits: int | None = 8
    zero: bool = True

    def enter(self, engine) -> int:
        C.attach_cat(engine.model, C.CatSpec(self.M, self.scope, self.weight_bits, "layer", "hard", self.zero))
        C.harden(engine.model)
        return 0


def scores(scorer: str, engine, round_: int):
    """(synapse scores, neuron scores or None) of a pruner on the engine's Fisher samples: "fsc" the
    scores averaged over training (:func:`fisher_ema`), "fsc-point" this one evaluation."""
    if scorer == "magnitude":
        return fsc.magnitude_scores(engine.model), None
    if scorer == "random":
        rng = np.random.default_rng(epoch_seed(engine.config.seed, 10_000 + round_))
        return fsc.random_scores(engine.model, rng), None
    if scorer == "fsc":
        neuron, synapse = fisher_ema(engine)
    else:
        neuron, synapse = fsc.fisher_scores(engine.model, engine.data.x_fisher, engine.data.y_fisher,
                                            engine.logit_scale, device=engine.device,
                                            shrinkage=engine.config.fisher_shrinkage)
    return synapse, neuron


# -- FSC scores averaged over training ---------------------------------------------------------------

FISHER_DECAY = 0.5   # weight of the average so far at every new evaluation (docs/method.md: FSC over training)


def fisher_ema(engine, x=None, y=None, decay: float = FISHER_DECAY):
    """FSC scores (F_i of every neuron, F_ij of every synapse) averaged over training: this evaluation
    on ``x``, ``y`` (default: all the engine's Fisher samples) blended into ``engine.fisher_ema`` as
    ``decay * average + (1 - decay) * new``. A population or connection whose shape changed (neurons
    removed) starts over from the new scores; pruned synapses stay ``-inf``. Returns (neuron, synapse)."""
    x = engine.data.x_fisher if x is None else x
    y = engine.data.y_fisher if y is None else y
    neuron, synapse = fsc.fisher_scores(engine.model, x, y, engine.logit_scale, device=engine.device,
                                        shrinkage=engine.config.fisher_shrinkage)
    old = getattr(engine, "fisher_ema", None)
    if old is not None:
        def same(d, k, v):
            return k in d and d[k].shape == v.shape
        neuron = {k: decay * old[0][k] + (1 - decay) * v if same(old[0], k, v) else v for k, v in neuron.items()}
        synapse = {k: np.where(np.isfinite(v), decay * np.where(np.isfinite(old[1][k]), old[1][k], 0) + (1 - decay) * v,
                               -np.inf) if same(old[1], k, v) else v for k, v in synapse.items()}
    engine.fisher_ema = (neuron, synapse)
    return neuron, synapse


def fisher_epochs(engine, epoch: int, n: int) -> Callable[[], None]:
    """A pruning round's recovery (every round but the last): at the end of every epoch one more
    evaluation into :func:`fisher_ema`, on quarter ``k mod 4`` of the Fisher samples at epoch k."""
    per = -(-n // engine.config.batch_size)
    count = [epoch * per]

    def step() -> None:
        count[0] += 1
        if count[0] % per == 0:
            e = count[0] // per
            x, y = engine.data.x_fisher, engine.data.y_fisher
            q = max(1, x.shape[1] // 4)
            sl = slice((e % 4) * q, (e % 4 + 1) * q)
            if y[sl].numel():
                fisher_ema(engine, x[:, sl], y[sl])     # on the training device; the model is unchanged
    return step


def host(engine, action):
    """A mask or score change during a stage's epochs, with the model on the host (numpy
    bookkeeping), as the engine runs entry and exit actions; a no-op move on the CPU."""
    on_host = getattr(engine, "on_host", None)
    return on_host(action) if on_host is not None else action()
