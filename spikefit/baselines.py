"""Compression methods in one harness, for benchmarks: same network, data, steps and training loop.

``run_method(method, dataset, M, sparsity, seed, config) -> dict`` trains the dataset's default
network: a float warm-up of ``config.warmup_epochs``, then a compression stage of the same length
for every method (``cat_epochs + prune_rounds * prune_epochs + finetune_epochs`` epochs), then
measures test accuracy. Methods:

=============  ==================================================================================
``float``      no quantization
``cat``        CAT with the default assignment (hard), M values per scope group
``cat-hard``   CAT, nearest-centroid + straight-through
``cat-soft``   CAT, DKM-like soft assignment with annealed temperature, hard at the end
``kmeans``     post-training k-means to M values per scope group (float training, no fine-tune)
``uniform``    QAT on a uniform ``log2(M)``-bit signed grid ``s * [-2^(k-1), 2^(k-1)-1]``, learned s
``ternary``    ternary weights (TWN: threshold 0.7 mean|w|, closed-form scale), straight-through
``fsc``        CAT (M; float when M is None) + Fisher Spike Contribution pruning
``magnitude``  CAT (M; float when M is None) + magnitude pruning
``random``     CAT (M; float when M is None) + random pruning
=============  ==================================================================================

Quantization methods prune with FSC when ``sparsity > 0``. Pruning is iterative: ``prune_rounds``
rounds reach ``sparsity`` geometrically, each followed by ``prune_epochs`` of fine-tuning.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import replace

import numpy as np
import torch

from . import cat as C
from . import fsc
from .datasets import load_dataset
from .errors import TrainingError
from .nn import count_loss
from .trainer import (FitConfig, default_model, deterministic, encode, epoch_seed, evaluate, make_optimizer,
                      set_lr, stage_lr, steps_for, train_epoch)

METHODS = ("float", "cat", "cat-hard", "cat-soft", "kmeans", "uniform", "ternary", "fsc", "magnitude", "random")
PRUNERS = {"fsc": "fsc", "magnitude": "magnitude", "random": "random"}


def _quantizer_setup(method: str, model, M: int | None, scope: str, weight_bits: int | None, config: FitConfig,
                     zero: bool = True):
    """Attach the method's weight quantizer at the start of the compression stage."""
    if method in ("cat", "cat-hard", "cat-soft", "fsc", "magnitude", "random"):
        if M is None and method.startswith("cat"):
            raise TrainingError(f"method {method!r} needs M (codebook size)")
        mode = {"cat": config.cat_mode, "cat-hard": "hard", "cat-soft": "soft"}.get(method, config.cat_mode)
        if M is not None:
            C.attach_cat(model, C.CatSpec(M, scope, weight_bits, "layer", mode, zero))
        return mode
    if method == "uniform":
        if M is None or M < 2 or M & (M - 1):
            raise TrainingError(f"method 'uniform' needs M a power of two (2^bits values), got {M}")
        bits = int(math.log2(M))
        for s in model.synapses():
            w = s.weight.detach()
            qmax = max(2 ** (bits - 1) - 1, 1)
            init = 2 * float(w.abs().mean()) / math.sqrt(qmax)  # LSQ's initial step size
            s.quant = C.UniformQuantizer(bits, init)
        return None
    if method == "ternary":
        for s in model.synapses():
            s.quant = C.TernaryQuantizer()
        return None
    return None


def run_method(method: str, dataset: str, M: int | None, sparsity: float, seed: int,
               config: FitConfig | None = None, *, scope: str = "layer", weight_bits: int | None = 8,
               threads: int | None = None, allocation: str | None = None, fsc_neurons: bool = True,
               zero: bool = True) -> dict:
    """Train with ``method`` and return accuracy, float accuracy (after the shared warm-up) and the
    median wall time of one training step in the compression stage (``step_time``) and in the float
    warm-up (``float_step_time``).

    :param scope: codebook scope of CAT and k-means ("layer", "neuron", "core" needs no packing here).
    :param weight_bits: integer grid of the codebook values (None: no grid).
    :param allocation: how a sparsity level is shared between layers: "global" (one ranking over
        all synapses) or "layer" (every layer pruned to the level); None: "global" for FSC, whose
        scores are comparable across layers (loss units), "layer" for magnitude and random.
    :param fsc_neurons: FSC may remove whole hidden neurons when that costs less loss per freed
        synapse (F_i / k_i) than single synapses (F_ij); False: synapses only.
    :param zero: CAT and k-means may set a weight to 0 (an absent synapse) besides the M values."""
    if method not in METHODS:
        raise TrainingError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not 0.0 <= sparsity < 1.0:
        raise TrainingError(f"sparsity {sparsity} must lie in [0, 1)")
    if allocation not in (None, "global", "layer"):
        raise TrainingError(f"unknown allocation {allocation!r}; use 'global' or 'layer'")
    cfg = replace(config or FitConfig(), seed=seed)
    ds = load_dataset(dataset)
    T = steps_for(ds, cfg)
    scale = cfg.logit_scale / T
    with deterministic(threads or cfg.threads):
        torch.manual_seed(seed)
        model = default_model(ds, cfg)
        x_train, y_train = ds.x_train[:cfg.train_limit], torch.as_tensor(ds.y_train[:cfg.train_limit])
        x_test = torch.as_tensor(encode(ds.x_test[:cfg.test_limit], T, cfg.encoding or "rate", seed=seed * 2 + 1))
        y_test = ds.y_test[:cfg.test_limit]
        fisher_n = min(cfg.fisher_samples, len(y_train))
        x_fisher = torch.as_tensor(encode(x_train[:fisher_n], T, cfg.encoding or "rate", seed=epoch_seed(seed, -2)))
        epoch = [0]

        def run_epochs(n: int, lr: float, timer: list | None = None, on_step_factory=None):
            opt = make_optimizer(model, lr)
            for k in range(n):
                set_lr(opt, stage_lr(lr, k, n))
                x = torch.as_tensor(encode(x_train, T, cfg.encoding or "rate", seed=epoch_seed(seed, epoch[0])))
                gen = torch.Generator().manual_seed(epoch_seed(seed, epoch[0]))
                on_step = on_step_factory(k, n, x.shape[1]) if on_step_factory else None
                train_epoch(model, x, y_train, opt, cfg.batch_size, scale, gen, on_step, timer)
                epoch[0] += 1

        float_times: list[float] = []
        run_epochs(cfg.warmup_epochs, cfg.lr, float_times)
        float_acc = evaluate(model, x_test, y_test)

        ptq = method == "kmeans"
        mode = None if ptq else _quantizer_setup(method, model, M, scope, weight_bits, cfg, zero)
        soft_factory = None
        if mode == "soft":
            def soft_factory(k, n, size):
                per = math.ceil(size / cfg.batch_size)
                count = [k * per]
                C.set_tau(model, C.anneal_tau(count[0] / (n * per), cfg.tau_start, cfg.tau_end))

                def step():
                    count[0] += 1
                    C.set_tau(model, C.anneal_tau(count[0] / (n * per), cfg.tau_start, cfg.tau_end))
                return step

        times: list[float] = []
        run_epochs(cfg.cat_epochs, cfg.lr, times, soft_factory)
        if mode is not None:
            C.harden(model)
        scorer = PRUNERS.get(method, "fsc")
        default_alloc = "global" if scorer == "fsc" else "layer"
        structured = scorer == "fsc" and fsc_neurons
        for r in range(1, cfg.prune_rounds + 1):
            if sparsity > 0:
                target = 1.0 - (1.0 - sparsity) ** (r / cfg.prune_rounds)
                synapse, neuron = _scores(scorer, model, x_fisher, y_train[:fisher_n], scale, seed, r)
                fsc.prune_to_sparsity(model, synapse, target, per_layer=(allocation or default_alloc) == "layer",
                                      neuron_scores=neuron if structured else None)
            run_epochs(cfg.prune_epochs, cfg.prune_lr, times)
        run_epochs(cfg.finetune_epochs, cfg.finetune_lr, times)
        if ptq:
            C.attach_cat(model, C.CatSpec(M, scope, weight_bits, "layer", "hard", zero))
            C.harden(model)
        acc = evaluate(model, x_test, y_test)
        distinct = C.distinct_per_group(model)
    return {"method": method, "dataset": dataset, "M": M, "sparsity": sparsity, "seed": seed, "scope": scope,
            "zero": zero if method in ("cat", "cat-hard", "cat-soft", "kmeans", "fsc", "magnitude", "random") else None,
            "fsc_neurons": fsc_neurons if PRUNERS.get(method, "fsc") == "fsc" and sparsity else None,
            "allocation": (allocation or ("global" if PRUNERS.get(method, "fsc") == "fsc" else "layer")) if sparsity else None,
            "accuracy": acc, "float_accuracy": float_acc,
            "step_time": statistics.median(times) if times else None,
            "float_step_time": statistics.median(float_times) if float_times else None,
            "measured_sparsity": fsc.sparsity(model),
            "max_distinct": max(distinct.values()) if distinct else None}


def step_time_ratio(dataset: str, M: int = 4, scope: str = "layer", mode: str = "hard", steps: int = 60,
                    config: FitConfig | None = None, weight_bits: int | None = 8, threads: int | None = None) -> dict:
    """Median wall time of one training step (forward, backward, Adam, masks) of the float network
    and of the same network under CAT, measured alternately on the same batches so that machine
    load affects both alike. Returns float_step, cat_step (seconds) and ratio = cat / float."""
    import time

    cfg = config or FitConfig()
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
                if k >= 5:  # the first steps warm caches and allocators
                    times[id(m)].append(time.perf_counter() - t0)
    f, c = statistics.median(times[id(plain)]), statistics.median(times[id(quant)])
    return {"dataset": dataset, "M": M, "scope": scope, "mode": mode, "float_step": f, "cat_step": c, "ratio": c / f}


def _scores(scorer: str, model, x, y, scale: float, seed: int, round_: int):
    """(synapse scores, neuron scores or None) of a pruner."""
    if scorer == "magnitude":
        return fsc.magnitude_scores(model), None
    if scorer == "random":
        return fsc.random_scores(model, np.random.default_rng(epoch_seed(seed, 10_000 + round_))), None
    neuron, synapse = fsc.fisher_scores(model, x, y, scale)
    return synapse, neuron
