"""Benchmarks behind ``spikefit bench``."""
