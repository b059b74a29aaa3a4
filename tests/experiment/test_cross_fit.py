"""The cross-fitted gate: an image made on a training frame is never scored by a gate that
learned from that frame (or from the frame its pasted polyp came from). The U-Net is replaced
by a recorder: a "model" is the set of frames it learned from, and it scores an image 1.0
when it saw one of the image's frames (the optimistic case the cross-fit removes), else 0.5."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from polyp_core.data.tensors import ImageRef
from polyp_core.experiment import gating
from polyp_core.segment import gate as quality_gate


class Frames:
    """A stand-in for MaskTensors: just the refs, and ``subset``."""

    def __init__(self, refs):
        self.refs = list(refs)

    def subset(self, indices):
        return Frames([self.refs[i] for i in indices])


@pytest.fixture
def recorder(monkeypatch):
    trained = []

    def train_gate(real, train, seed, device=None, registry=None, progress=None, cancel=None):
        learned = {r.sha256 for r in real.refs}
        trained.append(learned)
        return learned

    def gate_ious(model, data, device=None):
        return np.array([1.0 if set(frames[r.sha256]) & model else 0.5 for r in data.refs])

    frames: dict[str, list[str]] = {}
    monkeypatch.setattr(quality_gate, "train_gate", train_gate)
    monkeypatch.setattr(quality_gate, "gate_ious", gate_ious)
    return trained, frames


def test_no_image_is_scored_by_a_gate_that_saw_its_frames(recorder):
    trained, frames = recorder
    # 12 training frames in 6 groups (two frames each), and 2 held-out frames
    real = [ImageRef(f"f{i}", f"f{i}.png", "LESION", mask="m") for i in range(14)]
    plan = SimpleNamespace(real=real, group_of=[f"g{i // 2}" for i in range(14)])
    train = list(range(12))
    images = [ImageRef(f"s{i}", f"s{i}.png", "LESION", "synthetic", "m") for i in range(9)]
    # s0-s5 inpainted into frames 0, 2, ..., 10; s6, s7 pasted: polyp of one frame onto another;
    # s8 made of a held-out frame only (not training data of this fold)
    frames.update({f"s{i}": [f"f{2 * i}"] for i in range(6)})
    frames.update({"s6": ["f1", "f3"], "s7": ["f4", "f5"], "s8": ["f13"]})
    ious, parts = gating.cross_fitted_ious(Frames(real), plan, train, images, Frames(images), 3,
                                           frames, seed=0)
    assert ious.tolist() == [0.5] * 9  # no gate saw a frame of the image it scored
    # the three one-part gates, one for s6 (frames of groups 0 and 1: two parts unless dealt
    # together), s7 (one group: one part) and s8 (a gate on the whole training part)
    learned = [len(t) for t in trained]
    assert sum(p["scored"] for p in parts.values()) == 9
    assert parts["none"] == {"left_out_parts": [], "learned_from": 12, "scored": 1}
    assert sorted(learned)[-1] == 12 and all(n in (4, 8, 12) for n in learned)
    # a gate on the whole training part (gate_folds 0) sees every training frame
    whole = quality_gate.train_gate(Frames([real[i] for i in train]), None, 0)
    assert quality_gate.gate_ious(whole, Frames(images)).tolist() == [1.0] * 8 + [0.5]


def test_one_gate_fold_is_refused():
    from polyp_core.experiment import SelectionPolicy

    with pytest.raises(ValueError, match="`gate_folds`: 0 .* or at least 2"):
        SelectionPolicy(gate_folds=1).validate(("AD",))
