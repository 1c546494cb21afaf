"""Where a run stands (``Progress``, checkpointed whole) and the early-stopping rule: stop after
``patience`` epochs without a validation R@1 gain; the best epoch's weights are the run's."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    round: int = 0  # rounds completed in the current epoch
    position: int = 0  # batches completed in the current round
    global_step: int = 0
    best_recall: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    epoch_loss: float = 0.0
    epoch_batches: int = 0
    epoch_tuples: int = 0
    epoch_skipped: int = 0
    stopped_early: bool = False
    finished: bool = False
    history: list = field(default_factory=list)


def update(progress: Progress, recall: float, patience: int) -> bool:
    """Account one epoch's validation R@1; whether it is the best so far. Sets ``stopped_early`` once
    ``patience`` epochs in a row brought no gain."""
    improved = recall > progress.best_recall
    if improved:
        progress.best_recall, progress.best_epoch, progress.bad_epochs = recall, progress.epoch + 1, 0
    else:
        progress.bad_epochs += 1
    progress.stopped_early = progress.bad_epochs >= patience
    return improved
