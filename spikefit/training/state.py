"""The training state the engine advances and a checkpoint holds."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import TrainingError


@dataclass
class TrainState:
    """Where a plan is: which stage, which epoch, and what each stage measured."""

    stage: int = 0                      # index into the plan of the stage being (or about to be) run
    epoch: int = 0                      # epochs done in that stage
    entered: bool = False               # its entry action ran (pruning, quantizer set-up): not repeated on resume
    stage_epochs: int | None = None     # epochs the entered stage trains (its entry action may skip them: 0)
    global_epoch: int = 0               # epochs done over the whole plan: seeds every epoch's spikes and order
    history: list[dict] = field(default_factory=list)  # per stage: epochs, last loss, test accuracy, seconds
    accuracy: dict = field(default_factory=dict)       # named measurements (user, float, cat, pruned, ...)
    pruned: dict = field(default_factory=dict)         # per pruning stage: binding budgets and usage after it

    def __post_init__(self):
        for name in ("stage", "epoch", "global_epoch"):
            if int(getattr(self, name)) < 0:
                raise TrainingError(f"training state {name} {getattr(self, name)} must be 0 or more")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainingError(f"training state has unknown fields {unknown}; the checkpoint is from another version")
        return cls(**d)
