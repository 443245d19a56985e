"""Stages of the compression baselines and method variants (engine:
:class:`spikefit.training.engine.Engine`; plans: :func:`spikefit.baselines.plan`).

* :class:`QATCompress`: attaches LSQ, DKM or k-means QAT for the compression stage;
* :class:`GradualMagnitude`: one pruning stage of ``prune_rounds * prune_epochs`` epochs with Zhu &
  Gupta's cubic schedule on the latent weights over its first ``prune_span`` of steps;
* :class:`ScoredPrune`: a pruning round (as :class:`~spikefit.training.stages.SparsityPrune`) scored
  by SNIP, or by FSC with RigL-style regrowth in every recovery epoch;
* :class:`Rewire`: one cut to the sparsity by latent magnitude, then Deep-Rewiring-style drop and
  random regrowth (or RigL's gradient regrowth) every ``interval`` steps at a constant synapse count
  per connection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import cat as C
from .. import fsc
from ..errors import TrainingError
from ..quantizers import Codebook
from ..training.engine import soft_schedule
from ..training.loop import epoch_seed
from ..training.stages import SparsityPrune, Stage, host
from . import pruners as P
from .quantizers_qat import DKMQuantizer, KMeansQATQuantizer, LSQQuantizer

QAT_METHODS = ("lsq", "dkm", "kmeans-qat")


@dataclass
class QATCompress(Stage):
    """LSQ (M even: ±1..±M/2 steps; one step per layer), DKM or k-means QAT at M values per ``scope``
    group, for the stage; their codebooks stay fixed after it."""

    method: str = "lsq"
    M: int | None = None
    weight_bits: int | None = 8
    zero: bool = True
    scope: str = "layer"         # codebook scope of DKM and k-means QAT ("layer" or "neuron")

    def __post_init__(self):
        super().__post_init__()
        if self.method not in QAT_METHODS:
            raise TrainingError(f"unknown QAT method {self.method!r}; use one of {', '.join(QAT_METHODS)}")
        if self.scope not in ("layer", "neuron") or (self.method == "lsq" and self.scope != "layer"):
            raise TrainingError(f"method {self.method!r} does not run at scope {self.scope!r}; use scope 'layer'"
                                + ("" if self.method == "lsq" else " or 'neuron'"))

    def enter(self, engine) -> int:
        model = engine.model
        if self.M is None:
            raise TrainingError(f"method {self.method!r} needs M (number of weight values)")
        if self.method == "lsq":
            for s in model.synapses():
                s.quant = LSQQuantizer(self.M, s.weight * s.mask)
            return self.epochs
        # CAT's codebook on the chip grid (scale, k-means init from the float weights), another assignment
        C.attach_cat(model, C.CatSpec(self.M, self.scope, self.weight_bits, "layer", "hard", self.zero))
        for s in model.synapses():
            old = s.quant
            cb = Codebook(old.codebook.centers.detach().numpy(), old.codebook.scale, old.codebook.bits)
            groups = old.groups.numpy()
            if self.method == "dkm":
                q = DKMQuantizer(cb, groups, self.scope, tau=engine.config.tau_start, zero=self.zero)
            else:
                q = KMeansQATQuantizer(cb, groups, self.scope, zero=self.zero)
            q.sigma2.copy_(old.sigma2)
            s.quant = q
        return self.epochs

    def on_step(self, engine, epoch, epochs, n):
        return soft_schedule(engine, epoch, epochs, n) if self.method == "dkm" else None

    def exit(self, engine) -> None:
        for s in engine.model.synapses():
            if isinstance(s.quant, KMeansQATQuantizer):
                s.quant.recluster = False
        C.harden(engine.model)


def _steps(engine, n: int) -> int:
    return -(-n // engine.config.batch_size)


@dataclass
class GradualMagnitude(Stage):
    """Zhu & Gupta gradual magnitude pruning of the latent weights to ``sparsity``, every
    ``interval`` steps (fewer on a short stage: at least ~8 pruning steps) over the first
    ``prune_span`` of the stage, then recovery at that level."""

    sparsity: float = 0.0
    per_layer: bool = False
    interval: int = 10
    prune_span: float = 2 / 3
    scorer: str = "magnitude"    # "fsc": FSC scores (synapses and whole neurons) at every pruning step

    def _prune(self, engine, level: float) -> None:
        if self.scorer == "fsc":
            neuron, synapse = fsc.fisher_scores(engine.model, engine.data.x_fisher, engine.data.y_fisher,
                                                engine.logit_scale, shrinkage=engine.config.fisher_shrinkage)
            fsc.prune_to_sparsity(engine.model, synapse, level, per_layer=self.per_layer,
                                  neuron_scores=None if self.per_layer else neuron)
            return
        fsc.prune_to_sparsity(engine.model, P.latent_magnitude_scores(engine.model), level, per_layer=self.per_layer)

    def enter(self, engine) -> int:
        if self.epochs == 0 and self.sparsity > 0:
            self._prune(engine, self.sparsity)
        return self.epochs

    def on_step(self, engine, epoch, epochs, n):
        if self.sparsity <= 0:
            return None
        per = _steps(engine, n)
        end = max(1, int(round(self.prune_span * epochs * per)))
        every = max(1, min(self.interval, end // 8))   # at least ~8 pruning steps on short stages
        if self.scorer == "fsc":
            every = per                                 # FSC scores once per epoch (1024 samples)
        count = [epoch * per]

        def step() -> None:
            count[0] += 1
            c = count[0]
            if c <= end and (c % every == 0 or c == end):
                host(engine, lambda: self._prune(engine, P.gmp_level(c / end, self.sparsity)))
        return step


@dataclass
class ScoredPrune(SparsityPrune):
    """A pruning round scored by ``snip`` or ``fsc-regrow`` (FSC, then RigL-style regrowth in every
    recovery epoch)."""

    regrow: float = 0.1          # fsc-regrow: fraction of synapses moved in the first round's epochs

    def enter(self, engine) -> int:
        if self.sparsity > 0:
            level = 1.0 - (1.0 - self.sparsity) ** (self.round / self.rounds)
            if self.scorer == "snip":
                synapse, neuron = P.snip_scores(engine.model, engine.data.x_fisher, engine.data.y_fisher,
                                                engine.logit_scale), None
            elif self.scorer == "fsc-regrow":
                neuron, synapse = fsc.fisher_scores(engine.model, engine.data.x_fisher, engine.data.y_fisher,
                                                    engine.logit_scale, shrinkage=engine.config.fisher_shrinkage)
            else:
                raise TrainingError(f"unknown scorer {self.scorer!r}; use 'snip' or 'fsc-regrow'")
            fsc.prune_to_sparsity(engine.model, synapse, level, per_layer=self.per_layer,
                                  neuron_scores=neuron if self.structured else None)
        return self.epochs

    def on_step(self, engine, epoch, epochs, n):
        if self.scorer == "fsc-regrow" and self.sparsity > 0:
            return self._regrow_step(engine, epoch, epochs, n)
        return None

    def _regrow_step(self, engine, epoch, epochs, n):
        """At the middle of every recovery epoch: the ``regrow`` fraction (halved each round) of every
        connection's synapses of lowest F_ij dormant, as many of largest |dL/dw~| back."""
        per = _steps(engine, n)
        count = [0]
        frac = self.regrow / 2 ** (self.round - 1)

        def step() -> None:
            count[0] += 1
            if count[0] == max(per // 2, 1):
                def act():
                    x, y = engine.data.x_fisher, engine.data.y_fisher
                    synapse = fsc.fisher_scores(engine.model, x, y, engine.logit_scale,
                                                shrinkage=engine.config.fisher_shrinkage)[1]
                    P.regrow(engine.model, synapse, P.dense_gradient(engine.model, x, y, engine.logit_scale), frac)
                host(engine, act)
        return step


@dataclass
class Rewire(Stage):
    """Cut to ``sparsity`` by latent magnitude on entry (every connection to the level, or one global
    ranking), then every
    ``interval`` steps (fewer on a short stage) over the first ``rewire_span`` of the stage rewire a
    fraction of synapses (cosine-decayed from ``rate``) at a constant count per connection."""

    sparsity: float = 0.0
    interval: int = 20
    rate: float = 0.2
    rewire_span: float = 0.75
    grow: str = "random"         # "random" (Deep R, SET) or "gradient" (RigL: largest |dL/dw~| on 256 samples)
    per_layer: bool = True       # the entry cut: every connection to the level, or one global ranking

    def enter(self, engine) -> int:
        if self.sparsity > 0:
            fsc.prune_to_sparsity(engine.model, P.latent_magnitude_scores(engine.model), self.sparsity,
                                  per_layer=self.per_layer)
        self.gen = torch.Generator().manual_seed(epoch_seed(engine.config.seed, 20_000))
        return self.epochs

    def on_step(self, engine, epoch, epochs, n):
        if self.sparsity <= 0:
            return None
        per = _steps(engine, n)
        end = max(1, int(round(self.rewire_span * epochs * per)))
        every = max(1, min(self.interval, end // 8))   # at least ~8 rewiring steps on short stages
        count = [epoch * per]

        def step() -> None:
            count[0] += 1
            c = count[0]
            if c < end and c % every == 0:
                rate = self.rate * 0.5 * (1 + math.cos(math.pi * c / end))
                if self.grow == "gradient":
                    def act():
                        x, y = engine.data.x_fisher[:, :256], engine.data.y_fisher[:256]
                        grads = P.dense_gradient(engine.model, x, y, engine.logit_scale)
                        P.regrow(engine.model, P.latent_magnitude_scores(engine.model), grads, rate)
                    host(engine, act)
                else:
                    host(engine, lambda: P.rewire(engine.model, rate, self.gen))
        return step
