"""One experiment, any task: baseline against augmented over the same folds and seeds.

``config`` (the request), ``plan`` (the real images, the folds from ``folds``, each fold's
synthetic selection from ``policy``, the leak checks of ``leakage`` and the ``design`` table),
``gating`` (the segmentation quality gate per fold), ``run`` (hands the arms to the task,
stores the run), ``compare`` (compare-runs), ``report`` and ``figures`` (a run's results in
HTML and plotly). The task (classification, segmentation) trains, predicts and scores behind
``polyp_core.tasks``' protocol; the statistics are ``polyp_core.stats``.
"""

from polyp_core.experiment.compare import compare_runs
from polyp_core.experiment.config import ExperimentConfig, ExperimentResult
from polyp_core.experiment.plan import ExperimentPlan, plan_experiment
from polyp_core.experiment.policy import Selection, SelectionPolicy, parse_mix, select_synthetic
from polyp_core.experiment.run import repeat_experiment, run_experiment

__all__ = ["ExperimentConfig", "ExperimentPlan", "ExperimentResult", "Selection",
           "SelectionPolicy", "compare_runs", "parse_mix", "plan_experiment",
           "repeat_experiment", "run_experiment", "select_synthetic"]
