"""Frames with identical decoded pixels share a group at import, whatever the split method,
and the import says how many it found."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image

from polyp_core.data.duplicates import describe, joined_groups, keep_together, same_pixel_sets
from polyp_core.data.images import load_rgb, pixel_sha256
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.workspace import Workspace
from tests.conftest import make_hospital, three_class_labels, write_csv


def test_groups_are_joined_by_hand():
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    groups = [None, None, "P1", "P1", "P2", None, "P3"]
    sets = same_pixel_sets(["x", "x", "y", None, "y", None, "z"])
    assert sets == [[0, 1], [2, 4]]  # "z" once, None never joined
    joined = joined_groups(ids, groups, sets)
    # a = b (no source group); c = e joins P1 (with d) and P2; f and g untouched
    assert joined == ["same-pixels:a", "same-pixels:a", "P1+P2", "P1+P2", "P1+P2", None, "P3"]
    assert keep_together(["train", "test", "valid", "test", "train", "test", "valid"], sets) == \
        ["train", "train", "valid", "test", "valid", "test", "valid"]
    (note,) = describe(ids, sets, ["AD"] * 7)
    assert note.startswith("4 frames have identical decoded pixels (2 pictures, 2 pairs): "
                           "a = b; c = e.")
    three = describe(["p", "q", "r"], [[0, 1, 2]], ["AD", "AD", "HP"])
    assert "(1 picture, 3 pairs)" in three[0]
    assert three[1] == "identical frames with different classes: p (AD), q (AD), r (HP)"


def test_pixel_hash_ignores_the_bytes_and_sees_the_shape():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert pixel_sha256(rgb) == pixel_sha256(rgb.copy())
    assert pixel_sha256(rgb) != pixel_sha256(rgb.reshape(3, 2, 3))  # same bytes, other shape
    other = rgb.copy()
    other[1, 2, 2] += 1
    assert pixel_sha256(rgb) != pixel_sha256(other)


def test_an_import_groups_copies_and_re_encoded_frames_in_every_split_method(tmp_path):
    source = make_hospital(tmp_path / "h", three_class_labels(8, 6, 6))
    images = source / "images"
    shutil.copyfile(images / "ad000.png", images / "ad100.png")  # a byte copy
    Image.fromarray(load_rgb(images / "ad001.png")).save(images / "ad101.bmp")  # other bytes
    shutil.copyfile(source / "masks" / "ad000.png", source / "masks" / "ad100.png")
    shutil.copyfile(source / "masks" / "ad001.png", source / "masks" / "ad101.png")
    with open(source / "labels.csv", "a") as table:
        table.write("ad100,AD,x\nad101,AD,x\n")
    workspace = Workspace(tmp_path / "ws")
    rows: list = []
    for method in ("stratified", "grouped"):
        if method == "grouped":  # patients named by the source: the copies join their groups
            rows = [[i, "AD" if i.startswith("ad") else "HP" if i.startswith("hp") else "ASS",
                     f"P{n}"] for n, i in enumerate(sorted(
                         p.stem for p in images.iterdir()))]
            write_csv(source / "labels.csv", ["image_id", "cls", "patient"], rows)
        for seed in range(4):
            result = import_dataset(workspace, ImportConfig(
                str(source), name=f"{method}{seed}", split=method, seed=seed))
            assert any("4 frames have identical decoded pixels (2 pictures, 2 pairs): "
                       "ad000 = ad100; ad001 = ad101" in n for n in result.notes), result.notes
            items = {i.id: i for i in workspace.load_manifest(f"{method}{seed}").items}
            for a, b in (("ad000", "ad100"), ("ad001", "ad101")):
                assert items[a].split == items[b].split and items[a].group == items[b].group
                assert items[a].pixels == items[b].pixels
            if method == "stratified":
                assert items["ad000"].group == "same-pixels:ad000"
                assert items["ad002"].group is None  # untouched frames name no group
            else:
                patient = {row[0]: row[2] for row in rows}
                assert items["ad000"].group == "+".join(sorted((patient["ad000"],
                                                                patient["ad100"])))
                assert items["ad002"].group == patient["ad002"]


def test_a_split_the_user_fixed_is_kept_and_its_crossing_copies_are_named(tmp_path):
    """Split files (or a split column) are the user's: copies they put in two splits stay
    there, joined in one group, and the import says which."""
    source = make_hospital(tmp_path / "h", three_class_labels(6, 3, 3))
    shutil.copyfile(source / "images" / "ad000.png", source / "images" / "ad100.png")
    rows = [[f"images/{p.name}", p.stem[:2].upper().replace("SS", "SSA"),
             "test" if p.stem == "ad100" else ("valid" if p.stem.endswith("2") else "train")]
            for p in sorted((source / "images").iterdir())]
    table = write_csv(tmp_path / "h" / "paths.csv", ["path", "label", "split"], rows)
    workspace = Workspace(tmp_path / "ws")
    result = import_dataset(workspace, ImportConfig(str(table), name="fixed"))
    items = {i.id: i for i in workspace.load_manifest("fixed").items}
    assert (items["images__ad000"].split, items["images__ad100"].split) == ("train", "test")
    assert items["images__ad000"].group == items["images__ad100"].group
    assert any(n.startswith("the split files put identical frames in different splits: "
                            "images__ad000 (train), images__ad100 (test)") for n in result.notes)
