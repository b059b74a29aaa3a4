"""X/Y comparison grids: one image per (x, y) setting, the same seed everywhere, labelled."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from polyp_core.generation.request import LoraChoice, SampleRequest
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.workspace import Workspace

if TYPE_CHECKING:
    import torch

    from polyp_core.generation.ddpm import DDPMGenerator
    from polyp_core.generation.sd_lora import SDLoraGenerator

AXES = {"guidance": float, "steps": int, "scheduler": str, "class_label": str, "seed": int,
        "checkpoint": str, "lora_scale": float}
MAX_CELLS = 64  # STUDIO_GRID_MAX_CELLS overrides it


def max_cells(environ: dict[str, str] | None = None) -> int:
    """The most cells a grid may have: ``STUDIO_GRID_MAX_CELLS`` or 64."""
    text = (os.environ if environ is None else environ).get("STUDIO_GRID_MAX_CELLS")
    if text is None:
        return MAX_CELLS
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"STUDIO_GRID_MAX_CELLS={text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"STUDIO_GRID_MAX_CELLS={value} must be at least 1")
    return value


def check_grid(x_axis: str, x_values: Sequence, y_axis: str, y_values: Sequence,
               limit: int | None = None) -> None:
    """Refuse unknown axes and grids over the cell limit, before any work is queued.

    Raises:
        ValueError: naming the axis, or the grid's size and the limit.
    """
    for axis in (x_axis, y_axis):
        if axis not in AXES:
            raise ValueError(f"unknown axis {axis!r}; choose one of: {', '.join(AXES)}")
    limit = max_cells() if limit is None else limit
    cells = len(x_values) * len(y_values)
    if cells > limit:
        raise ValueError(f"a grid of {len(x_values)} x {len(y_values)} = {cells} cells is over the "
                         f"limit of {limit} cells (STUDIO_GRID_MAX_CELLS); use fewer values")


def parse_axis(name: str, values: str) -> list:
    """``"1, 2.5, 4"`` -> ``[1.0, 2.5, 4.0]`` for axis ``name``.

    Raises:
        ValueError: an unknown axis, or a value of the wrong type (naming both).
    """
    if name not in AXES:
        raise ValueError(f"unknown axis {name!r}; choose one of: {', '.join(AXES)}")
    out = []
    for part in (p.strip() for p in values.split(",")):
        if not part:
            continue
        try:
            out.append(AXES[name](part))
        except ValueError:
            raise ValueError(f"axis {name}: {part!r} is not a {AXES[name].__name__}") from None
    if not out:
        raise ValueError(f"axis {name}: give at least one value")
    return out


def _apply(request: SampleRequest, name: str, value: object) -> SampleRequest:
    if name == "lora_scale":
        return replace(request, loras=tuple(LoraChoice(l.path, value) for l in request.loras))
    if name == "checkpoint":
        return request
    return replace(request, **{name: value})


def labelled_grid(cells: Sequence[Sequence[np.ndarray | None]], x_labels: Sequence[str],
                  y_labels: Sequence[str], margin: int = 90, header: int = 24,
                  cell_size: int = 128) -> np.ndarray:
    """Rows of equally sized images with column labels on top and row labels on the left; a
    cell still ``None`` (not made yet) stays light grey."""
    h = w = cell_size
    canvas = Image.new("RGB", (margin + w * len(x_labels), header + h * len(y_labels)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(x_labels):
        draw.text((margin + j * w + 4, 6), str(label), fill="black")
    for i, row in enumerate(cells):
        draw.text((4, header + i * h + h // 2 - 6), str(y_labels[i]), fill="black")
        for j, rgb in enumerate(row):
            tile = Image.new("RGB", (w, h), (225, 225, 225)) if rgb is None else Image.fromarray(rgb)
            canvas.paste(tile, (margin + j * w, header + i * h))
    return np.asarray(canvas)


def grid_labels(x_axis: str, x_values: Sequence, y_axis: str,
                y_values: Sequence) -> tuple[list[str], list[str]]:
    return [f"{x_axis}={x}" for x in x_values], [f"{y_axis}={y}" for y in y_values]


def xy_grid(workspace: Workspace, model_id: str, base: SampleRequest, x_axis: str, x_values: list,
            y_axis: str, y_values: list, checkpoint: str | None = None,
            device: torch.device | None = None,
            cell_size: int = 128, progress: Progress = no_progress,
            cancel: CancelToken | None = None,
            on_cell: Callable[[int, int, np.ndarray], None] | None = None,
            limit: int | None = None) -> np.ndarray:
    """Sample one image per (y, x) with ``base``'s seed and settings changed along the axes;
    ``on_cell(row, column, rgb)`` sees each cell as it is made (a page shows them as they come).

    Raises:
        ValueError: unknown axis, a grid over the cell limit, or a request the generator refuses.
        Cancelled: when ``cancel`` is set (between and inside cells).
    """
    from polyp_core.data.images import resize_rgb
    from polyp_core.generation.backends import load_generator

    check_grid(x_axis, x_values, y_axis, y_values, limit)
    requests = [[_apply(_apply(replace(base, n=1), y_axis, y), x_axis, x) for x in x_values]
                for y in y_values]  # every cell's request is checked before the first is made
    generators: dict[str | None, object] = {}

    def generator_at(ckpt: str | None) -> DDPMGenerator | SDLoraGenerator:
        if ckpt not in generators:
            generators[ckpt] = load_generator(workspace, model_id, ckpt, device)
        return generators[ckpt]

    total = len(x_values) * len(y_values)
    rows = [[None] * len(x_values) for _ in y_values]
    for i, y in enumerate(y_values):
        for j, x in enumerate(x_values):
            if cancel is not None:
                cancel.check()
            ckpt = x if x_axis == "checkpoint" else y if y_axis == "checkpoint" else checkpoint
            image = generator_at(ckpt).sample(requests[i][j], cancel=cancel)[0].rgb
            rows[i][j] = resize_rgb(image, cell_size)
            if on_cell is not None:
                on_cell(i, j, rows[i][j])
            done = i * len(x_values) + j + 1
            progress(done, total, f"cell {done} of {total}")
    return labelled_grid(rows, *grid_labels(x_axis, x_values, y_axis, y_values),
                         cell_size=cell_size)
