"""Accounts (admins): who can sign in, deactivate or change a role (their sessions end at once),
and the audit log of sign-ins, failures, lockouts, account and study changes.

Accounts are created and passwords set on the command line (``reviewer add``, ``reviewer
password``): a password never travels through the page.
"""

from __future__ import annotations

import functools

import gradio as gr

from polyp_core.review.accounts import Person
from polyp_core.workflows import accounts as accounts_workflow
from studio_ui.access import Access
from studio_ui.services import Studio, shown_errors

ACTIONS = accounts_workflow.ACTIONS


class AccountDesk:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def accounts(self, person: Person) -> list[list]:
        return [[a["name"], a["role"], "yes" if a["active"] else "no", a["sessions"]]
                for a in accounts_workflow.accounts(self.studio.db, person)]

    @shown_errors
    def show(self, person: Person) -> tuple:
        rows = self.accounts(person)
        audit = [[e["at"].isoformat(timespec="seconds"), e["kind"], e["actor"] or "", e["address"] or "", e["target"] or "",
                  ", ".join(f"{k}={v}" for k, v in (e["detail"] or {}).items())]
                 for e in accounts_workflow.audit(self.studio.db, person, limit=200)]
        return rows, gr.update(choices=[r[0] for r in rows]), audit

    @shown_errors
    def change(self, person: Person, name: str | None, action: str) -> str:
        if not name:
            raise gr.Error("Choose an account.")
        if name == person.name and action in ("deactivate", "make reviewer"):
            raise gr.Error("You cannot deactivate or demote your own account here; ask another "
                           "admin or use the command line.")
        ended = accounts_workflow.change(self.studio.db, person, name, action)
        return f"**{name}**: {action} done; {ended} open session(s) ended."


def build_accounts_tab(studio: Studio, access: Access) -> dict:
    desk = AccountDesk(studio)
    gr.Markdown("Accounts are added and passwords set on the command line "
                "(`python -m polyp_core reviewer add NAME`, `reviewer password NAME`). "
                "Deactivating an account or changing its role ends its open sessions at once.")
    accounts = gr.Dataframe(headers=["name", "role", "active", "open sessions"],
                            label="Accounts", interactive=False)
    with gr.Row():
        name = gr.Dropdown([], label="Account")
        action = gr.Radio(list(ACTIONS), value="deactivate", label="Change")
        apply = gr.Button("Apply", variant="stop")
    message = gr.Markdown()
    refresh_btn = gr.Button("Refresh", size="sm")
    audit = gr.Dataframe(headers=["at (UTC)", "event", "who", "address", "target", "detail"],
                         label="Audit log (newest first)", interactive=False, wrap=True)
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
    shown = [accounts, name, audit]
    on(on(apply.click, desk.change, inputs=[name, action], outputs=message,
          api_name="change_account").then, desk.show, outputs=shown)
    on(refresh_btn.click, desk.show, outputs=shown, api_name="audit_log")
    return {"refresh": desk.show, "outputs": shown}
