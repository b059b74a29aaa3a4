"""Small helpers the test modules share (fixtures stay in ``conftest.py``)."""

from __future__ import annotations

from polyp_core.progress import CancelToken, no_progress
from polyp_core.workflows import TERMINAL, generate, pool


def inpaint_now(db, workspace, request, **kwargs) -> tuple:
    """Run the one inpaint entry in this thread, as the terminal does: (result, stored)."""
    made: dict = {}
    generate.inpaint_work(db, workspace, TERMINAL, request, holder=made, **kwargs)(
        no_progress, CancelToken())
    return made["result"], made["stored"]


def gate_now(db, workspace, config):
    """Run the one gate entry in this thread, as the terminal does: the gate's result."""
    made: dict = {}
    pool.gate_work(db, workspace, TERMINAL, config, made)(no_progress, CancelToken())
    return made["result"]
