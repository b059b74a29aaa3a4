"""The report's first screen, as a reader sees it: Chromium at 1300 x 900 opens report.html from
disk. ``demo`` makes the demo workspace (as ``make demo`` does), runs the demo's first-start
retrain (the same job the studio queues on first start) and shoots its report; ``shoot`` takes
any report. Prints the report's size and where the picture went.

    python scripts/report_screens.py demo --workspace build/demo-first-start \\
        --out docs/report-classification.png
    python scripts/report_screens.py shoot RUN/report.html --out docs/report-segmentation.png
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shoot(report: Path, out: Path, height: int = 900) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1300, "height": height})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.resolve().as_uri())
        page.wait_for_load_state("networkidle")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()
    others = [r for r in requests if r != report.resolve().as_uri()]
    print(f"{report}: {report.stat().st_size / 1e6:.3f} MB; requests beyond the file: "
          f"{len(others)}; first screen -> {out}")


def demo(workspace_dir: Path) -> Path:
    """The demo workspace and its first-start retrain run; returns the run's report."""
    from polyp_core.cli.common import TerminalProgress
    from polyp_core.demo import demo_analyses, ensure_demo_workspace
    from polyp_core.runs import load_run
    from polyp_core.workspace import Workspace
    from review_db.database import Database

    workspace = Workspace(workspace_dir / "ws")
    db = Database(f"sqlite:///{(workspace_dir / 'studio.db').resolve()}")
    with TerminalProgress() as progress:
        print("; ".join(ensure_demo_workspace(workspace, db, progress=progress)) or "made before")
        jobs = [j for j in demo_analyses(db, workspace) if j[0] == "retrain"]
        if jobs:
            start = time.perf_counter()
            run_id = jobs[0][2](progress, None)
            print(f"first-start retrain {run_id}: {time.perf_counter() - start:.0f} s")
    from review_db import queries

    with db.session() as session:
        run_id = next(r.id for r in queries.list_runs(session, "retrain"))
    return load_run(db, run_id)["folder"] / "report.html"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["demo", "shoot"])
    parser.add_argument("report", nargs="?")
    parser.add_argument("--workspace", default="build/demo-first-start")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    report = demo(Path(args.workspace)) if args.what == "demo" else Path(args.report)
    shoot(report, Path(args.out))


if __name__ == "__main__":
    main()
