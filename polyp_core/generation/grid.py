"""X/Y comparison grids: one image per (x, y) setting, the same seed everywhere, labelled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw

from polyp_core.generation.request import LoraChoice, SampleRequest
from polyp_core.workspace import Workspace

AXES = {"guidance": float, "steps": int, "scheduler": str, "class_label": str, "seed": int,
        "checkpoint": str, "lora_scale": float}


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


def _apply(request: SampleRequest, name: str, value) -> SampleRequest:  # noqa: ANN001
    if name == "lora_scale":
        return replace(request, loras=tuple(LoraChoice(l.path, value) for l in request.loras))
    if name == "checkpoint":
        return request
    return replace(request, **{name: value})


def labelled_grid(cells: Sequence[Sequence[np.ndarray]], x_labels: Sequence[str],
                  y_labels: Sequence[str], margin: int = 90, header: int = 24) -> np.ndarray:
    """Rows of equally sized images with column labels on top and row labels on the left."""
    h, w = cells[0][0].shape[:2]
    canvas = Image.new("RGB", (margin + w * len(x_labels), header + h * len(y_labels)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(x_labels):
        draw.text((margin + j * w + 4, 6), str(label), fill="black")
    for i, row in enumerate(cells):
        draw.text((4, header + i * h + h // 2 - 6), str(y_labels[i]), fill="black")
        for j, rgb in enumerate(row):
            canvas.paste(Image.fromarray(rgb), (margin + j * w, header + i * h))
    return np.asarray(canvas)


def xy_grid(workspace: Workspace, model_id: str, base: SampleRequest, x_axis: str, x_values: list,
            y_axis: str, y_values: list, checkpoint: str | None = None, device=None,
            cell_size: int = 128) -> np.ndarray:
    """Sample one image per (y, x) with ``base``'s seed and settings changed along the axes.

    Raises:
        ValueError: unknown axis, or a request the generator refuses.
    """
    from polyp_core.data.images import resize_rgb
    from polyp_core.generation.backends import load_generator

    for axis in (x_axis, y_axis):
        if axis not in AXES:
            raise ValueError(f"unknown axis {axis!r}; choose one of: {', '.join(AXES)}")
    generators: dict[str | None, object] = {}

    def generator_at(ckpt: str | None):  # noqa: ANN202
        if ckpt not in generators:
            generators[ckpt] = load_generator(workspace, model_id, ckpt, device)
        return generators[ckpt]

    rows = []
    for y in y_values:
        row = []
        for x in x_values:
            request = _apply(_apply(replace(base, n=1), y_axis, y), x_axis, x)
            ckpt = x if x_axis == "checkpoint" else y if y_axis == "checkpoint" else checkpoint
            image = generator_at(ckpt).sample(request)[0].rgb
            row.append(resize_rgb(image, cell_size))
        rows.append(row)
    return labelled_grid(rows, [f"{x_axis}={x}" for x in x_values], [f"{y_axis}={y}" for y in y_values])
