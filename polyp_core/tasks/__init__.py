"""The tasks an experiment can answer, behind one small protocol, and their registry.

An experiment (``polyp_core.experiment``) plans folds, chooses and gates synthetic images,
checks leaks and stores runs for any task; a task says what data it needs, trains every arm on
every fold and seed, predicts the fold's test part and scores it, and renders what only it has
(``Task``). The experiment reaches a task only through :func:`task`, which imports the module
``REGISTRY`` names on first use; no task imports the experiment (the plan and the request reach
it as a :class:`TaskJob`). A new task (detection, say) is one module here that defines the
``Task`` attributes and one line in ``REGISTRY``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from polyp_core.executors import Executor, LocalExecutor  # Ray only when a RayExecutor runs

if TYPE_CHECKING:
    import torch

    from polyp_core.backbones import WeightsRegistry
    from polyp_core.data.cache import PixelCache
    from polyp_core.data.manifest import Manifest
    from polyp_core.data.tensors import ImageRef
    from polyp_core.progress import CancelToken, Progress

#: task name -> the module that implements it
REGISTRY: dict[str, str] = {
    "classification": "polyp_core.tasks.classify",
    "segmentation": "polyp_core.tasks.segment",
}
TASKS = tuple(REGISTRY)

BASELINE, AUGMENTED = "baseline", "augmented"
#: the segmentation gate's comparison: the same selection, only the images each fold's gate
#: kept (``SelectionPolicy.min_gate_iou``, the paper's 0.7 when unset), beside ``augmented``
GATED = "gated"
#: and the expert filter: the same selection, only images whose mask reviewers rated at least
#: ``SelectionPolicy.min_mask_quality`` (studies that showed masks)
EXPERT = "expert"
#: the selected synthetic images alone (segmentation)
SYNTHETIC = "synthetic"
ALL_ARMS = (BASELINE, AUGMENTED, GATED, EXPERT, SYNTHETIC)
#: the paired differences a run may hold: results key, the arm, the arm it is compared with
PAIRS = (("delta", AUGMENTED, BASELINE), ("delta_gate", GATED, AUGMENTED),
         ("delta_expert", EXPERT, AUGMENTED))
#: each difference as the report names it ("augmented − baseline")
COMPARED = {key: f"{arm} − {other}" for key, arm, other in PAIRS}
#: the linear probe's arms (classification) are named after the network arm they shadow
PROBE = "linear probe"


def real_counterpart(arm: str, arms: Sequence[str]) -> str | None:
    """The real-data arm that ``arm`` is compared with in ``versus_real``: ``baseline`` for an
    arm that adds (or trains on) synthetic images, ``baseline 25%`` for ``augmented 25%``, the
    linear probe for ``linear probe + synthetic``; None for a real-data arm or where the
    counterpart did not run."""
    if arm.startswith(PROBE):
        other = PROBE if arm != PROBE else None
    elif arm == BASELINE or arm.startswith(f"{BASELINE} "):
        other = None
    else:
        name, _, share = arm.partition(" ")
        other = f"{BASELINE} {share}" if share and name in ALL_ARMS else BASELINE
    return other if other in arms else None


def training_units(fold_names: Sequence[str], cv: bool, arms: Sequence[str],
                   seeds: Sequence[int]) -> tuple[list[tuple], list[str]]:
    """Every training of a run, fold by fold, seed by seed, arm by arm: ``(fold index, arm,
    seed, label)``, and the labels alone (``fold 2 · augmented seed 0 (5/12) · ``; no fold
    name on a fixed split), for an executor's ``map``."""
    keys = [(f, arm, seed) for f in range(len(fold_names)) for seed in seeds for arm in arms]
    labels = [f"{fold_names[f] + ' · ' if cv else ''}{arm} seed {seed} ({u + 1}/{len(keys)}) · "
              for u, (f, arm, seed) in enumerate(keys)]
    return [key + (label,) for key, label in zip(keys, labels)], labels


class Plan(Protocol):
    """What a task reads of the experiment's plan (``experiment.plan.ExperimentPlan``)."""

    scheme: str
    classes: tuple[str, ...]
    real: list[ImageRef]
    group_of: list[str]
    folds: list[Any]  # experiment.folds.Fold: name, train, valid, test (image indices)
    design: dict
    evaluation: dict

    def arm_selection(self, f: int, arm: str) -> Any: ...  # a Selection: .images

    def inner_folds(self, f: int, k: int, seed: int) -> list[tuple[list[int], list[int]]]: ...

    @property
    def synthetic_refs(self) -> list[ImageRef]: ...


@dataclass
class TaskJob:
    """One experiment handed to its task: the request (``experiment.config.ExperimentConfig``:
    ``arms``, ``seeds``, ``train``, ``cv_seed``, ``linear_probe``, ``refit``, ``real_fractions``,
    ``against``), the plan, and where and how to run: each (fold, arm, seed) training goes
    through ``executor.map`` (``polyp_core.executors``: in this process, or on Ray)."""

    config: Any
    plan: Plan
    pixels: PixelCache
    folder: Path
    run_id: str
    progress: Progress
    cancel: CancelToken | None
    device: torch.device | None
    registry: WeightsRegistry | None
    load_manifest: Callable[[str], Manifest]
    feature_cache: dict | None = None
    executor: Executor = field(default_factory=LocalExecutor)


class Task(Protocol):
    """What every task module defines."""

    #: the arms it can train (a subset of ``ALL_ARMS``)
    ARMS: tuple[str, ...]
    #: the data it needs: a mask for every real image
    NEEDS_MASKS: bool
    #: what a class's few test groups carry, for the design's warning ("its Dice")
    RESTS_ON: str
    #: whether the design also estimates the smallest macro-F1 change the test part can show
    DETECTABLE_CHANGE: bool
    #: whether a linear probe learns beside the networks (the validation sentence names it)
    LINEAR_PROBE: bool
    #: the report's sentence on what counts as a regression
    REGRESSION_RULE: str
    #: whether its arms have confusion matrices to draw
    CONFUSION: bool
    #: how its networks train where the request does not say (``TrainConfig`` fields)
    TRAIN_DEFAULTS: dict[str, Any]
    #: the verdict's figure: label and path in a summary or paired difference
    HEADLINE: tuple[str, tuple[str, ...]]
    #: the per-class score the report charts (label, key)
    CLASS_SCORE: tuple[str, str]
    #: the per-class scores whose fall beyond noise is a regression
    REGRESSION_SCORES: tuple[str, ...]

    def metric_rows(self, results: dict) -> list[tuple[str, tuple]]:
        """The metric table's rows: (label, path into an arm's summary)."""

    def check_request(self, config: Any, load_manifest: Callable[[str], Manifest]) -> None:
        """Refuse fields the task does not take, or data it cannot use (``ValueError``)."""

    def run(self, job: TaskJob) -> dict:
        """Train every (fold, arm, seed), predict each fold's test part and score it: the
        run's results (``task`` names the task; ``arms``, ``uncertainty``, deltas)."""

    def differences(self, a: dict, b: dict) -> dict:
        """``compare-runs``: one arm's summary metrics, mean of ``b`` minus mean of ``a``."""

    def methods(self, config: dict, results: dict, cv: bool) -> str:
        """The report's first methods sentence: the networks and how they trained."""

    def report_parts(self, results: dict) -> list[str]:
        """The report's sections only this task has (HTML)."""

    def delta_figure(self, results: dict) -> Any:
        """The change between the arms, augmented - baseline, with intervals (plotly)."""


def task(name: str) -> Task:
    """The task module called ``name``.

    Raises:
        ValueError: an unknown task, naming the known ones.
    """
    if name not in REGISTRY:
        raise ValueError(f"`task`: unknown task {name!r}; one of {', '.join(TASKS)}")
    return importlib.import_module(REGISTRY[name])  # type: ignore[return-value]


def train_defaults(name: str) -> dict[str, Any]:
    """The ``TrainConfig`` fields task ``name`` sets where a request leaves them out (the rest
    are ``TrainConfig``'s own)."""
    return dict(task(name).TRAIN_DEFAULTS)


def task_of(results: dict) -> Task:
    """The task of a stored run's results (runs from before segmentation are classification)."""
    return task(results.get("task", "classification"))


def selected_arms(arms: Sequence[str]) -> bool:
    """Whether any of ``arms`` adds synthetic images."""
    return bool({AUGMENTED, SYNTHETIC, GATED, EXPERT} & set(arms))
