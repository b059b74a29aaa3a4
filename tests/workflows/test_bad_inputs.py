"""The bad-input corpus (``tests/bad_inputs/``, made by its ``make_corpus.py``): every kind of
careless or hostile input goes through the command line the way a user would give it, and
each gets a clear error naming the file, row or field, exit status 2, and leaves the workspace
(every file, byte for byte) and the database (every row) as they were.

Images that are awkward but valid (16-bit, CMYK, palette, RGBA) are not errors: they decode
to the right pixels (``tests/data/test_images.py``)."""

from __future__ import annotations

import hashlib
import io
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from polyp_core.cli import main as cli
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.pool import register_dataset
from polyp_core.review.accounts import create_account
from polyp_core.workspace import Workspace
from review_db.database import Database, database_url
from tests.conftest import (PASSWORD, make_hospital, three_class_labels, write_csv,
                            write_image)
from tests.test_external import paint_external

CORPUS = Path(__file__).resolve().parents[1] / "bad_inputs"
HUGE_NAME = "x" * 1_000_000


def hospital(root: Path) -> Path:
    return make_hospital(root, three_class_labels(4, 2, 2), masks=False)


def with_image(corpus_file: str, as_name: str = "ad001.png") -> Callable[[Path], list[str]]:
    """A hospital folder whose image ``as_name`` is the corpus file."""
    def build(tmp: Path) -> list[str]:
        root = hospital(tmp / "src")
        for old in (root / "images").glob(f"{Path(as_name).stem}.*"):
            old.unlink()  # the bad file takes the good one's place
        shutil.copyfile(CORPUS / corpus_file, root / "images" / as_name)
        return ["import", str(root), "--name", "new"]
    return build


def with_labels(corpus_file: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        root = hospital(tmp / "src")
        shutil.copyfile(CORPUS / corpus_file, root / "labels.csv")
        return ["import", str(root), "--name", "new"]
    return build


def relabel(image_id: str, label: str) -> Callable[[Path], list[str]]:
    """A hospital folder whose label table gives ``image_id`` the class ``label``."""
    def build(tmp: Path) -> list[str]:
        root = hospital(tmp / "src")
        labels = three_class_labels(4, 2, 2) | {image_id: label}
        write_csv(root / "labels.csv", ["image_id", "cls"], [list(r) for r in labels.items()])
        return ["import", str(root), "--name", "new"]
    return build


def extra_row(row: list[str]) -> Callable[[Path], list[str]]:
    """A hospital folder whose label table has one more row."""
    def build(tmp: Path) -> list[str]:
        root = hospital(tmp / "src")
        write_csv(root / "labels.csv", ["image_id", "cls"],
                  [list(r) for r in three_class_labels(4, 2, 2).items()] + [row])
        return ["import", str(root), "--name", "new"]
    return build


def archive(corpus_file: str, name: str = "new") -> Callable[[Path], list[str]]:
    def build(_tmp: Path) -> list[str]:
        return ["import", str(CORPUS / corpus_file), "--name", name]
    return build


def non_utf8_file_name(tmp: Path) -> list[str]:
    """A class-folder tree with one file whose name is Latin-1 bytes (not UTF-8)."""
    root = tmp / "src"
    for cls, n in (("AD", 4), ("SSA", 2), ("HP", 2)):
        for i in range(n):
            write_image(root / cls / f"{cls.lower()}{i}.png", seed=i)
    shutil.copyfile(root / "AD" / "ad0.png", bytes(root / "AD") + b"/caf\xe9-\xff.png")
    return ["import", str(root), "--name", "new", "--layout", "folders"]


def synthetic(change: Callable[[Path, list[str]], None]) -> Callable[[Path], list[str]]:
    """An external generator's folder (2 JPEGs per class, masks, CSV manifest) with one thing
    wrong, imported into the pool for data set ``existing``."""
    def build(tmp: Path) -> list[str]:
        folder = paint_external(tmp / "ext", n_per_class=2)
        lines = (folder / "manifest.csv").read_text().splitlines()
        change(folder, lines)
        (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
        return ["import-synthetic", str(folder), "--generator", "ext", "--dataset", "existing"]
    return build


def _real_frame_among_them(folder: Path, lines: list[str]) -> None:
    shutil.copyfile(hospital(folder.parent / "src") / "images" / "ad001.png",
                    folder / "images" / "frame.png")
    lines.append("images/frame.png,AD,1,x,y")


def _mask_of_another_size(folder: Path, _lines: list[str]) -> None:
    Image.new("L", (20, 20)).save(folder / "masks" / "ad00.png")


def command(*argv: str) -> Callable[[Path], list[str]]:
    return lambda _tmp: list(argv)


# (case id, how to build the command line, what the error must say)
CASES = [
    # images
    ("image-truncated", with_image("truncated.png"), "ad001.png: unreadable or truncated"),
    ("image-garbage", with_image("garbage.png"), "ad001.png: not a readable image"),
    ("image-empty-file", with_image("empty.png"), "ad001.png: the file is empty (0 bytes)"),
    ("image-huge-dimension", with_image("huge-dimension.png"), "ad001.png: refused as a decompression bomb"),
    ("image-animated", with_image("animated.png"), "ad001.png: holds 3 frames"),
    ("image-html-as-jpeg", with_image("html-as.jpg", "ad001.jpg"), "ad001.jpg: not a readable image"),
    ("image-name-not-utf8", non_utf8_file_name, "caf\\xe9-\\xff.png: file name is not UTF-8 text"),
    # label tables
    ("csv-wrong-columns", with_labels("labels-wrong-columns.csv"),
     "labels.csv: no id column: expected 'image_id' or 'image id', found 'file', 'diagnosis'"),
    ("csv-empty-file", with_labels("labels-empty.csv"),
     "labels.csv: cannot read the table (the file is empty)"),
    ("csv-header-only", with_labels("labels-header-only.csv"), "labels.csv: the table has a header but no rows"),
    ("csv-workbook-renamed", with_labels("labels-xlsx-renamed.csv"),
     "labels.csv: cannot read the table (a zip container (an Excel .xlsx workbook?)"),
    ("csv-unknown-label", relabel("ad003", "CARCINOID"), "labels.csv row 5: unknown label 'CARCINOID'"),
    ("csv-formula-label", relabel("ad002", '=HYPERLINK("http://x")'), "labels.csv row 4: unknown label"),
    ("csv-missing-image", extra_row(["nope042", "AD"]), "labels.csv row 10: image 'nope042' not found"),
    ("csv-duplicate-id", extra_row(["ad000", "HP"]), "labels.csv row 10: duplicate id 'ad000'"),
    # archives
    ("zip-bomb", archive("bomb-ratio.zip"), "'set/AD/zeros.png' expands 1029-fold; the limit is 200"),
    ("zip-slip", archive("slip.zip"), "entry '../evil.png' points outside"),
    ("zip-absolute-path", archive("absolute.zip"), "entry '/tmp/evil.png' points outside"),
    ("zip-symlink", archive("symlink.zip"), "entry 'set/AD/link.png' is a symbolic link"),
    ("zip-duplicate-names", archive("duplicate.zip"), "entry 'set/AD/ad0.png' is in the archive twice"),
    ("zip-too-deep", archive("deep.zip"), "is 21 folders deep; the limit is 12"),
    ("zip-not-a-zip", archive("not-a-zip.zip"), "not a readable zip archive"),
    ("zip-truncated", archive("truncated.zip"), "truncated.zip"),
    ("zip-name-taken", archive("truncated.zip", name="existing"), "named 'existing' already exists"),
    # names and numbers
    ("name-formula", lambda tmp: ["import", str(hospital(tmp / "src")), "--name",
                                  '=HYPERLINK("x")'], "data set name '=HYPERLINK"),
    ("name-one-megabyte", lambda tmp: ["import", str(hospital(tmp / "src")), "--name", HUGE_NAME],
     "--name: 1000000 characters; at most 200 are allowed"),
    ("number-nan-fraction", lambda tmp: ["import", str(hospital(tmp / "src")), "--name", "new",
                                         "--fractions", "nan,0.1,0.2"], "--fractions: nan is not a finite number"),
    ("number-nan-lr", command("train-ddpm", "--dataset", "existing", "--model", "m", "--lr", "nan"),
     "--lr: nan is not a finite number"),
    ("number-zero-interval", command("train-ddpm", "--dataset", "existing", "--model", "m",
                                     "--checkpoint-every", "0"), "--checkpoint-every: 0 is out of range"),
    ("number-inf-guidance", command("sample", "--model", "m", "--count", "AD=2", "--guidance", "inf"),
     "--guidance: inf is not a finite number"),
    ("number-huge-seed", command("retrain", "--dataset", "existing", "--seeds", f"0,{2**70}"),
     "--seeds: 1180591620717411303424 is out of range"),
    # synthetic images made elsewhere
    ("synthetic-missing-file", synthetic(lambda _f, rows: rows.__setitem__(
        2, rows[2].replace("ad01.jpg", "gone.jpg"))), "manifest.csv row 3: image 'images/gone.jpg' not found"),
    ("synthetic-unknown-class", synthetic(lambda _f, rows: rows.__setitem__(
        1, rows[1].replace(",AD,", ",CARCINOID,"))),
     "manifest.csv row 2: class 'CARCINOID' is not one this data set knows (AD, HP, SSA)"),
    ("synthetic-duplicate", synthetic(lambda _f, rows: rows.__setitem__(2, rows[1])),
     "manifest.csv row 3: images/ad00.jpg is the same image as row 2"),
    ("synthetic-mask-size", synthetic(_mask_of_another_size),
     "manifest.csv row 2: mask ad00.png is 20x20 but its image is 56x48"),
    ("synthetic-real-frame", synthetic(_real_frame_among_them),
     "manifest.csv row 8: images/frame.png is the real frame 'ad001' of data set 'existing'"),
    # inpainting and the gate (the data set's frames have no masks)
    ("inpaint-unknown-frame", command("inpaint", "--generator", "m", "--dataset", "existing",
                                      "--image", "nope", "--class", "AD"),
     "--image: data set 'existing' has no image 'nope'"),
    ("inpaint-bad-seeds", command("inpaint", "--generator", "m", "--dataset", "existing",
                                  "--image", "ad001", "--class", "AD", "--seeds", "3-x"),
     "--seeds: '3-x' is not a range or a list"),
    ("inpaint-training-without-masks", command("train-ddpm", "--dataset", "existing", "--model",
                                               "m", "--inpaint", "--steps", "1"),
     "task inpaint needs a mask for every training frame; 4 of 4 in existing have none"),
    ("gate-frames-without-masks", command("gate", "--dataset", "existing"),
     "data set 'existing': 8 frames have no mask"),
    ("name-study-one-megabyte", command("study", "create", HUGE_NAME, "--as", "boss",
                                        "--password-stdin", "--real", "existing:4",
                                        "--reviewers", "rev"), "--name: 1000000 characters"),
]


def snapshot(workspace: Workspace) -> tuple[dict, list[str]]:
    """Every file under the workspace (SHA-256 of its bytes) and every row of the database."""
    db_file = Path(database_url(workspace.root).removeprefix("sqlite:///"))
    files = {str(p.relative_to(workspace.root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(workspace.root.rglob("*")) if p.is_file()
             and not p.name.startswith(db_file.name)}
    with sqlite3.connect(db_file) as connection:
        rows = list(connection.iterdump())
    return files, rows


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Workspace:
    """A workspace with a data set ``existing`` registered in its database, an admin and a
    reviewer: what a bad input must leave alone."""
    root = tmp_path_factory.mktemp("bad")
    workspace = Workspace(root / "ws")
    result = import_dataset(workspace, ImportConfig(str(hospital(root / "existing")),
                                                    name="existing"))
    db = Database(database_url(workspace.root))
    register_dataset(db, workspace.load_manifest(result.name))
    create_account(db, "boss", PASSWORD, "admin")
    create_account(db, "rev", PASSWORD)
    db.dispose()
    return workspace


def test_the_corpus_has_the_kinds_the_architecture_page_counts():
    """docs/ARCHITECTURE.md states the corpus's size: it must be this list's."""
    import re

    page = (Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md").read_text()
    stated = int(re.search(r"tests/bad_inputs/` \((\d+) kinds\)", page).group(1))
    assert len({case[0] for case in CASES}) == len(CASES) == stated


@pytest.mark.parametrize("build, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error_and_changes_nothing(studio, tmp_path, build, message,
                                                          capsys, monkeypatch):
    argv = build(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    before = snapshot(studio)
    code = cli(["--workspace", str(studio.root), *argv])
    error = capsys.readouterr().err
    assert code == 2, error
    assert message in error, error[:2000]
    assert len(error) < 20_000  # a one-megabyte name is not echoed back whole
    assert snapshot(studio) == before
