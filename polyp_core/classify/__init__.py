"""Classifier retraining: the classifier, its training, selection policies and experiments."""

from polyp_core.classify.experiment import (ExperimentConfig, ExperimentResult, compare_runs,
                                            repeat_experiment, run_experiment)
from polyp_core.classify.policy import Selection, SelectionPolicy, parse_mix, select_synthetic
from polyp_core.classify.train import ClassifierTrainConfig, train_classifier

__all__ = ["ClassifierTrainConfig", "ExperimentConfig", "ExperimentResult", "Selection",
           "SelectionPolicy", "compare_runs", "parse_mix", "repeat_experiment", "run_experiment",
           "select_synthetic", "train_classifier"]
