"""Import of the three layouts, label schemes, splits, and every kind of bad input."""


import numpy as np
import pytest

from conftest import (make_hospital, three_class_labels, write_csv, write_image, write_mask)
from polyp_core.data.cache import PixelCache
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.errors import DatasetImportError


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def test_hospital_layout_with_ass_spelling_and_histologia(workspace, tmp_path):
    src = make_hospital(tmp_path / "hosp", three_class_labels())
    result = import_dataset(workspace, ImportConfig(str(src), name="hosp"))
    manifest = workspace.load_manifest("hosp")
    assert result.n_images == 26 and result.n_masks == 26
    assert result.scheme == "three_class" and result.split_method == "stratified"
    assert manifest.class_counts()["all"] == {"AD": 14, "SSA": 6, "HP": 6}
    ssa = next(i for i in manifest.items if i.id == "ss000")
    assert (ssa.raw_label, ssa.label) == ("ASS", "SSA")
    assert ssa.extra == {"histologia": "histo-ASS"}
    assert ssa.mask.endswith("ss000.png") and ssa.mask_sha256
    assert (ssa.width, ssa.height) == (40, 32)


def test_image_id_column_with_space_and_semicolons(workspace, tmp_path):
    src = tmp_path / "semi"
    labels = three_class_labels(6, 3, 3)
    for i, image_id in enumerate(labels):
        write_image(src / "images" / f"{image_id}.tif", seed=i)
    lines = ["Image ID;cls"] + [f"{k};{v}" for k, v in labels.items()]
    (src / "data.csv").write_text("\n".join(lines) + "\n", encoding="latin-1")
    result = import_dataset(workspace, ImportConfig(str(src)))
    assert result.n_images == 12 and result.n_masks == 0


def test_label_schemes_switch_and_keep_raw_labels(workspace, tmp_path):
    src = make_hospital(tmp_path / "h", three_class_labels())
    import_dataset(workspace, ImportConfig(str(src), name="h"))
    manifest = workspace.set_scheme("h", "ad_vs_rest")
    assert manifest.class_counts()["all"] == {"AD": 14, "REST": 12}
    reloaded = workspace.load_manifest("h")
    assert reloaded.scheme == "ad_vs_rest"
    assert {i.raw_label for i in reloaded.items} == {"AD", "ASS", "HP"}
    assert workspace.set_scheme("h", "three_class").class_counts()["all"]["SSA"] == 6
    with pytest.raises(ValueError, match="unknown label scheme"):
        workspace.set_scheme("h", "four_class")


def test_ad_vs_rest_set_cannot_switch_to_three_class(workspace, tmp_path):
    src = make_hospital(tmp_path / "bin", {**{f"a{i}": "AD" for i in range(6)},
                                           **{f"r{i}": "REST" for i in range(4)}})
    result = import_dataset(workspace, ImportConfig(str(src), name="bin"))
    assert result.scheme == "ad_vs_rest"
    with pytest.raises(ValueError, match="cannot express"):
        workspace.set_scheme("bin", "three_class")


def test_split_files_in_sibling_folders_are_honoured(workspace, tmp_path):
    src = make_hospital(tmp_path / "s", three_class_labels(6, 3, 3))
    ids = list(three_class_labels(6, 3, 3))
    write_csv(src / "train" / "train.csv", ["image_id"], [[i] for i in ids[:8]])
    write_csv(src / "valid" / "valid.csv", ["image_id"], [[i] for i in ids[8:10]])
    write_csv(src / "test" / "gt_test.csv", ["image id", "cls"], [[i, "x"] for i in ids[10:]])
    result = import_dataset(workspace, ImportConfig(str(src)))
    manifest = workspace.load_manifest("s")
    assert result.split_method == "files"
    assert {i.id for i in manifest.split_items("train")} == set(ids[:8])
    assert {i.id for i in manifest.split_items("test")} == set(ids[10:])


def test_split_folders_with_their_own_images(workspace, tmp_path):
    """The seed code base kept train/valid/test folders, each with images/ and a CSV."""
    src = tmp_path / "folders"
    labels = three_class_labels(9, 3, 3)
    splits = {"train": "train.csv", "valid": "valid.csv", "test": "gt_test.csv"}
    chunks = {"train": [], "valid": [], "test": []}
    for index, image_id in enumerate(labels):
        chunks[("train", "valid", "test")[index % 3]].append(image_id)
    for split, ids in chunks.items():
        for index, image_id in enumerate(ids):
            write_image(src / split / "images" / f"{image_id}.jpg", seed=index)
        write_csv(src / split / splits[split], ["image_id", "cls"], [[i, labels[i]] for i in ids])
    result = import_dataset(workspace, ImportConfig(str(src)))
    manifest = workspace.load_manifest("folders")
    assert result.n_images == 15 and result.split_method == "files"
    assert {i.id for i in manifest.split_items("valid")} == set(chunks["valid"])


def test_class_per_folder_tree(workspace, tmp_path):
    src = tmp_path / "tree"
    for cls, n in (("AD", 5), ("SSA", 3), ("HP", 3)):
        for i in range(n):
            write_image(src / cls / f"img{i}.png", seed=i)
    import_dataset(workspace, ImportConfig(str(src)))
    manifest = workspace.load_manifest("tree")
    assert manifest.layout == "folders"
    assert manifest.class_counts()["all"] == {"AD": 5, "SSA": 3, "HP": 3}
    assert len({i.id for i in manifest.items}) == 11  # same file names, distinct ids


def test_csv_of_paths_with_masks_groups_and_splits(workspace, tmp_path):
    rows = []
    for i, label in enumerate(["AD"] * 6 + ["SSA"] * 3 + ["HP"] * 3):
        write_image(tmp_path / "imgs" / f"{i}.png", seed=i)
        write_mask(tmp_path / "msk" / f"{i}.png")
        rows.append([f"imgs/{i}.png", label, f"msk/{i}.png", f"patient{i // 2}"])
    csv_path = write_csv(tmp_path / "list.csv", ["path", "label", "mask", "patient_id"], rows)
    result = import_dataset(workspace, ImportConfig(str(csv_path), name="paths"))
    manifest = workspace.load_manifest("paths")
    assert result.split_method == "grouped" and result.n_masks == 12
    by_patient = {}
    for item in manifest.items:
        by_patient.setdefault(item.group, set()).add(item.split)
    assert all(len(s) == 1 for s in by_patient.values())


def test_grouped_split_never_puts_one_lesion_in_two_splits(small_phantom, workspace):
    import_dataset(workspace, ImportConfig(str(small_phantom), name="ph"))
    manifest = workspace.load_manifest("ph")
    assert manifest.split_method == "grouped"
    splits_of = {}
    for item in manifest.items:
        splits_of.setdefault(item.group, set()).add(item.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {i.split for i in manifest.items} == {"train", "valid", "test"}


def test_split_is_saved_and_reproducible(workspace, tmp_path):
    src = make_hospital(tmp_path / "r", three_class_labels(40, 10, 10))
    import_dataset(workspace, ImportConfig(str(src), name="a", seed=5))
    import_dataset(workspace, ImportConfig(str(src), name="b", seed=5))
    import_dataset(workspace, ImportConfig(str(src), name="c", seed=6))
    def split(n):
        return {i.id: i.split for i in workspace.load_manifest(n).items}
    assert split("a") == split("b") and split("a") != split("c")
    counts = workspace.load_manifest("a").class_counts()
    assert counts["train"] == {"AD": 28, "SSA": 7, "HP": 7}
    assert counts["valid"] == {"AD": 4, "SSA": 1, "HP": 1}
    assert counts["test"] == {"AD": 8, "SSA": 2, "HP": 2}


def test_all_problems_reported_together_and_workspace_untouched(workspace, tmp_path):
    src = make_hospital(tmp_path / "bad", three_class_labels(6, 3, 3))
    import_dataset(workspace, ImportConfig(str(make_hospital(tmp_path / "ok", three_class_labels())),
                                           name="kept"))
    before = snapshot(workspace.datasets_dir)
    # truncated image
    data = (src / "images" / "ad000.png").read_bytes()
    (src / "images" / "ad000.png").write_bytes(data[: len(data) // 3])
    # mask of another size
    write_mask(src / "masks" / "ad001.png", size=(20, 20))
    # rows: missing file, unknown label, duplicate id
    write_image(src / "images" / "zz9.png")
    with open(src / "labels.csv", "a") as handle:
        handle.write("ghost,AD,x\nzz9,XYZ,x\nad003,AD,x\n")
    with pytest.raises(DatasetImportError) as info:
        import_dataset(workspace, ImportConfig(str(src), name="bad"))
    message = str(info.value)
    problems = info.value.problems
    assert len(problems) == 5, message
    assert "ad000" in message and "truncated" in message
    assert "ad001.png" in message and "20x20" in message and "40x32" in message
    assert "labels.csv row 14" in message and "'ghost' not found" in message
    assert "row 15" in message and "unknown label 'XYZ'" in message
    assert "row 16" in message and "duplicate id 'ad003'" in message
    assert snapshot(workspace.datasets_dir) == before
    assert "bad" not in workspace.datasets()
    assert not any(workspace.staging_dir.iterdir())


def test_missing_column_suggests_the_nearest(workspace, tmp_path):
    src = make_hospital(tmp_path / "cols", three_class_labels(4, 2, 2),
                        header=("imageid", "class_name", "Histologia"))
    with pytest.raises(DatasetImportError) as info:
        import_dataset(workspace, ImportConfig(str(src)))
    message = str(info.value)
    assert "labels.csv" in message and "no id column" in message and "'imageid'" in message
    assert "no class column" in message and "'class_name'" in message
    result = import_dataset(workspace, ImportConfig(str(src), id_column="imageid",
                                                    label_column="class_name"))
    assert result.n_images == 8


def test_class_with_no_images(workspace, tmp_path):
    src = make_hospital(tmp_path / "nohp", three_class_labels(5, 3, 0))
    with pytest.raises(DatasetImportError, match="class HP has no images"):
        import_dataset(workspace, ImportConfig(str(src)))
    (tmp_path / "tree" / "AD").mkdir(parents=True)
    write_image(tmp_path / "tree" / "AD" / "a.png")
    (tmp_path / "tree" / "HP").mkdir()
    with pytest.raises(DatasetImportError, match="HP has no images"):
        import_dataset(workspace, ImportConfig(str(tmp_path / "tree")))


def test_label_alias(workspace, tmp_path):
    src = make_hospital(tmp_path / "al", {"a": "TA", "b": "tubular", "c": "HP", "d": "SSA",
                                          "e": "HP", "f": "SSA", "g": "TA"})
    with pytest.raises(DatasetImportError, match="unknown label 'tubular'"):
        import_dataset(workspace, ImportConfig(str(src)))
    result = import_dataset(workspace, ImportConfig(str(src), label_aliases=(("tubular", "AD"),)))
    assert result.counts["all"]["AD"] == 3


def test_existing_name_is_not_overwritten_by_accident(workspace, tmp_path):
    src = make_hospital(tmp_path / "dup", three_class_labels(4, 2, 2))
    import_dataset(workspace, ImportConfig(str(src)))
    with pytest.raises(DatasetImportError, match="already exists"):
        import_dataset(workspace, ImportConfig(str(src)))
    result = import_dataset(workspace, ImportConfig(str(src), overwrite=True, seed=9))
    assert result.n_images == 8 and workspace.load_manifest("dup").split_seed == 9


def test_second_import_decodes_nothing_and_pixels_are_cached(workspace, tmp_path, monkeypatch):
    src = make_hospital(tmp_path / "c", three_class_labels(6, 3, 3))
    first = import_dataset(workspace, ImportConfig(str(src), name="one", cache_sizes=(16,)))
    # 12 distinct images; the 12 masks are byte-identical, so one hash (threads may race)
    assert 12 < first.decoded <= 24
    from polyp_core.data import cache as cache_module

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(cache_module, "load_rgb", no_decoding)
    monkeypatch.setattr("polyp_core.data.importer.load_mask_levels", no_decoding)
    second = import_dataset(workspace, ImportConfig(str(src), name="two", cache_sizes=(16,)))
    assert second.decoded == 0
    item = workspace.load_manifest("two").items[0]
    pixels = PixelCache(workspace.pixel_cache_dir).rgb(item.image, item.sha256, 16)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8


def test_unknown_layout_and_empty_folder(workspace, tmp_path):
    with pytest.raises(ValueError, match="unknown layout"):
        import_dataset(workspace, ImportConfig(str(tmp_path), layout="zip"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetImportError, match="cannot tell the layout"):
        import_dataset(workspace, ImportConfig(str(tmp_path / "empty")))


def test_concurrent_manifest_saves_do_not_collide(workspace, tmp_path):
    """Two users switching a data set's scheme at once must both succeed, file intact."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    src = make_hospital(tmp_path / "cc", three_class_labels(4, 2, 2))
    import_dataset(workspace, ImportConfig(str(src), name="cc"))
    manifest = workspace.load_manifest("cc")
    path = workspace.manifest_path("cc")

    def save_many(_):
        for _ in range(30):
            manifest.save(path)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(save_many, range(8)))  # re-raises any error from a thread
    assert json.loads(path.read_text())["name"] == "cc"
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no tmp files left
