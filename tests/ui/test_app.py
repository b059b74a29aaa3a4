"""The app wires the engine: the Data tab's callbacks show counts and masked thumbnails."""

import numpy as np
import pytest

from polyp_core.data.browse import browse_page, count_rows, overlay_mask
from polyp_core.data.cache import PixelCache
from polyp_core.data.importer import ImportConfig, import_dataset


@pytest.fixture
def phantom_ws(small_phantom, workspace):
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))
    return workspace


def test_count_rows_and_pages(phantom_ws):
    manifest = phantom_ws.load_manifest("phantom")
    header, rows = count_rows(manifest)
    assert header == ["split", "AD", "SSA", "HP", "total"]
    assert rows[-1] == ["all", 40, 10, 10, 60]
    cache = PixelCache(phantom_ws.pixel_cache_dir)
    page = browse_page(manifest, cache, split="train", cls="SSA", per_page=4, size=32)
    assert page.total == manifest.class_counts()["train"]["SSA"]
    assert all(caption.startswith("SSA (ASS) · train · ") for _, caption in page.tiles)
    last = browse_page(manifest, cache, page=99, per_page=24, size=32)
    assert last.page == last.pages - 1 == 2 and len(last.tiles) == 12
    with pytest.raises(ValueError, match="unknown split"):
        browse_page(manifest, cache, split="dev")


def test_mask_outline_is_drawn():
    rgb = np.zeros((20, 20, 3), np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    out = overlay_mask(rgb, mask)
    assert tuple(out[5, 10]) == (64, 255, 96) and tuple(out[10, 10]) == (0, 0, 0)
    assert not out[0].any()


def test_app_builds_and_its_callbacks_answer(phantom_ws, monkeypatch):
    import os

    import app

    # build_app points the process's Gradio cache at this workspace; a studio served from this
    # process (live_app) keeps its own: Gradio copies a component updated with gr.update() per
    # session, reading the cache folder from the environment at that moment
    monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ.get("GRADIO_TEMP_DIR", ""))
    demo = app.build_app(phantom_ws)
    assert demo.studio_access.blocks is demo and len(demo.fns) > 40  # every event declared
    browser = app.DataBrowser(phantom_ws)
    counts, classes, summary, scheme = browser.overview("phantom", None)
    assert scheme == {"choices": ["three_class", "ad_vs_rest"], "value": "three_class",
                      "__type__": "update"}
    assert "60 images" in summary and "three_class" in summary
    assert classes["choices"] == ["all", "AD", "SSA", "HP"]
    assert counts["headers"] == ["split", "AD", "SSA", "HP", "total"]
    assert counts["value"][-1] == ["all", 40, 10, 10, 60]
    tiles, label, page = browser.page("phantom", "ad_vs_rest", "all", "REST", 0, True)
    assert label.endswith("20 images") and page == 0
    assert all("REST" in caption for _, caption in tiles)
