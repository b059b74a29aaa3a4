"""Small helpers the test modules share (fixtures stay in ``conftest.py``)."""

from __future__ import annotations

from polyp_core.progress import CancelToken, no_progress
from polyp_core.workflows import TERMINAL, generate


def inpaint_now(db, workspace, request, **kwargs) -> tuple:
    """Run the one inpaint entry in this thread, as the terminal does: (result, stored)."""
    made: dict = {}
    generate.inpaint_work(db, workspace, TERMINAL, request, holder=made, **kwargs)(
        no_progress, CancelToken())
    return made["result"], made["stored"]
