"""``python -m spikefit ...`` (and ``torchrun --nproc-per-node N -m spikefit fit ...``): the CLI."""
from .cli import main

if __name__ == "__main__":
    main()
