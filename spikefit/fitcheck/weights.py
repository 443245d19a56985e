"""The weight rows of the fit check: bits after scaling and distinct values per scope.

Value sets are verified against every synapse (a sample guesses, a hash coder checks); per-neuron
sets are bit masks when the network holds few distinct values, else (row, code) pairs.
"""
from __future__ import annotations

import numpy as np

from ..network import shared_shift
from ..synapses import _bits, _Coder, _Missing, _on_grid, grid_step
from .report import Row

MAX_MASK_CODES = 256     # up to this many distinct values network-wide: per-neuron sets as bit masks
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


class WeightRows:
    """Mixed into :class:`~spikefit.fitcheck.check.Check`: reads its parts, streams and placement."""

    def _values(self, per_neuron: bool):
        """Value sets of every connection (verified against all synapses); with ``per_neuron`` also
        each population's per-neuron value sets: bit masks (few values) or (row, code) pairs."""
        for part in self.parts:
            part.sample_values()
        while True:
            for part in self.parts:                  # a zero in the value set: stored zeros to drop
                if np.any(part.u == 0):
                    part.drop_zeros(known=True)
            allv = np.unique(np.concatenate([p.u for p in self.parts])) if self.parts else np.zeros(0)
            try:
                if per_neuron and allv.size <= MAX_MASK_CODES:
                    return allv, self._masks(allv), None
                for part in self.parts:
                    if not part.exact:
                        part.check(_Coder(part.u))
                        part.exact = True
                if per_neuron:
                    return allv, None, self._pairs(allv)
                return allv, None, None
            except _Missing as miss:
                miss.part.full_values()

    def _masks(self, allv: np.ndarray) -> dict[str, np.ndarray]:
        words = max(1, -(-allv.size // 64))
        table = np.zeros((allv.size, words), dtype=np.uint64)
        j = np.arange(allv.size)
        table[j, j // 64] = np.left_shift(np.uint64(1), (j % 64).astype(np.uint64))
        masks = {}
        for pop in self.pops:
            m = np.zeros((pop.size, words), dtype=np.uint64)
            for part in self._incoming(pop):
                m |= part.row_masks(_Coder(part.u), table[np.searchsorted(allv, part.u)])
                part.exact = True
            masks[pop.name] = m
        return masks

    def _pairs(self, allv: np.ndarray) -> dict[str, np.ndarray]:
        """Unique ``row * K + code`` keys of every population (K = number of values network-wide)."""
        k = max(allv.size, 1)
        out = {}
        for pop in self.pops:
            keys = [r.astype(np.int64) * k + c for r, c in (p.row_codes(allv) for p in self._incoming(pop))]
            out[pop.name] = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        return out

    def _weight_rows(self, values) -> list[Row]:
        allv, masks, pairs = values
        lim, rows = self.lim, []
        for part in self.parts:
            part.n_values = int(part.u.size)
        if lim.weight_bits is not None:
            rows.append(self._bits_row(allv))
        if lim.unique_weights is None:
            return rows
        scope, m = lim.unique_weights_scope, lim.unique_weights
        name = f"unique_weights (per {scope})"
        fix = "cluster the weights to a codebook (e.g. spikefit fit)"
        if scope == "chip":
            rows.append(Row(name, int(allv.size), m, allv.size <= m, "chip",
                            f"the network uses {allv.size} distinct non-zero weights; {fix}" if allv.size > m else ""))
        elif scope == "layer":
            counts = {p.conn.name: p.n_values for p in self.parts}
            worst = max(counts, key=counts.get, default=None)
            usage = counts.get(worst, 0)
            over = sum(v > m for v in counts.values())
            rows.append(Row(name, usage, m, usage <= m, f"layer {worst}" if worst else "",
                            f"{over} layers exceed it; {fix}" if over else ""))
        elif scope == "neuron":
            per = {}
            for s in self.streams:
                if masks is not None:
                    per[s.pop.name] = _popcount(masks[s.pop.name])
                else:
                    kk = max(allv.size, 1)
                    per[s.pop.name] = np.bincount(pairs[s.pop.name] // kk, minlength=s.n)
            row = self._per_neuron_row(name, per, m, "distinct non-zero incoming weights")
            if not row.ok:
                row.detail += f"; {fix}"
            rows.append(row)
        else:  # core
            per = self._per_core_values(allv, masks, pairs)
            rows.append(self._per_core_row(name, per, m, f"hold more than {m} distinct non-zero weights; {fix}"))
        return rows

    def _per_core_values(self, allv, masks, pairs) -> np.ndarray:
        n = self.n_cores
        if masks is not None:
            words = next(iter(masks.values())).shape[1] if masks else 1
            core_masks = np.zeros((n, words), dtype=np.uint64)
            for s in self.streams:
                first, b = self.placement.first[s.pop.name], self.placement.bounds[s.pop.name]
                if s.n:
                    core_masks[first:first + len(b) - 1] |= np.bitwise_or.reduceat(masks[s.pop.name], b[:-1], axis=0)
            return _popcount(core_masks)
        kk = max(allv.size, 1)
        keys = []
        for s in self.streams:
            first, b = self.placement.first[s.pop.name], self.placement.bounds[s.pop.name]
            rk = pairs[s.pop.name]
            core = first + np.searchsorted(b, rk // kk, side="right") - 1
            keys.append(core * kk + rk % kk)
        keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        return np.bincount(keys // kk, minlength=n)

    def _bits_row(self, allv: np.ndarray) -> Row:
        lim, scaling = self.lim, self.lim.weight_scaling
        chip_scale = None
        if scaling == "chip":
            scales = {p.quant.scale for p in self.parts if p.quant is not None}
            if len(scales) == 1 and all(p.quant is not None for p in self.parts):
                chip_scale = scales.pop()
            else:
                chip_scale = grid_step(allv)
        off, best, worst = [], 0, ""
        for part in self.parts:
            if not part.u.size:
                part.bits, part.scale = 0, None
                continue
            if scaling == "none":
                s, why = 1.0, "are not integers; this target stores raw integer weights (weight_scaling = none)"
            elif scaling == "chip":
                s, why = chip_scale, "share no integer grid with the other layers (weight_scaling = chip)"
            elif part.quant is not None:
                s, why = part.quant.scale, f"are not multiples of the layer's quantization scale {part.quant.scale:g}"
            else:
                s, why = grid_step(part.u), "are not on an integer grid"
            if s is None or not _on_grid(part.u, s):
                part.bits, part.scale = None, None
                off.append((part.conn.name, why))
                continue
            k = np.rint(part.u / s)
            if scaling == "layer":  # one scale per layer: a power of two all its integers share joins it
                g = shared_shift(k)   # (254 = 127 << 1 is an 8-bit weight shifted once)
                k, s = k / g, s * g
            part.bits, part.scale = _bits(int(k.min()), int(k.max())), float(s)
            if part.bits > best:
                best, worst = part.bits, f"layer {part.conn.name} (scale {s:g})"
        if off:
            name, why = off[0]
            return Row("weight_bits", None, lim.weight_bits, False, f"layer {name}",
                       f"weights of layer {name} {why}; quantize them (e.g. spikefit fit)")
        detail = f"the largest weight needs {best} signed bits" if best > lim.weight_bits else ""
        return Row("weight_bits", best, lim.weight_bits, best <= lim.weight_bits, worst, detail)


def _popcount(m: np.ndarray) -> np.ndarray:
    """Set bits per row of an (n, words) uint64 array."""
    m = np.ascontiguousarray(m)
    return _POP8[m.view(np.uint8)].reshape(len(m), -1).sum(axis=1)
