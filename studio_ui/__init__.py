"""Gradio tab builders of the studio. Layout and wiring only: every decision is the engine's
(``polyp_core``), every read and write of the database goes through ``review_db``.

Per-user state (who is signed in, the review token, the last generated batch) lives in
``gr.State``; the shared services (workspace, database, job runner) live in :class:`Studio`.
"""

from studio_ui.services import Studio

__all__ = ["Studio"]
