"""The workflow floor: one module per thing a user does, between the front ends and the engine.

```
front ends     studio_ui/ (browser tabs)        polyp_core/cli/ (terminal)
                      \\                              /
workflows      polyp_core.workflows.<workflow>: parse the request once, check the acting
               person's role on the server (the UI's declared roles stay the first lock),
               plan once, hand the plan to the job, return what the caller shows
                                   |
engine         polyp_core.data, generation, diagnostics, classify, review, pool, jobs
                                   |
storage        review_db (the only code that writes SQL)
```

Every entry takes the acting :class:`~polyp_core.review.accounts.Person` first after the
database (and workspace): a reviewer, or an account that was deactivated or demoted since it
signed in, gets :class:`~polyp_core.review.errors.PermissionDenied` before anything is read or
changed. The terminal's operator is :data:`~polyp_core.workflows.base.TERMINAL`: the person at
the workstation's shell, who holds the workspace's files anyway (the review commands still
sign in as a named account with ``--as``).

A new capability goes here as a module (or an entry of one) that both front ends call; the
front ends only turn their inputs into its request and its answer into text or widgets.
"""

from polyp_core.workflows.base import TERMINAL, authorise

__all__ = ["TERMINAL", "authorise"]
