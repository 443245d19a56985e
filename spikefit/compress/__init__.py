"""Compression baselines and method variants for the compression benchmark.

:mod:`.quantizers_qat`: LSQ (learned step with its gradient scale), DKM (differentiable k-means:
attention over distances, centroids re-estimated from the soft assignment) and k-means QAT (Lloyd
re-clustering during training, straight-through). :mod:`.pruners`: gradual magnitude pruning (Zhu &
Gupta 2017), SNIP saliency, Deep-Rewiring-style rewiring at a fixed synapse count, FSC with Fisher
scores accumulated over training, and the width of the dense network with a given synapse count.
:mod:`.stages`: the stages :func:`spikefit.baselines.plan` puts them in.
"""
