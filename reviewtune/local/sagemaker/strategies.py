"""SageMaker tuning strategies as Optuna samplers and pruners.

| SageMaker                      | Optuna                                                             |
|--------------------------------|--------------------------------------------------------------------|
| Strategy ``Random``            | ``RandomSampler(seed=RandomSeed)``                                 |
| Strategy ``Bayesian``          | ``TPESampler(seed=RandomSeed)``, constant liar for parallel trials, |
|                                | random only until 2 trials have ended (warm-start parents count)   |
| Strategy ``Grid``              | ``GridSampler`` over the categorical values                        |
| Strategy ``Hyperband``         | ``RandomSampler`` + ``HyperbandPruner`` (epochs are the resource)  |
| EarlyStoppingType ``Auto``     | ``MedianRunningAveragePruner`` (SageMaker's median rule)           |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from optuna.pruners import BasePruner, HyperbandPruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler

from .early_stopping import MedianRunningAveragePruner
from .search_space import Dimension, grid

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial, TrialState

HYPERBAND_REDUCTION_FACTOR = 3
# Bayesian search draws at random until this many trials have ended, then models them. Optuna's default (10) would
# make every tuning job of a few trials a random search and ignore the finished trials a warm start adds.
BAYESIAN_RANDOM_TRIALS = 2


class _AskTellGridSampler(GridSampler):
    """A GridSampler for ask/tell: the tuning job counts trials itself, so an exhausted grid does not call
    ``Study.stop()`` (which Optuna only allows inside ``optimize``)."""

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None


SamplerFactory = Callable[[int | None, dict[str, Dimension]], BaseSampler]

SAMPLERS: dict[str, SamplerFactory] = {
    "Random": lambda seed, space: RandomSampler(seed=seed),
    "Bayesian": lambda seed, space: TPESampler(
        seed=seed, n_startup_trials=BAYESIAN_RANDOM_TRIALS, constant_liar=True
    ),
    "Grid": lambda seed, space: _AskTellGridSampler(grid(space), seed=seed),
    "Hyperband": lambda seed, space: RandomSampler(seed=seed),
}


def make_sampler(strategy: str, seed: int | None, space: dict[str, Dimension]) -> BaseSampler:
    return SAMPLERS[strategy](seed, space)


def make_pruner(
    strategy: str, early_stopping: str, *, min_resource: int = 1, max_resource: int | str = "auto"
) -> BasePruner:
    if strategy == "Hyperband":
        return HyperbandPruner(
            min_resource=min_resource, max_resource=max_resource, reduction_factor=HYPERBAND_REDUCTION_FACTOR
        )
    if early_stopping == "Auto":
        return MedianRunningAveragePruner()
    return NopPruner()
