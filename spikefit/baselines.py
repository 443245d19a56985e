"""Compression methods as stage plans on the fit's training engine, for benchmarks: same network,
data, steps and loop as ``spikefit fit`` (:class:`spikefit.training.engine.Engine`).

``run_method(method, dataset, M, sparsity, seed, config) -> dict`` trains the dataset's default
network with :func:`plan`: a float warm-up of ``config.warmup_epochs``, then a compression stage of the same length
for every method (``cat_epochs + prune_rounds * prune_epochs + finetune_epochs`` epochs), then
measures test accuracy. Methods:

=============  ==================================================================================
``float``      no quantization
``cat``        CAT in its default mode (``FitConfig.cat_mode``: auto, Lloyd per layer, hard per neuron), M values
               per scope group
``cat-hard``   CAT, nearest-centroid + straight-through, the codebook learned by gradient throughout
``cat-lloyd``  CAT, nearest-centroid + straight-through; the codebook follows one Lloyd step per training step in
               the CAT stage (then learned by gradient in pruning rounds after CAT, fixed in fine-tuning)
``cat-soft``   CAT, soft assignment (attention, annealed temperature, learned centroids), hard at the end
``kmeans``     post-training k-means to M values per scope group (float training, no fine-tune)
``uniform``    QAT on a uniform ``log2(M)``-bit signed grid ``s * [-2^(k-1), 2^(k-1)-1]``, learned s
``ternary``    ternary weights (TWN: threshold 0.7 mean|w|, closed-form scale), straight-through
``fsc``        CAT (M; float when M is None) + Fisher Spike Contribution pruning, scores averaged over training
``fsc-point``  the same with the scores of one evaluation at every round
``magnitude``  CAT (M; float when M is None) + magnitude pruning
``random``     CAT (M; float when M is None) + random pruning
``lsq``        LSQ QAT (Esser et al. 2020): learned step with its gradient scale, M non-zero levels ±1..±M/2
``dkm``        DKM (Cho et al. 2022): attention over |w - c| / tau, centroids re-estimated from it (EM)
``kmeans-qat`` k-means QAT: nearest centroid + straight-through, centroids re-clustered (Lloyd) every step
``gmp``        CAT + gradual magnitude pruning of the latent weights (Zhu & Gupta cubic schedule), global
``gmp-layer``  the same, every layer to the level
``snip``       CAT + SNIP saliency |w dL/dw| pruning in the FSC rounds, global
``rewire``     CAT + one global cut, then Deep-Rewiring-style drop / random regrowth at constant counts per layer
``rigl``       the same with RigL's regrowth: the dormant synapses of largest |dL/dw~| come back
``fsc-gmp``    CAT + FSC on the cubic schedule of ``gmp``, re-scored at the end of every epoch
``fsc-regrow`` CAT + FSC rounds; in every recovery epoch low-F_ij synapses swap for high-|dL/dw| dormant ones
``dense``      CAT on the dense network whose hidden width (channel counts of a conv default, all scaled by
               one factor) has the synapses left at ``sparsity`` (a convolution's weights: its kernel entries)
=============  ==================================================================================

Quantization methods prune with FSC when ``sparsity > 0``. Pruning is iterative: ``prune_rounds``
rounds reach ``sparsity`` geometrically, each followed by ``prune_epochs`` of fine-tuning; by default
(``FitConfig.prune_order``) they prune the float network before the compression stage, as ``spikefit fit``
does. Every pruner (GMP and rewiring in one stage of the rounds' epochs) takes the same place.
"""
from __future__ import annotations

import statistics
from dataclasses import replace
from functools import partial

import torch

from . import cat as C
from . import fsc
from .datasets import encode, load_dataset
from .errors import TrainingError
from .nn import count_loss
from .training.config import FitConfig, default_hidden, default_synapses, steps_for
from .training.engine import Engine, TrainData
from .training.loop import deterministic, make_optimizer
from .training.stages import Compress, KMeansAfter, Settle, SparsityPrune, Stage, Warmup
from .compress.pruners import equal_width
from .compress.stages import QAT_METHODS, GradualMagnitude, QATCompress, Rewire, ScoredPrune
from .trainer import default_model

METHODS = ("float", "cat", "cat-lloyd", "cat-hard", "cat-soft", "kmeans", "uniform", "ternary", "fsc", "fsc-point",
           "magnitude", "random", "lsq", "dkm", "kmeans-qat", "gmp", "gmp-layer", "snip", "rewire", "rigl",
           "fsc-gmp", "fsc-regrow", "dense")
PRUNERS = {"fsc": "fsc", "magnitude": "magnitude", "random": "random", "gmp": "gmp", "gmp-layer": "gmp",
           "snip": "snip", "rewire": "rewire", "rigl": "rewire", "fsc-point": "fsc-point", "fsc-gmp": "gmp",
           "fsc-regrow": "fsc-regrow"}
# CAT at M (float when M is None) under these pruners and the dense reference
CAT_UNDER = ("gmp", "gmp-layer", "snip", "rewire", "rigl", "fsc-point", "fsc-gmp", "fsc-regrow", "dense")
# default allocation of each pruner: one ranking over all layers, or every layer to the level
ALLOCATION = {"fsc": "global", "fsc-point": "global", "fsc-gmp": "global", "fsc-regrow": "global", "gmp": "global",
              "snip": "global", "rewire": "global", "rigl": "global", "magnitude": "layer", "random": "layer",
              "gmp-layer": "layer"}


def plan(method: str, M: int | None, sparsity: float, config: FitConfig, *, scope: str = "layer",
         weight_bits: int | None = 8, allocation: str | None = None, fsc_neurons: bool = True,
         zero: bool = True) -> list[Stage]:
    """The method's stage plan on the training engine: float warm-up, the pruning towards ``sparsity``
    (rounds, each followed by recovery epochs, or the pruner's one stage) and the compression stage (its
    quantizer) in ``config.prune_order``, fine-tune, and for ``kmeans`` the post-training quantization.
    Without pruning (``sparsity`` 0) the rounds' epochs train as one stage after the compression stage,
    so that every method trains as many epochs at the same learning rates."""
    cfg = config
    scorer = PRUNERS.get(method, "fsc")
    per_layer = (allocation or ALLOCATION.get(method, ALLOCATION[scorer])) == "layer"
    if method in QAT_METHODS:
        compress: Stage = QATCompress("compress", cfg.cat_epochs, cfg.lr, method=method, M=M, weight_bits=weight_bits,
                                      zero=zero, scope=scope)
    else:  # the method's quantizer; CAT under every pruner and the dense reference (float when M is None)
        compress = Compress("compress", cfg.cat_epochs, cfg.lr, method="fsc" if method in CAT_UNDER else method,
                            M=M, scope=scope, weight_bits=weight_bits, zero=zero)
    span = cfg.prune_rounds * cfg.prune_epochs     # every pruner trains as many epochs as FSC's rounds
    if sparsity <= 0:
        prune: list[Stage] = [Stage("train", span, cfg.prune_lr)]
    elif scorer == "gmp":
        prune = [GradualMagnitude("prune", span, cfg.prune_lr, sparsity=sparsity, per_layer=per_layer,
                                  scorer="fsc" if method == "fsc-gmp" else "magnitude")]
    elif scorer == "rewire":
        prune = [Rewire("prune", span, cfg.prune_lr, sparsity=sparsity, grow="gradient" if method == "rigl" else "random",
                        per_layer=per_layer)]
    else:
        kind = ScoredPrune if scorer in ("snip", "fsc-regrow") else SparsityPrune
        prune = [kind(f"prune{r}", cfg.prune_epochs, cfg.prune_lr, round=r, rounds=cfg.prune_rounds,
                      sparsity=sparsity, scorer=scorer, per_layer=per_layer,
                      structured=scorer in ("fsc", "fsc-point", "fsc-regrow") and fsc_neurons)
                 for r in range(1, cfg.prune_rounds + 1)]
    middle = prune + [compress] if sparsity > 0 and cfg.prune_order == "before-cat" else [compress] + prune
    stages = [Warmup("warmup", cfg.warmup_epochs, cfg.lr), *middle, Settle("finetune", cfg.finetune_epochs,
                                                                           cfg.finetune_lr)]
    if method == "kmeans":
        stages.append(KMeansAfter("kmeans", 0, cfg.finetune_lr, M=M, scope=scope, weight_bits=weight_bits, zero=zero))
    return stages


def run_method(method: str, dataset: str, M: int | None, sparsity: float, seed: int,
               config: FitConfig | None = None, *, scope: str = "layer", weight_bits: int | None = 8,
               threads: int | None = None, allocation: str | None = None, fsc_neurons: bool = True,
               zero: bool = True, keep_network: bool = False) -> dict:
    """Train with ``method`` and return accuracy, float accuracy (after the shared warm-up) and the
    median wall time of one training step in the compression stage (``step_time``) and in the float
    warm-up (``float_step_time``).

    :param scope: codebook scope of CAT and k-means ("layer", "neuron" or "chip"; "core" groups come from a
        target's placement, which the benchmark has none of).
    :param weight_bits: integer grid of the codebook values (None: no grid).
    :param allocation: how a sparsity level is shared between layers: "global" (one ranking over
        all synapses) or "layer" (every layer pruned to the level); None: "global" for FSC, whose
        scores are comparable across layers (loss units), "layer" for magnitude and random.
    :param fsc_neurons: FSC may remove whole hidden neurons when that costs less loss per freed
        synapse (F_i / k_i) than single synapses (F_ij); False: synapses only.
    :param zero: CAT and k-means may set a weight to 0 (an absent synapse) besides the M values.
    :param keep_network: also return the trained network (``"network"``, with the steps, encoding and
        seed of its test spikes in its metadata) for measurements such as energy per inference."""
    if method not in METHODS:
        raise TrainingError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not 0.0 <= sparsity < 1.0:
        raise TrainingError(f"sparsity {sparsity} must lie in [0, 1)")
    if allocation not in (None, "global", "layer"):
        raise TrainingError(f"unknown allocation {allocation!r}; use 'global' or 'layer'")
    cfg = replace(config or FitConfig(), seed=seed)
    ds = load_dataset(dataset)
    steps = steps_for(ds, cfg)
    train_sparsity = sparsity
    if method == "dense":  # the capacity reference: as many synapses as the pruned network keeps, all dense
        hidden = default_hidden(ds, cfg)          # widths, or channel counts of a conv default
        count = partial(default_synapses, ds)      # weights: kernel entries of a convolution, as fsc.sparsity
        budget = int(round(count(hidden) * (1 - sparsity)))
        cfg = replace(cfg, hidden=equal_width(ds.n_inputs, hidden, ds.n_classes, budget, count=count))
        train_sparsity = 0.0
    with deterministic(threads or cfg.threads):
        torch.manual_seed(seed)
        data = TrainData.build(ds, steps, cfg.encoding or "rate", cfg)
        stages = plan(method, M, train_sparsity, cfg, scope=scope, weight_bits=weight_bits, allocation=allocation,
                      fsc_neurons=fsc_neurons, zero=zero)
        engine = Engine(default_model(ds, cfg), data, stages, cfg, stage_accuracy=False)
        engine.run()
        acc = engine.evaluate()
        distinct = C.distinct_per_group(engine.model)
    times = [t for name, ts in engine.timers.items() if name != "warmup" for t in ts]
    float_times = engine.timers.get("warmup", [])
    pruned = PRUNERS.get(method, "fsc")
    return {"method": method, "dataset": dataset, "M": M, "sparsity": sparsity, "seed": seed, "scope": scope,
            "zero": zero if method not in ("float", "uniform", "ternary", "lsq") else None,
            "fsc_neurons": fsc_neurons if method.startswith("fsc") and train_sparsity else None,
            "allocation": (allocation or ALLOCATION.get(method, ALLOCATION[pruned])) if train_sparsity else None,
            "hidden": [p.size for p in engine.model.populations()[:-1]],       # neurons per hidden layer
            "shapes": [list(p.shape) for p in engine.model.populations()[:-1]],  # (channels, h, w) of a conv layer
            "synapses": sum(s.nonzero() for s in engine.model.synapses()),
            "accuracy": acc, "float_accuracy": engine.state.accuracy["float"],
            "step_time": statistics.median(times) if times else None,
            "float_step_time": statistics.median(float_times) if float_times else None,
            "measured_sparsity": fsc.sparsity(engine.model),
            "max_distinct": max(distinct.values()) if distinct else None,
            **({"network": engine.model.to_network(metadata={"steps": steps, "encoding": cfg.encoding or "rate",
                                                             "seed": seed})}
               if keep_network else {})}


def step_time_ratio(dataset: str, M: int = 4, scope: str = "layer", mode: str | None = None, steps: int = 60,
                    config: FitConfig | None = None, weight_bits: int | None = 8, threads: int | None = None) -> dict:
    """Median wall time of one training step (forward, backward, Adam, masks) of the float network
    and of the same network under CAT, measured alternately on the same batches so that machine
    load affects both alike; a CAT step in "lloyd" mode (default: the config's ``cat_mode``) includes
    its Lloyd step. Returns float_step, cat_step (seconds) and ratio = cat / float."""
    import time

    cfg = config or FitConfig()
    mode = C.resolve_mode(mode or cfg.cat_mode, scope)
    ds = load_dataset(dataset)
    T = steps_for(ds, cfg)
    scale = cfg.logit_scale / T
    with deterministic(threads or cfg.threads):
        torch.manual_seed(cfg.seed)
        plain = default_model(ds, cfg)
        quant = default_model(ds, cfg)
        quant.load_state_dict(plain.state_dict())
        C.attach_cat(quant, C.CatSpec(M, scope, weight_bits, "layer", mode))
        opts = {id(m): make_optimizer(m, cfg.lr) for m in (plain, quant)}
        x = torch.as_tensor(encode(ds.x_train[:cfg.batch_size * 8], T, cfg.encoding or "rate", seed=cfg.seed))
        y = torch.as_tensor(ds.y_train[:cfg.batch_size * 8])
        times = {id(plain): [], id(quant): []}
        for k in range(steps + 5):
            idx = torch.arange(k % 8 * cfg.batch_size, (k % 8 + 1) * cfg.batch_size)
            for m in ((plain, quant) if k % 2 else (quant, plain)):
                t0 = time.perf_counter()
                loss = count_loss(m(x[:, idx]), y[idx], scale)
                opts[id(m)].zero_grad(set_to_none=True)
                loss.backward()
                opts[id(m)].step()
                m.apply_masks()
                if m is quant and mode == "lloyd":
                    C.lloyd_step(m)
                if k >= 5:  # the first steps warm caches and allocators
                    times[id(m)].append(time.perf_counter() - t0)
    f, c = statistics.median(times[id(plain)]), statistics.median(times[id(quant)])
    return {"dataset": dataset, "M": M, "scope": scope, "mode": mode, "float_step": f, "cat_step": c, "ratio": c / f}
