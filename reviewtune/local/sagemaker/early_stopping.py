"""SageMaker's ``TrainingJobEarlyStoppingType: Auto`` rule as an Optuna pruner.

After each epoch (each objective metric value a trial reports), the trial is stopped when that value is
worse (lower when maximizing, higher when minimizing) than the median of the running averages of the
objective, up to the same epoch, of the trials that finished before it and reached that epoch.
"""

from __future__ import annotations

import statistics

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class MedianRunningAveragePruner(BasePruner):
    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        current = trial.intermediate_values[step]
        averages = []
        for other in study.get_trials(deepcopy=False, states=_FINISHED):
            if step not in other.intermediate_values:
                continue
            history = [value for epoch, value in other.intermediate_values.items() if epoch <= step]
            averages.append(statistics.fmean(history))
        if not averages:
            return False
        median = statistics.median(averages)
        if study.direction == StudyDirection.MAXIMIZE:
            return current < median
        return current > median
