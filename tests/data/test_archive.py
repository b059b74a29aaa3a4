"""Archive import as a careless or hostile admin would try it: a zip bomb, entries that point
outside, symbolic links, a name already taken; each refused with a message naming the archive,
the entry or the limit, and nothing left behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from polyp_core.data.archive import ArchiveLimits, import_archive
from polyp_core.data.importer import ImportConfig
from polyp_core.errors import DatasetImportError

if TYPE_CHECKING:
    from polyp_core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def _zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"data/{path.relative_to(folder)}")
    return target


def _leftovers(workspace: Workspace) -> list[str]:
    found = []
    for folder in (workspace.sources_dir, workspace.staging_dir, workspace.datasets_dir):
        if folder.is_dir():
            found += [str(p) for p in folder.iterdir()]
    return found


def test_an_archive_imports_whole_and_a_taken_name_is_refused(small_phantom, workspace, tmp_path):
    archive = _zip_folder(small_phantom, tmp_path / "phantom.zip")
    result = import_archive(workspace, ImportConfig(str(archive), name="zipped"))
    assert result.n_images == 60 and "zipped" in workspace.datasets()
    images = sorted(p.name for p in (workspace.sources_dir / "zipped").rglob("*.jpg"))
    before = {p: p.stat().st_mtime_ns for p in (workspace.sources_dir / "zipped").rglob("*")}
    with pytest.raises(DatasetImportError, match="'zipped' already exists"):
        import_archive(workspace, ImportConfig(str(archive), name="zipped"))
    after = {p: p.stat().st_mtime_ns for p in (workspace.sources_dir / "zipped").rglob("*")}
    assert after == before and images  # the source was not touched
    assert not list(workspace.staging_dir.iterdir())


@pytest.mark.parametrize("case, message", [
    ("slip", "points outside the archive's folder"),
    ("absolute", "points outside the archive's folder"),
    ("symlink", "is a symbolic link"),
    ("duplicate", "is in the archive twice"),
    ("deep", "folders deep; the limit is 3"),
    ("many", "files; the limit is 5"),
    ("ratio", "fold; the limit is 50"),
    ("not a zip", "not a readable zip archive"),
])
def test_hostile_archives_are_refused_and_leave_nothing(workspace, tmp_path, case, message):
    import warnings

    path = tmp_path / "bad.zip"
    if case == "not a zip":
        path.write_bytes(b"PK\x03\x04 truncated")
    else:
        with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
            if case == "slip":
                z.writestr("../../evil.txt", "x")
            elif case == "absolute":
                z.writestr("/etc/evil.txt", "x")
            elif case == "symlink":
                info = zipfile.ZipInfo("data/link")
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                z.writestr(info, "/etc/passwd")
            elif case == "duplicate":
                z.writestr("data/a.png", "x")
                z.writestr("data/A.png", "y")
            elif case == "deep":
                z.writestr("a/b/c/d/e.png", "x")
            elif case == "many":
                for i in range(6):
                    z.writestr(f"data/{i}.png", "x")
            elif case == "ratio":
                z.writestr("data/zeros.png", b"\0" * 200_000)
    limits = ArchiveLimits(max_depth=3, max_files=5, max_ratio=50)
    with pytest.raises(DatasetImportError, match=message) as caught:
        import_archive(workspace, ImportConfig(str(path), name="bad"), limits)
    assert str(path) in str(caught.value)
    assert _leftovers(workspace) == [] and not (tmp_path.parent / "evil.txt").exists()


def test_a_failed_import_of_a_good_archive_leaves_nothing(workspace, tmp_path):
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "x1.png").write_bytes(b"not a png")
    (folder / "labels.csv").write_text("image_id,cls\nx1,AD\n")
    archive = _zip_folder(folder, tmp_path / "broken.zip")
    with pytest.raises(DatasetImportError):
        import_archive(workspace, ImportConfig(str(archive), name="broken"))
    assert _leftovers(workspace) == []


def test_zip_bomb_from_the_command_line_is_refused_fast(tmp_path, monkeypatch):
    """About 1 MB that expands to 1 GiB: refused from the archive's directory, before a byte of
    it is inflated (no clock: the import is run with extraction made to fail, so a refusal
    that came after extracting could not pass), naming the limit, leaving no file."""
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("data/AD/frame.png", "w", force_zip64=True) as entry:
            block = b"\0" * 2**20
            for _ in range(1024):
                entry.write(block)
    assert bomb.stat().st_size < 2 * 2**20
    ws = tmp_path / "ws"
    out = subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", str(ws), "import",
                          str(bomb)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2, out.stderr
    assert "STUDIO_ARCHIVE_MAX_RATIO" in out.stderr and "zip bomb" in out.stderr
    # in this process: the same import with every entry's inflation made to fail
    from polyp_core.data import archive as archive_module
    from polyp_core.data.importer import ImportConfig
    from polyp_core.workspace import Workspace

    def no_inflating(*args: object, **kwargs: object) -> None:
        raise AssertionError("an entry was extracted before the archive was refused")

    monkeypatch.setattr(archive_module, "extract", no_inflating)
    monkeypatch.setattr(zipfile.ZipFile, "open", no_inflating)
    with pytest.raises(DatasetImportError, match="zip bomb"):
        archive_module.import_archive(Workspace(tmp_path / "ws2"), ImportConfig(str(bomb)))
    assert not [p for p in ws.rglob("*") if p.is_file() and p.suffix == ".png"]
    assert not (ws / "sources").exists() or not any((ws / "sources").iterdir())


def test_a_dataset_in_use_is_neither_deleted_nor_replaced(review_env, tmp_path, small_phantom):
    """Evidence stays: the data set a study shows cannot be deleted or overwritten (the
    message names the study); one nothing uses is deleted with its records."""
    from polyp_core.data.importer import import_dataset
    from polyp_core.data.removal import DatasetInUse, check_replaceable, delete_dataset
    from polyp_core.review.studies import RealPool, StudySpec, create_study

    db, workspace = review_env.db, review_env.workspace
    create_study(db, workspace, review_env.admin,
                 StudySpec("uses-phantom", (RealPool("phantom", 4),), ("rev0",)))
    with pytest.raises(DatasetInUse, match="cannot be deleted: used by studies uses-phantom"):
        delete_dataset(db, workspace, "phantom")
    with pytest.raises(DatasetInUse, match="cannot be replaced: used by studies uses-phantom"):
        check_replaceable(db, "phantom")
    assert "phantom" in workspace.datasets()
    import_dataset(workspace, ImportConfig(str(small_phantom), name="spare"))
    removed = delete_dataset(db, workspace, "spare")
    assert "spare" not in workspace.datasets() and removed[0].endswith("spare")
    ws = str(workspace.root)
    out = subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", ws, "import",
                          str(small_phantom), "--name", "phantom", "--overwrite", "--db",
                          db.url], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and "used by studies uses-phantom" in out.stderr, out.stderr


def test_archive_limits_come_from_the_environment():
    limits = ArchiveLimits.from_env({"STUDIO_ARCHIVE_MAX_RATIO": "50",
                                     "STUDIO_ARCHIVE_MAX_FILES": "7"})
    assert (limits.max_ratio, limits.max_files) == (50.0, 7)
    assert isinstance(limits.max_files, int) and isinstance(limits.max_ratio, float)
    with pytest.raises(ValueError, match="STUDIO_ARCHIVE_MAX_DEPTH='deep' is not a number"):
        ArchiveLimits.from_env({"STUDIO_ARCHIVE_MAX_DEPTH": "deep"})
