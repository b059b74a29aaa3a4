"""Long work in the background: a ``job`` row per piece of work, with progress, cancellation
and a status that survives a restart.

A job is any callable ``work(progress, cancel) -> str`` (the string is kept as the job's last
message, usually the id of the run it stored). :class:`JobRunner` runs it in a thread;
:func:`run_job` runs it in the calling thread (the CLI) but records it the same way, so the
studio sees CLI jobs too. Every job notes the process that runs it; when a runner starts, a
job left ``queued`` or ``running`` by a process that is gone is marked ``interrupted``, never
silently lost. Work that uses the GPU takes a slot first, so two users cannot run two
trainings into one GPU's memory at once.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.progress import CancelToken, Cancelled, Progress, no_progress
from review_db import queries
from review_db.database import Database

if TYPE_CHECKING:
    from review_db.models import Job

Work = Callable[[Progress, CancelToken], str | None]
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class JobStatus:
    id: str
    kind: str
    status: str  # queued, running, done, failed, cancelled, interrupted
    done: int
    total: int
    message: str | None
    error: str | None
    config: dict
    created: dt.datetime | None
    started: dt.datetime | None
    finished: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left for a running job at its rate so far (what the UI's job line shows)."""
        from polyp_core.progress import eta

        if self.status != "running" or self.started is None:
            return None
        started = self.started if self.started.tzinfo else self.started.replace(tzinfo=dt.timezone.utc)
        elapsed = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
        return eta(elapsed, self.done, self.total)


def _status(job: Job) -> JobStatus:
    return JobStatus(job.id, job.kind, job.status, job.done, job.total, job.message, job.error,
                     dict(job.config or {}), queries.as_utc(job.created),
                     queries.as_utc(job.started), queries.as_utc(job.finished))


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against a reused pid), or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "unknown"
        return "unknown"


def this_process() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid)}


def _alive(process: dict | None) -> bool:
    if not process or process.get("host") != socket.gethostname():
        return True  # another machine's job: not ours to judge
    start = _process_start(int(process["pid"]))
    return start is not None and start in (process.get("start"), "unknown")


def recover_interrupted(db: Database) -> list[str]:
    """Mark ``interrupted`` every active job whose process has gone (a restart, a kill).

    Returns:
        the ids of the jobs marked.
    """
    marked = []
    with db.session() as session:
        for job in queries.list_jobs(session, statuses=ACTIVE):
            if not _alive(job.config.get("_process")):
                job.status = "interrupted"
                job.finished = dt.datetime.now(dt.timezone.utc)
                job.error = ("the process running this job stopped before it finished "
                             "(the studio was restarted or the process was killed); start it again")
                marked.append(job.id)
    return marked


def job_status(db: Database, job_id: str) -> JobStatus:
    with db.session() as session:
        job = queries.get_job(session, job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        return _status(job)


def list_jobs(db: Database, kind: str | None = None) -> list[JobStatus]:
    with db.session() as session:
        return [_status(j) for j in queries.list_jobs(session, kind)]


def _create(db: Database, kind: str, config: dict, owner_id: int | None) -> str:
    job_id = uuid.uuid4().hex
    with db.session() as session:
        queries.add_job(session, job_id=job_id, kind=kind,
                        config={**config, "_process": this_process()}, owner_id=owner_id)
    return job_id


class _Recorder:
    """The progress callback of one job: writes to the database at most every ``every`` s."""

    def __init__(self, db: Database, job_id: str, echo: Progress, every: float = 0.5) -> None:
        self.db, self.job_id, self.echo, self.every = db, job_id, echo, every
        self.last = 0.0

    def __call__(self, done: int, total: int, message: str) -> None:
        self.echo(done, total, message)
        now = time.monotonic()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        with self.db.session() as session:
            job = queries.get_job(session, self.job_id)
            job.done, job.total, job.message = int(done), int(total), message


def _finish(db: Database, job_id: str, status: str, message: str | None = None,
            error: str | None = None) -> None:
    with db.session() as session:
        job = queries.get_job(session, job_id)
        job.status = status
        job.finished = dt.datetime.now(dt.timezone.utc)
        if message is not None:
            job.message = message
        job.error = error


def _execute(db: Database, job_id: str, work: Work, cancel: CancelToken, echo: Progress) -> str:
    with db.session() as session:
        job = queries.get_job(session, job_id)
        job.status, job.started = "running", dt.datetime.now(dt.timezone.utc)
    try:
        result = work(_Recorder(db, job_id, echo), cancel)
    except Cancelled:
        _finish(db, job_id, "cancelled", error="cancelled by the user")
        return "cancelled"
    except KeyboardInterrupt:
        _finish(db, job_id, "cancelled", error="interrupted from the keyboard")
        raise
    except Exception as exc:  # the job records every failure; the caller decides what to show
        _finish(db, job_id, "failed", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        return "failed"
    _finish(db, job_id, "done", message=result)
    if result:
        with db.session() as session:
            run = queries.get_run(session, result)
            if run is not None:  # the work stored a run: link it to this job
                run.job_id = job_id
    return "done"


def run_job(db: Database, kind: str, config: dict, work: Work, progress: Progress = no_progress,
            cancel: CancelToken | None = None, owner_id: int | None = None) -> JobStatus:
    """Run ``work`` in this thread, recorded as a job (the CLI's way)."""
    job_id = _create(db, kind, config, owner_id)
    _execute(db, job_id, work, cancel or CancelToken(), progress)
    return job_status(db, job_id)


class JobRunner:
    """Runs jobs in background threads; at most ``gpu_slots`` GPU jobs at a time.

    Creating a runner marks the jobs a dead process left behind as interrupted.
    """

    def __init__(self, db: Database, gpu_slots: int = 1) -> None:
        self.db = db
        self.gpu = threading.BoundedSemaphore(gpu_slots)
        self.tokens: dict[str, CancelToken] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.interrupted = recover_interrupted(db)

    def submit(self, kind: str, config: dict, work: Work, owner_id: int | None = None,
               gpu: bool = True) -> str:
        """Queue ``work``; returns the job id at once."""
        job_id = _create(self.db, kind, config, owner_id)
        token = CancelToken()
        self.tokens[job_id] = token

        def body() -> None:
            slot = self.gpu if gpu else None
            if slot is not None:
                while not slot.acquire(timeout=0.2):
                    if token.cancelled:
                        _finish(self.db, job_id, "cancelled", error="cancelled while queued")
                        return
            try:
                _execute(self.db, job_id, work, token, no_progress)
            finally:
                if slot is not None:
                    slot.release()

        thread = threading.Thread(target=body, name=f"job-{kind}-{job_id[:8]}", daemon=True)
        self.threads[job_id] = thread
        thread.start()
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Ask a job of this runner to stop; it stops at its next check. False if unknown."""
        token = self.tokens.get(job_id)
        if token is None:
            return False
        token.cancel()
        return True

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        thread = self.threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return job_status(self.db, job_id)

    def status(self, job_id: str) -> JobStatus:
        return job_status(self.db, job_id)
