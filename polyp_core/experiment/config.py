"""What an experiment is asked (``ExperimentConfig``) and what a stored run returns
(``ExperimentResult``). The arms' names come from ``polyp_core.tasks``, which says which task
trains which arms."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from polyp_core.experiment.folds import INNER_VALID
from polyp_core.experiment.policy import SelectionPolicy
from polyp_core.tasks import ALL_ARMS, AUGMENTED, BASELINE, TASKS
from polyp_core.training import TrainConfig
from polyp_core.validation import checked, rule

#: the two arms every experiment compares: real images only, and real plus synthetic
ARMS = (BASELINE, AUGMENTED)


def _names(value: object) -> tuple[str, ...]:
    """``against`` as stored: a list, or (runs stored before several sources) one name or
    None."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@checked
@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment.

    Attributes:
        dataset: the real data set (its split is used as it is).
        scheme: label scheme (default: the data set's active one).
        train: how each classifier is trained (identical in both arms).
        seeds: one classifier per seed and arm; the same seeds in both arms.
        policy: which synthetic images the augmented arm adds.
        arms: ``baseline`` and/or ``augmented``.
        name: a label for the run list.
        allow_small_test: run even when a class has fewer than 3 groups (patients/lesions) in
            the test split (the results will say how little they rest on).
        linear_probe: also fit the linear probe (``classify.probe``) on every arm's training
            images: the baseline any network must beat, shown beside the arms.
        folds: 0 uses the data set's fixed train/valid/test split; K >= 2 runs grouped K-fold
            cross-validation over all its images (``experiment.folds``), metrics from the pooled
            out-of-fold predictions; ``None`` ("auto", the default here as in the CLI and UI) chooses
            the largest K up to 10 for which every class has at least 3 groups in every test
            fold (groups a supplying generator learned from then train in
            every fold), the fixed split only when no K >= 2 does, and the run says which and
            why.
        inner_valid: with folds, the share of each fold's training groups (at least 2 of each
            class) that networks stop early on; the rest trains them. 0: no inner validation,
            networks train ``train.epochs`` epochs and keep the last. The linear probe always
            learns from the whole training part (its C is chosen by inner CV).
        refit: with folds, choose the epoch count by inner grouped 3-fold CV within each
            fold's training part (the median of the best epochs) and then train on the whole
            training part for that many epochs (instead of an inner validation split).
        cv_seed: how the groups are dealt into folds (every arm and seed uses the same folds).
        seen_groups_train: with folds, keep the groups a supplying generator learned from in
            every fold's training part (only groups no generator saw are tested) instead of
            refusing the run.
        allow_unknown_training_data: use images of an imported generator whose training data
            are declared unknown (their leak cannot be checked; the report warns).
        task: ``classification`` (histology) or ``segmentation`` (a U-Net on the masks).
        real_fractions: segmentation: also train every arm on these shares of each fold's
            real training groups (a learning curve; the test parts stay whole).
        against: segmentation: also test every model on these other real data sets (other
            sources' frames, with masks), each with its own intervals and paired differences.
    """

    dataset: str
    scheme: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0, 1, 2)
    policy: SelectionPolicy = field(default_factory=SelectionPolicy)
    arms: tuple[str, ...] = rule(ARMS, choices=ALL_ARMS)
    name: str | None = None
    allow_small_test: bool = False
    linear_probe: bool = False
    folds: int | None = rule(None, lo=0, hi=20, flag="--folds")
    cv_seed: int = 0
    seen_groups_train: bool = False
    inner_valid: float = rule(INNER_VALID, lo=0.0, hi=0.5, flag="--inner-valid")
    refit: bool = False
    allow_unknown_training_data: bool = False
    task: str = rule("classification", choices=TASKS)
    real_fractions: tuple[float, ...] = rule((), lo=0.05, below=1.0)
    against: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "scheme": self.scheme, "train": asdict(self.train),
                "seeds": list(self.seeds), "policy": self.policy.to_json(), "arms": list(self.arms),
                "name": self.name, "allow_small_test": self.allow_small_test,
                "linear_probe": self.linear_probe, "folds": self.folds, "cv_seed": self.cv_seed,
                "seen_groups_train": self.seen_groups_train, "inner_valid": self.inner_valid,
                "refit": self.refit,
                "allow_unknown_training_data": self.allow_unknown_training_data,
                "task": self.task, "real_fractions": list(self.real_fractions),
                "against": list(self.against)}

    @classmethod
    def from_json(cls, data: dict) -> ExperimentConfig:
        return cls(dataset=data["dataset"], scheme=data.get("scheme"),
                   train=TrainConfig(**data["train"]), seeds=tuple(data["seeds"]),
                   policy=SelectionPolicy.from_json(data["policy"]), arms=tuple(data["arms"]),
                   name=data.get("name"), allow_small_test=bool(data.get("allow_small_test")),
                   # runs stored before cross-validation existed ran the fixed split
                   linear_probe=bool(data.get("linear_probe")), folds=data.get("folds", 0),
                   cv_seed=int(data.get("cv_seed", 0)),
                   seen_groups_train=bool(data.get("seen_groups_train")),
                   # runs stored before inner validation kept a whole fold for it
                   inner_valid=float(data.get("inner_valid", INNER_VALID)),
                   refit=bool(data.get("refit")),
                   allow_unknown_training_data=bool(data.get("allow_unknown_training_data")),
                   task=data.get("task", "classification"),
                   real_fractions=tuple(data.get("real_fractions", ())),
                   against=_names(data.get("against")))


@dataclass
class ExperimentResult:
    run_id: str
    folder: Path
    results: dict
