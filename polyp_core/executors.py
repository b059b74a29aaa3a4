"""Where an experiment's trainings run: one after another in this process (``LocalExecutor``,
the default), or as Ray tasks on this machine's GPUs or a Ray cluster (``RayExecutor``).

A task hands :meth:`map` one function, one ``shared`` object (everything the trainings read:
the request, the plan, the images as tensors) and its units (one per fold, seed and arm). The
function must be a module-level function (Ray sends it by reference) and must compute the same
numbers wherever it runs: what it returns is all the caller keeps, and ``digest`` turns each
result into what the task assembles, in the caller, in the units' order, so both executors
store the same run.

On a CPU the last bits of a training depend on the number of threads that computed it, so
``cpus_per_training`` is how many threads each training uses on either executor (local: the
process's own count when unset): the same number gives the same results bit for bit.

Ray is an optional extra (``requirements-cluster.txt``): nothing here imports it until a
``RayExecutor`` runs, and :func:`executor_of` says how to install it when it is missing.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from polyp_core.errors import StudioError
from polyp_core.progress import Cancelled, CancelToken, Progress

if TYPE_CHECKING:
    import torch

#: the Ray version the studio is tested with (requirements-cluster.txt pins the same)
RAY_VERSION = "2.60.0"
INSTALL_RAY = ("the Ray executor needs Ray, an optional extra: pip install -r "
               f"requirements-cluster.txt (or pip install 'ray=={RAY_VERSION}')")
#: the name a training has on a Ray worker (its process title is ``ray::polyp_training``)
TRAINING = "polyp_training"
EXECUTORS = ("local", "ray")


class Training(Protocol):
    """One unit of work: ``(shared, unit, progress, cancel, device) -> result``."""

    def __call__(self, shared: Any, unit: Any, progress: Progress, cancel: CancelToken | None,
                 device: torch.device | None) -> Any: ...


class Executor(Protocol):
    """Runs a task's trainings: ``local`` or ``ray``."""

    name: str

    def map(self, fn: Training, shared: Any, units: Sequence[Any], labels: Sequence[str],
            progress: Progress, cancel: CancelToken | None, device: torch.device | None = None,
            digest: Callable[[Any, Any], Any] | None = None) -> list:
        """``fn`` of every unit, results (through ``digest``) in the units' order."""

    def describe(self) -> str:
        """Where and how the trainings run, in words."""

    def summary(self) -> str:
        """How many trainings ran, how long each took and how many ran at once."""


class RayMissing(StudioError, ImportError):
    """``--executor ray`` where Ray is not installed (the message says how to install it)."""


class TrainingFailed(RuntimeError):
    """A training on Ray that could not finish: its worker died more often than retried, or
    the training raised (not retried: it would raise again)."""


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Torch's CPU threads set to ``count`` for the block (unchanged when None)."""
    import torch

    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class LocalExecutor:
    """Every training in this process, one after another (today's behaviour): progress inside
    each training, and the job's cancel checked at every step."""

    cpus_per_training: int | None = None
    name: str = "local"
    #: each map's wall seconds and each training's seconds (``summary``)
    timings: list = field(default_factory=list, compare=False, repr=False)

    def map(self, fn: Training, shared: Any, units: Sequence[Any], labels: Sequence[str],
            progress: Progress, cancel: CancelToken | None, device: torch.device | None = None,
            digest: Callable[[Any, Any], Any] | None = None) -> list:
        """``fn(shared, unit, ...)`` of every unit, in order, on ``device`` (chosen by the
        training when None); each result through ``digest(unit, result)`` when given."""
        out, seconds, started = [], [], time.perf_counter()
        with threads(self.cpus_per_training):
            for u, unit in enumerate(units):
                def unit_progress(done: int, total: int, message: str, u: int = u) -> None:
                    progress(u * 1000 + int(1000 * done / max(total, 1)), len(units) * 1000,
                             message)

                began = time.perf_counter()
                result = fn(shared, unit, unit_progress, cancel, device)
                seconds.append(time.perf_counter() - began)
                out.append(digest(unit, result) if digest else result)
        self.timings.append((time.perf_counter() - started, seconds))
        return out

    def summary(self) -> str:
        return timing_summary(self.timings)

    def describe(self) -> str:
        import torch

        threads_text = self.cpus_per_training or torch.get_num_threads()
        return (f"local: one training at a time in this process ({threads_text} CPU "
                "thread(s))")


def _in_worker(fn: Training, shared: Any, unit: Any, cpus: int, gpus: float) -> Any:
    """A training on a Ray worker: ``cpus`` torch threads, the GPU Ray gave it (or the CPU).
    Returns its result and its seconds."""
    import torch

    began = time.perf_counter()
    torch.set_num_threads(cpus)
    device = torch.device("cuda") if gpus > 0 and torch.cuda.is_available() else \
        torch.device("cpu")
    return fn(shared, unit, _quiet, None, device), time.perf_counter() - began


def _quiet(done: int, total: int, message: str) -> None:
    """A worker's own progress goes nowhere: the caller reports each finished training."""


@dataclass(frozen=True)
class RayExecutor:
    """Every training a Ray task with its resources (``cpus_per_training`` CPUs and threads,
    ``gpus_per_training`` GPUs), on the Ray at ``address`` (a running cluster: ``auto``,
    ``ray://host:10001``) or, without one, on a Ray started here with ``num_cpus`` CPUs (this
    machine's when None) and its GPUs. The shared data go into Ray's object store once; a
    worker that dies is replaced and its training run again up to ``retries`` times, then the
    run fails (nothing is stored). A cancel stops every training at once."""

    address: str | None = None
    cpus_per_training: int = 1
    gpus_per_training: float = 0.0
    retries: int = 1
    num_cpus: int | None = None
    poll_seconds: float = 0.5
    name: str = "ray"
    timings: list = field(default_factory=list, compare=False, repr=False)

    def connect(self) -> Any:
        """Ray, connected (started here when there is no ``address`` and none runs)."""
        ray = import_ray()
        if not ray.is_initialized():
            options: dict = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **options)
            else:
                # a Ray started here listens on every interface; Ray 2.60 turns its token
                # authentication on by default (docs/SECURITY.md)
                ray.init(num_cpus=self.num_cpus, **options)
        return ray

    def map(self, fn: Training, shared: Any, units: Sequence[Any], labels: Sequence[str],
            progress: Progress, cancel: CancelToken | None, device: torch.device | None = None,
            digest: Callable[[Any, Any], Any] | None = None) -> list:
        """As :meth:`LocalExecutor.map`, each unit a Ray task (``device`` is the worker's: its
        GPU with ``gpus_per_training``, else its CPU); results in the units' order."""
        ray = self.connect()
        _check_fits(ray, self)
        shared_ref = ray.put(shared)  # once into the object store; each worker reads it there
        remote = ray.remote(_in_worker).options(
            name=TRAINING, num_cpus=self.cpus_per_training, num_gpus=self.gpus_per_training,
            max_retries=self.retries, retry_exceptions=False)
        started = time.monotonic()
        pending = {remote.remote(fn, shared_ref, unit, self.cpus_per_training,
                                 self.gpus_per_training): u for u, unit in enumerate(units)}
        out: list = [None] * len(units)
        seconds: list = [None] * len(units)
        progress(0, len(units), f"{len(units)} trainings sent to Ray")
        try:
            while pending:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled")
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_seconds)
                for ref in ready:
                    u = pending.pop(ref)
                    try:
                        result, seconds[u] = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        raise TrainingFailed(_failure(_named(labels[u]), exc,
                                                      self.retries)) from None
                    out[u] = digest(units[u], result) if digest else result
                    done = len(units) - len(pending)
                    progress(done, len(units), f"{_named(labels[u])} done on Ray ({done}/"
                             f"{len(units)} trainings, {time.monotonic() - started:.0f} s)")
        finally:
            for ref in pending:  # a failure or a cancel stops the rest
                ray.cancel(ref, force=True)
        self.timings.append((time.monotonic() - started, seconds))
        return out

    def summary(self) -> str:
        return timing_summary(self.timings)

    def describe(self) -> str:
        where = self.address or "a Ray started on this machine"
        return (f"ray: {where}, {self.cpus_per_training} CPU thread(s) and "
                f"{self.gpus_per_training:g} GPU per training, {self.retries} "
                f"retr{'y' if self.retries == 1 else 'ies'} per lost worker")


def timing_summary(timings: list[tuple[float, list[float]]]) -> str:
    """``12 trainings in 95 s (each 7.1-8.4 s, together 91 s: 1.0 at a time)``: what a
    user needs to guess the time on k workers (about the sum over k, plus the longest)."""
    seconds = [s for _, run in timings for s in run]
    if not seconds:
        return "no trainings ran"
    wall = sum(w for w, _ in timings)
    return (f"{len(seconds)} trainings in {wall:.0f} s (each {min(seconds):.1f}-"
            f"{max(seconds):.1f} s, together {sum(seconds):.0f} s: {sum(seconds) / wall:.1f} "
            "at a time)")


def _named(label: str) -> str:
    """A unit's progress label (``fold 2 · augmented seed 0 (5/12) · ``) as a name."""
    return label.rstrip(" ·")


def _failure(label: str, exc: BaseException, retries: int) -> str:
    """What a failed training says: which one, and why (a lost worker, or its own error)."""
    import ray

    what = type(exc).__name__
    if isinstance(exc, ray.exceptions.RayTaskError):  # the training itself raised
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        return f"training {label} failed on Ray: {type(cause).__name__}: {cause}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else what
    return (f"training {label} failed on Ray: its worker was lost ({what}: {first}) and the "
            f"training was lost again after {retries} retr{'y' if retries == 1 else 'ies'}; "
            "nothing of the run was stored")


def _check_fits(ray: Any, executor: RayExecutor) -> None:
    """Refuse a training bigger than the whole cluster (Ray would wait for it for ever)."""
    total = ray.cluster_resources()
    for resource, need in (("CPU", executor.cpus_per_training),
                           ("GPU", executor.gpus_per_training)):
        if need > total.get(resource, 0):
            raise ValueError(f"each training asks for {need:g} {resource} but the Ray cluster "
                             f"has {total.get(resource, 0):g}; lower `--{resource.lower()}s-per-"
                             "training` or add machines")


def ray_installed() -> bool:
    """Whether Ray can be imported (without importing it)."""
    return importlib.util.find_spec("ray") is not None


def import_ray() -> Any:
    """Ray, or :class:`RayMissing` saying how to install it."""
    if not ray_installed():
        raise RayMissing(INSTALL_RAY)
    import ray

    return ray


#: the studio server's executor, from its environment (``executor_from_env``)
ENVIRONMENT = {"STUDIO_EXECUTOR": "name", "RAY_ADDRESS": "address",
               "STUDIO_CPUS_PER_TRAINING": "cpus_per_training",
               "STUDIO_GPUS_PER_TRAINING": "gpus_per_training",
               "STUDIO_TRAINING_RETRIES": "retries"}


def executor_from_env(environ: dict[str, str] | None = None) -> LocalExecutor | RayExecutor:
    """The executor the studio server hands its retrain and recipe jobs: ``STUDIO_EXECUTOR``
    (local or ray), ``RAY_ADDRESS``, ``STUDIO_CPUS_PER_TRAINING``,
    ``STUDIO_GPUS_PER_TRAINING``, ``STUDIO_TRAINING_RETRIES``; checked at the studio's start.

    Raises:
        ValueError: a variable that is no number, or what :func:`executor_of` refuses (named
            as the variable).
        RayMissing: ``STUDIO_EXECUTOR=ray`` without Ray.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable, name in ENVIRONMENT.items():
        text = environ.get(variable, "").strip()
        if not text:
            continue
        if name in ("cpus_per_training", "retries", "gpus_per_training"):
            try:
                values[name] = (float if name == "gpus_per_training" else int)(text)
            except ValueError:
                raise ValueError(f"{variable}={text!r} is not a number") from None
        else:
            values[name] = text
    if values.get("name", "local") == "local":
        values.pop("address", None)  # RAY_ADDRESS alone does not switch the studio to Ray
    try:
        return executor_of(**values)
    except ValueError as exc:
        message = str(exc)
        for variable, name in ENVIRONMENT.items():
            message = message.replace(f"`{name}`", variable)
        message = message.replace("`executor`", "STUDIO_EXECUTOR").replace(
            "`ray_address`", "RAY_ADDRESS")
        raise ValueError(message) from None


def executor_of(name: str = "local", address: str | None = None,
                cpus_per_training: int | None = None, gpus_per_training: float = 0.0,
                retries: int = 1, ray_cpus: int | None = None) -> LocalExecutor | RayExecutor:
    """The executor a request names, checked before any work (Ray's presence included).

    Raises:
        ValueError: an unknown executor, a bad resource count, or Ray options with ``local``.
        RayMissing: ``ray`` when Ray is not installed (saying how to install it).
    """
    if name not in EXECUTORS:
        raise ValueError(f"`executor`: {name!r} is not one of {', '.join(EXECUTORS)}")
    if cpus_per_training is not None and cpus_per_training < 1:
        raise ValueError("`cpus_per_training`: at least 1")
    if gpus_per_training < 0 or retries < 0:
        raise ValueError("`gpus_per_training` and `retries`: 0 or more")
    if ray_cpus is not None and ray_cpus < 1:
        raise ValueError("`ray_cpus`: at least 1")
    if name == "local":
        if address or gpus_per_training or ray_cpus:
            raise ValueError("`ray_address`, `ray_cpus` and `gpus_per_training` are for "
                             "`executor` ray")
        return LocalExecutor(cpus_per_training)
    if not ray_installed():
        raise RayMissing(INSTALL_RAY)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and ray_cpus:
        raise ValueError("`ray_cpus` is for a Ray started here; a cluster at `ray_address` has "
                         "the CPUs its machines declared")
    return RayExecutor(address, cpus_per_training or 1, gpus_per_training, retries, ray_cpus)
