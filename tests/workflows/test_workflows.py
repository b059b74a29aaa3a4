"""The workflow floor: every entry checks the acting person on the server, and the front ends
reach the database only through it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import polyp_core.workflows as workflows
from polyp_core.review.accounts import Person, create_account, set_active
from polyp_core.review.errors import PermissionDenied
from polyp_core.workflows import TERMINAL
from tests.conftest import PASSWORD

if TYPE_CHECKING:
    from collections.abc import Callable

    from polyp_core.workspace import Workspace
    from review_db.database import Database

ROOT = Path(__file__).resolve().parents[2]


def _entries():
    """Every public function of every workflow module that acts for a person."""
    found = []
    for module_info in pkgutil.iter_modules(workflows.__path__):
        module = importlib.import_module(f"polyp_core.workflows.{module_info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_") and \
                    "person" in inspect.signature(fn).parameters:
                found.append(pytest.param(fn, id=f"{module_info.name}.{name}"))
    return found


ENTRIES = _entries()


def test_the_workflows_cover_what_the_front_ends_need():
    names = {p.id for p in ENTRIES}
    assert {"retrain.plan", "retrain.start", "retrain.runs", "accounts.accounts",
            "accounts.change", "accounts.create", "accounts.audit", "pool.generators",
            "diagnose.runs", "diagnose.images", "diagnose.run", "diagnose.start", "jobs.active",
            "data.import_data", "data.set_scheme", "data.delete",
            "train_generator.start", "generate.sample_work", "generate.grid_work",
            "generate.add_to_pool", "generate.sample_into_pool", "study.create", "study.plan",
            "study.audit", "study.close", "study.statistics", "study.studies", "review.queue",
            "review.rate", "review.image", "pool.import_synthetic", "pool.page", "pool.item",
            "pool.remove", "generate.inpaint_work",
            "generate.background_frames"} <= names, sorted(names)


def _tables(db: Database) -> dict:
    from sqlalchemy import inspect as sql_inspect
    from sqlalchemy import text

    out = {}
    with db.engine.connect() as connection:
        for table in sql_inspect(db.engine).get_table_names():
            if table != "audit_event":  # a refusal may be logged; nothing else may change
                out[table] = sorted(map(repr, connection.execute(text(f"SELECT * FROM {table}"))))
    return out


def _call(fn: Callable, db: Database, workspace: Workspace, person: Person) -> object:
    """Call an entry with the person and placeholders for the rest: the role check comes first,
    so a refused call never looks at them."""
    args = []
    for name, parameter in inspect.signature(fn).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            break
        args.append({"db": db, "workspace": workspace, "person": person}.get(name, "x"))
    return fn(*args)


def _open_to_reviewers(fn: Callable) -> bool:
    module = inspect.getmodule(fn)
    return fn.__name__ in getattr(module, "REVIEWER_ENTRIES", ())


@pytest.fixture(scope="module")
def people(tmp_path_factory, small_phantom):
    """One workspace and SQLite database for every entry (each call is refused before it
    reads anything, and the test checks that no table changed): a data set, an admin, a
    reviewer, a deactivated admin and a deactivated reviewer."""
    from types import SimpleNamespace

    from polyp_core.data.importer import ImportConfig, import_dataset
    from polyp_core.workspace import Workspace
    from review_db.database import Database

    root = tmp_path_factory.mktemp("workflows")
    workspace, db = Workspace(root / "ws"), Database(f"sqlite:///{root / 'studio.db'}")
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))
    reviewer = create_account(db, "rev0", PASSWORD)
    stale = create_account(db, "gone-admin", PASSWORD, "admin")
    gone = create_account(db, "gone-reviewer", PASSWORD)
    set_active(db, "gone-admin", False)
    set_active(db, "gone-reviewer", False)
    yield SimpleNamespace(db=db, workspace=workspace, reviewer=reviewer, stale=stale, gone=gone,
                          demoted=Person(reviewer.id, reviewer.name, "admin"))  # a stale claim
    db.dispose()


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_entry_refuses_reviewers_and_deactivated_admins(entry, people):
    """Where an admin is needed: a reviewer, a deactivated admin and a page's stale claim that
    a reviewer is an admin are all refused. Where a reviewer may act (the review desk, their
    own study list): a deactivated account is refused."""
    env = people
    before = _tables(env.db)
    refused = (env.gone, env.stale) if _open_to_reviewers(entry) else \
        (env.reviewer, env.stale, env.demoted)
    for person in refused:
        with pytest.raises(PermissionDenied):
            _call(entry, env.db, env.workspace, person)
    assert _tables(env.db) == before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_admin_and_the_terminal_pass(review_env):
    from polyp_core.workflows import accounts, pool

    for person in (review_env.admin, TERMINAL):
        assert pool.generators(review_env.db, person) == ["gen-a", "gen-b"]
        assert {"admin", "rev0"} <= {a["name"] for a in accounts.accounts(review_env.db, person)}
    impostor = Person(0, "terminal", "admin")  # equal fields, not the terminal object
    with pytest.raises(PermissionDenied):
        pool.generators(review_env.db, impostor)


def test_front_ends_reach_the_database_only_through_the_workflows():
    found = subprocess.run(["grep", "-rnE", r"review_db(\.| import )(queries|models)",
                            "studio_ui", "polyp_core/cli", "app.py"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert found == "", found


def test_front_ends_read_runs_comparisons_and_jobs_through_the_workflows():
    """Read paths are on the floor too: stored runs, compare-runs and job states are read
    through workflow entries that check the person, never straight from the engine."""
    found = subprocess.run(["grep", "-rnE", "--include=*.py",
                            r"\b(load_run|compare_runs|job_status|list_jobs)\(",
                            "studio_ui", "polyp_core/cli", "app.py"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert found == "", found


def test_folds_mean_one_thing_in_every_front_end():
    from polyp_core.validation import InvalidRequest
    from polyp_core.workflows.retrain import DEFAULTS, parse_folds, retrain_request

    assert DEFAULTS["folds"] == "auto"
    assert [parse_folds(v) for v in ("auto", " AUTO ", "", None, "0", 3, "5")] == \
        [None, None, None, None, 0, 3, 5]
    with pytest.raises(InvalidRequest, match="folds"):
        parse_folds("2.5")
    config = retrain_request({"dataset": "phantom"})
    assert config.folds is None and config.inner_valid == 0.15 and config.seeds == (0, 1, 2)
    with pytest.raises(InvalidRequest, match="epochz"):
        retrain_request({"dataset": "phantom", "epochz": 3})
    from polyp_core.cli import build_parser

    args = build_parser().parse_args(["retrain", "--dataset", "phantom"])
    fields = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    assert fields == {k: DEFAULTS[k] for k in fields if k not in ("dataset",)} | {
        "dataset": "phantom"}  # every option starts at the request's default
    cli = (ROOT / "polyp_core" / "cli" / "classify.py").read_text()
    assert re.search(r"def folds_option", cli) is None  # no second parser of folds
