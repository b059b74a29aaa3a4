"""Inpainting in a window at the frame's resolution: where the window goes, what the paste
changes (only the hole, with a feathered seam), and what is refused. Worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from polyp_core.generation.inpaint import Background, InpaintRequest, plan_masks
from polyp_core.generation.window import (Window, feather_alpha, lesion_window, paste,
                                          seam_width, touches_border)


def _hole(shape, rows, cols):
    hole = np.zeros(shape, bool)
    hole[rows[0]:rows[1], cols[0]:cols[1]] = True
    return hole


def test_the_window_is_the_holes_box_grown_by_half_square_and_in_the_frame():
    # a 20 x 10 box at rows 40-49, columns 60-79 of a 100 x 200 frame: side 30 (1.5 x 20),
    # centred on (45, 70): x = 70 - 15, y = 45 - 15
    hole = _hole((100, 200), (40, 50), (60, 80))
    assert lesion_window(hole, 16) == Window(55, 30, 30)
    # at least the model's size: side 64, centred
    assert lesion_window(hole, 64) == Window(38, 13, 64)
    # near the right edge: moved inside the frame, not cut
    assert lesion_window(_hole((100, 200), (40, 50), (185, 200)), 16) == Window(177, 34, 23)
    # no larger than the frame's shorter side
    assert lesion_window(_hole((100, 200), (0, 90), (50, 140)), 16) == Window(45, 0, 100)
    with pytest.raises(ValueError, match=r"the hole spans 120x10 px, more than the frame's "
                                         r"window limit of 100 px"):
        lesion_window(_hole((100, 200), (40, 50), (40, 160)), 16)
    with pytest.raises(ValueError, match="the hole is empty"):
        lesion_window(np.zeros((10, 10), bool), 4)


def test_every_hole_lies_inside_its_window():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(20, 120, 2)
        y0, x0 = rng.integers(0, h - 1), rng.integers(0, w - 1)
        y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
        hole = _hole((h, w), (y0, y1), (x0, x1))
        if max(y1 - y0, x1 - x0) > min(h, w):
            continue
        win = lesion_window(hole, int(rng.integers(4, 64)))
        assert 0 <= win.x and win.x + win.side <= w and 0 <= win.y and win.y + win.side <= h
        assert win.crop(hole).sum() == hole.sum()


def test_the_paste_changes_the_hole_only_with_a_feathered_seam():
    """An 8 x 8 black frame, a 4 x 4 hole at rows/columns 2-5, a generated window of 200s at
    4 px (scaled back to 8 px: still 200), seam 2 px: the hole's border pixels (distance 1)
    take half, 100; its inner 2 x 2 (distance 2) all, 200; outside, the frame."""
    frame = np.zeros((8, 8, 3), np.uint8)
    hole = _hole((8, 8), (2, 6), (2, 6))
    out = paste(frame, np.full((4, 4, 3), 200, np.uint8), Window(0, 0, 8), hole, 2.0)
    expected = np.zeros((8, 8), np.uint8)
    expected[2:6, 2:6] = 100
    expected[3:5, 3:5] = 200
    assert np.array_equal(out[..., 0], expected)
    assert np.array_equal(out[~hole], frame[~hole])
    assert np.array_equal(feather_alpha(hole, 1.0), hole.astype(np.float32))  # no seam
    assert seam_width(Window(0, 0, 128), 64) == 2.0 and seam_width(Window(0, 0, 32), 64) == 1.0


def test_masks_at_the_border_and_holes_beyond_the_limit_are_refused_before_any_work():
    rgb = np.zeros((40, 80, 3), np.uint8)
    edge = _hole((40, 80), (10, 20), (0, 10))
    assert touches_border(edge) and not touches_border(_hole((40, 80), (10, 20), (5, 10)))
    request = InpaintRequest(generator="g", class_label="AD", dilate=0)
    at_edge = Background(rgb, edge, {"dataset": "d", "id": "f1"})
    with pytest.raises(ValueError, match="the own polyp mask of d:f1 touches the frame's border"):
        plan_masks(None, request, at_edge)
    wide = Background(rgb, _hole((40, 80), (10, 20), (10, 65)), {"dataset": "d", "id": "f2"})
    with pytest.raises(ValueError, match="the hole spans 55x10 px, more than the frame's "
                                         "window limit of 40 px"):
        plan_masks(None, request, wide)
    # without a window both are inpainted as before
    whole = InpaintRequest(generator="g", class_label="AD", dilate=0, window="none")
    assert plan_masks(None, whole, at_edge)[1].sum() == edge.sum()
    assert plan_masks(None, whole, wide)[1].any()
    # a frame without a mask
    bare = Background(rgb, None, {"dataset": "d", "id": "f3"})
    with pytest.raises(ValueError, match="frame d:f3 has no polyp mask"):
        plan_masks(None, request, bare)


def test_an_inpainter_learns_from_each_frames_polyp_window_a_jittered_and_a_random_one():
    from polyp_core.generation.window import training_windows

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)
    mask = _hole((100, 200), (40, 50), (60, 80))
    crops = training_windows(frame, mask, 16, np.random.default_rng(1), dilate_px=5)
    assert len(crops) == 3 and all(c.shape == (16, 16, 3) and m.shape == (16, 16)
                                   for c, m in crops)
    # the own window: the hole (the mask grown by 5 px: 20 x 30) grown by half, side 45,
    # centred on the polyp; the polyp is 20 of 45 px wide there, 7 of 16 model pixels
    own = crops[0][1]
    rows, cols = np.nonzero(own)
    assert cols.max() - cols.min() + 1 in (7, 8) and abs(cols.mean() - 7.5) < 1
    assert abs(rows.mean() - 7.5) < 1
    # a polyp too large for a window of the frame: only the random window
    huge = _hole((100, 200), (10, 90), (20, 180))
    assert len(training_windows(frame, huge, 16, np.random.default_rng(2), 20)) == 1
    # a frame without a polyp: the random window alone
    assert len(training_windows(frame, np.zeros((100, 200), bool), 16,
                                np.random.default_rng(3), 20)) == 1


def test_a_window_without_a_polyp_trains_as_a_whole_hole():
    import torch

    from polyp_core.generation.ddpm.trainer import _inpaint_holes

    polyp = torch.zeros((2, 1, 4, 4))
    polyp[1, 0, 1, 2] = 1
    hole = _inpaint_holes(polyp, torch.Generator().manual_seed(0), max_dilate=0, full_frame=0.0)
    assert hole[0].eq(1).all() and torch.equal(hole[1], polyp[1])
