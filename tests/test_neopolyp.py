"""The shared real data set imports unchanged (skips when ../shared/data is absent)."""

from conftest import NEOPOLYP, requires_neopolyp
from polyp_core.data.images import load_mask
from polyp_core.data.importer import ImportConfig, import_dataset

pytestmark = requires_neopolyp()


def test_neopolyp_imports_unchanged(workspace):
    result = import_dataset(workspace, ImportConfig(str(NEOPOLYP)))
    manifest = workspace.load_manifest("neopolyp")
    assert result.n_images == 951 and result.n_masks == 951
    assert manifest.scheme == "ad_vs_rest" and manifest.schemes == ["ad_vs_rest"]
    assert manifest.class_counts()["all"] == {"AD": 694, "REST": 257}
    assert all(item.extra["histology"] == ("1" if item.label == "AD" else "0")
               for item in manifest.items)
    item = manifest.items[0]
    assert load_mask(item.mask).shape == (item.height, item.width)
    counts = manifest.class_counts()
    assert counts["train"]["REST"] / counts["train"]["AD"] == \
        __import__("pytest").approx(257 / 694, abs=0.02)
