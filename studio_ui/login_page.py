"""The sign-in page: a plain HTML form posted to ``/login`` (outside Gradio), no script."""

from __future__ import annotations

import html


def login_html(message: str) -> str:
    """The sign-in page: a plain form, no script, nothing loaded from elsewhere."""
    note = f'<p class="msg" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Polyp Studio · sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: ui-sans-serif, system-ui, sans-serif; background: #f6f7f9; margin: 0; }}
main {{ max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem;
       border-radius: 12px; box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
label {{ display: block; margin: 1rem 0 .3rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .55rem; font-size: 1rem; }}
button {{ margin-top: 1.4rem; width: 100%; padding: .6rem; font-size: 1rem; background: #f97316;
         color: #fff; border: 0; border-radius: 6px; cursor: pointer; }}
.msg {{ color: #b91c1c; font-weight: 600; }}
</style></head>
<body><main><h1>Polyp Studio</h1>{note}
<form method="post" action="/login" id="sign-in">
<label for="name">Name</label><input id="name" name="name" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="sign-in-button">Sign in</button>
</form></main></body></html>"""
