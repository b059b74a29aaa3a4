"""A leak refusal names the images (data set, id, split), and a byte copy's training twin."""

from __future__ import annotations

from types import SimpleNamespace

from polyp_core.data.tensors import ImageRef
from polyp_core.experiment.folds import Fold
from polyp_core.experiment.plan import _held_out_names


def test_a_held_out_image_is_named_with_its_copies_in_other_splits():
    shas = ["a" * 64, "b" * 64, "a" * 64, "c" * 64]  # image 2 is a byte copy of image 0
    side = SimpleNamespace(real=[ImageRef(s, f"/x/{i}.png", "AD") for i, s in enumerate(shas)],
                           items=[SimpleNamespace(id=f"f{i}") for i in range(4)])
    fold = Fold("fixed split", train=(0, 1), valid=(3,), test=(2,))
    assert _held_out_names("neo", side, fold) == {
        "a" * 64: "neo:f0 (train) = neo:f2 (test)", "c" * 64: "neo:f3 (valid)"}
