"""The whole loop as a job (``polyp_core.recipe``): one request parsed for the CLI and the
Retrain tab's panel, checked before anything is queued, run with progress and cancel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from polyp_core.forms import Field, Form, of
from polyp_core.recipe import RecipeConfig, check, run_recipe
from polyp_core.review.accounts import Person
from polyp_core.validation import InvalidRequest, Problem, number, whole
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database

if TYPE_CHECKING:
    from polyp_core.progress import CancelToken, Progress

RECIPE = Form("recipe", "the whole loop on a data set with masks: generators on the training "
                        "split, inpainting and copy-paste, the cross-fitted gate, every retrain "
                        "arm, one summary", (
    Field("dataset", required=True, positional=True,
          help="the real data set (masks for the segmentation part)"),
    of(RecipeConfig, "minutes", help="the inpainter's training budget, minutes"),
    of(RecipeConfig, "per_class", option="--per-class",
       help="images of each class inpainted, and as many pasted"),
    Field("seeds", "0,1", "training seeds of every retrain (the key pair takes two at least)"),
    of(RecipeConfig, "fast", help="the many-arm part trains U-Net decoders only", kind="flag"),
    of(RecipeConfig, "size", help="working size of the U-Nets and classifiers"),
    of(RecipeConfig, "epochs", help="epochs of every network (default: the task's)"),
    Field("against", "", "segmentation: also test on these data sets (comma-separated)"),
    of(RecipeConfig, "preset", help="the inpainter's network"),
    of(RecipeConfig, "inpainter", help="use this generator (trained on the data set's training "
                                       "split) instead of training one"),
    of(RecipeConfig, "steps", help="sampler steps per inpainted image"),
    of(RecipeConfig, "gate_folds", option="--gate-folds", help="parts of the cross-fitted gate"),
    of(RecipeConfig, "gate_iou", option="--gate-iou", help="the gate's IoU threshold"),
    of(RecipeConfig, "name", help="prefix of the generators and runs it makes"),
    of(RecipeConfig, "allow_small_test", option="--allow-small-test",
       help="run where a class has fewer than 3 test groups", kind="flag"),
))


def _tuple(text: object) -> tuple[str, ...]:
    return tuple(p.strip() for p in str(text or "").split(",") if p.strip())


def recipe_request(fields: Mapping[str, object]) -> RecipeConfig:
    """The request from the form's values (text or typed).

    Raises:
        InvalidRequest: naming the field that is wrong.
    """
    f = dict(fields)
    try:
        seeds = tuple(int(s) for s in _tuple(f.get("seeds") or "0,1"))
    except ValueError:
        raise InvalidRequest("form", [Problem("seeds", f"{f.get('seeds')!r} is not whole "
                                                       "numbers separated by commas")]) from None
    values: dict = {"dataset": f.get("dataset"), "seeds": seeds,
                    "against": _tuple(f.get("against")), "fast": bool(f.get("fast")),
                    "allow_small_test": bool(f.get("allow_small_test"))}
    for name, read in (("minutes", number), ("gate_iou", number), ("per_class", whole), ("size", whole),
                       ("epochs", whole), ("steps", whole), ("gate_folds", whole)):
        if f.get(name) not in (None, ""):
            values[name] = read(f[name], name)
    for name in ("preset", "inpainter", "name"):
        if f.get(name):
            values[name] = str(f[name])
    return RecipeConfig(**values)


def start(db: Database, workspace: Workspace, person: Person, config: RecipeConfig,
          submit: Callable[..., str], executor: Any = None) -> str:
    """Check (the recipe's refusals come before anything is queued), then hand the recipe to a
    job: ``submit(kind, config_json, work, owner_id)`` returns the job's id. The job's message
    at the end is the summary's answer. ``executor``: where the retrain steps' trainings run
    (``polyp_core.executors``; this process when None)."""
    authorise(db, person)
    check(workspace, config)

    def work(progress: Progress, cancel: CancelToken) -> str:
        outcome = run_recipe(db, workspace, config, progress, cancel, executor=executor)
        return outcome.summary["answer"]

    return submit("recipe", config.to_json(), work, person.id or None)
