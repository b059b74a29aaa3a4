"""Polyp Studio engine: data, backbones, generators, diagnostics and classifiers.

No gradio and no HTTP here; the UI (``app.py``) and the CLI (``python -m polyp_core``)
both call this plain Python API.
"""

__version__ = "0.1.0"
