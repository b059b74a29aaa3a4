"""The Diagnostics tab shows a lesion-region run's crops beside the whole frames."""

from __future__ import annotations

from polyp_core.cli import main as cli
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.review.accounts import create_account
from polyp_core.workspace import Workspace
from review_db.database import Database
from tests.data.test_lesion import write_pair


def test_the_tab_prints_the_crops_kid_with_its_interval_per_generator(tmp_path, capsys):
    from studio_ui.diagnostics_tab import DiagnosticsDesk
    from studio_ui.services import Studio

    workspace = Workspace(tmp_path / "ws")
    for i in range(16):
        write_pair(tmp_path / "src" / "images", tmp_path / "src" / "masks", f"f{i:02d}", i,
                   size=(96, 80))
    import_dataset(workspace, ImportConfig(str(tmp_path / "src"), name="les"))
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    base = ["--workspace", str(workspace.root)]
    assert cli(base + ["copy-paste", "les", "--n", "6", "--db", db.url]) == 0
    assert cli(base + ["diagnose", "--dataset", "les", "--real-split", "all", "--subsets", "5",
                       "--size", "32", "--projection", "pca", "--region", "lesion",
                       "--db", db.url]) == 0
    run_id = next(p.name for p in (workspace.root / "runs").iterdir()
                  if p.name.startswith("diagnose"))
    admin = create_account(db, "tab-boss", "correct horse battery", "admin")
    desk = DiagnosticsDesk(Studio.open(workspace, db))
    _, text, _, _ = desk.show(admin, run_id, "lesion")
    assert "**around each polyp** (crops; 95% intervals over lesions): LESION " in text
    assert "· copy-paste: LESION " in text and "(floor " in text
