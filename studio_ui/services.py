"""The services every tab shares, and how the UI reports the engine's errors."""

from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from polyp_core.errors import StudioError
from polyp_core.executors import Executor, LocalExecutor, executor_from_env
from polyp_core.jobs import JobRunner, JobStatus
from polyp_core.progress import CancelToken, Progress
from polyp_core.review.accounts import Person
from polyp_core.workflows.fields import name_fields
from polyp_core.workspace import Workspace
from review_db.database import Database


#: what a Gradio box hands an event: text (None when never filled) and numbers (None when
#: empty); handlers turn them into request fields with `whole`/`number` or the workflow parsers
Text = str | None
Num = float | int | None


class Board:
    """What each running job has made so far (images, grid cells, a finished figure), for the
    page that started it to poll; in memory, the newest ``keep`` jobs."""

    def __init__(self, keep: int = 32) -> None:
        self.keep = keep
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, job: str, holder: dict) -> None:
        with self._lock:
            self._items[job] = holder
            while len(self._items) > self.keep:
                self._items.popitem(last=False)

    def get(self, job: str | None) -> dict | None:
        with self._lock:
            return self._items.get(job) if job else None


@dataclass
class Studio:
    """Workspace, database, the job runner (GPU work one job at a time: the runner holds the
    generation lock, never a request), the board of what running jobs made so far, and where
    retrain and recipe jobs run their trainings (``STUDIO_EXECUTOR``: here, or on Ray)."""

    workspace: Workspace
    db: Database
    jobs: JobRunner
    board: Board = field(default_factory=Board)
    executor: Executor = field(default_factory=LocalExecutor)

    @classmethod
    def open(cls, workspace: Workspace, db: Database) -> Studio:
        """The studio's services; its executor from the environment (a bad setting, or
        ``STUDIO_EXECUTOR=ray`` without Ray, stops the start with what to change)."""
        return cls(workspace, db, JobRunner(db, gpu_slots=1), executor=executor_from_env())


def start_on_board(studio: Studio, person: Person, kind: str, config: dict,
                   work: Callable[[Progress, CancelToken], object], holder: dict) -> tuple:
    """Queue ``work`` as a job whose partial results go to ``holder`` on the board; returns
    the job id, its line and the poll timer (switched on) for the page that started it."""
    from polyp_core.workflows import jobs as jobs_workflow

    job = studio.jobs.submit(kind, config, work, owner_id=person.id)
    studio.board.put(job, holder)
    return job, job_line(jobs_workflow.status(studio.db, person, job)), ticking(job)


#: The page's names for request fields that engine messages mention.
FIELD_LABELS = {
    "allow_small_test": '"Run even if a test class has fewer than 3 patients/lesions"',
    "baseline_only": "the baseline alone (no synthetic images)",
    "folds": '"Grouped cross-validation folds"',
    "seen_groups_train": '"With folds: groups a generator learned from train in every fold"',
    "generators": "the selection policy's generators",
    "inner_valid": '"With folds: share of each fold\'s training groups networks stop early on"',
    "refit": '"With folds: epochs by inner CV"',
    "allow_unknown_training_data": '"Use imported generators whose training data are unknown"',
    "task": '"Task"',
    "real_fractions": '"Segmentation: learning curve"',
    "against": '"Segmentation: also test on data sets (comma-separated)"',

}


def shown_fields(text: str) -> str:
    """An engine message with its request fields named as the page's boxes."""
    return name_fields(text, FIELD_LABELS, lambda field: f'"{field}"')


def shown_errors(fn: Callable) -> Callable:
    """Engine errors (bad input, missing model, unknown label) become a message in the page,
    worded as the engine worded them."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (StudioError, ValueError, KeyError, FileNotFoundError, PermissionError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            # the engine names request fields; the page shows the labels of its own boxes
            raise gr.Error(shown_fields(str(message))) from None

    return wrapper


def watch_active(db: Database, person: Person, kind: str) -> tuple:
    """For a dashboard opening: the newest queued or running job of ``kind`` (the demo's
    first-start analyses, or another admin's), its line, and the poll timer switched on."""
    from polyp_core.workflows import jobs as jobs_workflow

    jobs = jobs_workflow.active(db, person, kind)
    job = jobs[0] if jobs else None
    return job, job_line(jobs_workflow.status(db, person, job)) if job else gr.update(), \
        ticking(job)


def ticking(job: str | None) -> gr.Timer:
    """A job's poll timer runs only while there is a job to watch: an idle page sends nothing."""
    return gr.Timer(active=job is not None)


def poll_run_job(db: Database, person: Person, job: str | None, runs: Callable[[], list]) -> tuple:
    """A timer tick for a job that stores a run: its progress line, the run list (choosing the
    new run when the job is done), the job id to keep polling (None when it ended), and the
    timer (stopped when it ended)."""
    from polyp_core.workflows import jobs as jobs_workflow

    if not job:
        return gr.update(), gr.update(), None, ticking(None)
    status = jobs_workflow.status(db, person, job)
    if status.status == "done":
        return (job_line(status), gr.update(choices=runs(), value=status.message), None,
                ticking(None))
    job = job if status.active else None
    return job_line(status), gr.update(), job, ticking(job)


def job_line(status: JobStatus | None) -> str:
    """One line of Markdown for a job's state."""
    if status is None:
        return ""
    from polyp_core.progress import clock

    share = f" · {100 * status.done / status.total:.0f}%" if status.total else ""
    left = status.eta_seconds
    share += f" · ETA {clock(left)}" if left is not None else ""
    text = f"**{status.status}**{share}"
    if status.message:
        text += f" · {status.message}"
    if status.error and status.status in ("failed", "interrupted", "cancelled"):
        text += f"\n\n`{status.error.splitlines()[0]}`"
    return text


def form_event(names: list[str], fn: Callable[[Person, dict], object]) -> Callable:
    """An event handler for a form's widgets: Gradio hands the widgets' values in the order of
    ``names`` (the form's field names); ``fn`` gets them as one mapping. Empty boxes are None,
    so the request's defaults fill them. The handler's signature names each field (the session
    guard and Gradio read it)."""
    def handler(person: Person, *values: object) -> object:
        fields = {n: (None if isinstance(v, str) and v == "" else v)  # an upload is an array
                  for n, v in zip(names, values, strict=True)}
        return fn(person, fields)

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("person", positional), *(inspect.Parameter(n, positional)
                                                    for n in names)])
    handler.__name__ = getattr(fn, "__name__", "form")
    handler.__doc__ = fn.__doc__
    return handler
