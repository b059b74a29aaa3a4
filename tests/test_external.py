"""Synthetic images made elsewhere (``import-synthetic``): into the pool with their masks and
provenance, and from there through diagnostics, a blind study and retrain like the studio's
own, with the leak checks intact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from helpers import gate_now
from polyp_core.experiment import ExperimentConfig, plan_experiment, run_experiment
from polyp_core.experiment.policy import SelectionPolicy
from polyp_core.training import TrainConfig
from polyp_core.cli import main as cli
from polyp_core.errors import DatasetImportError
from polyp_core.data.images import sha256_file
from polyp_core.external import SyntheticImport, import_synthetic, mask_file
from polyp_core.pool import PoolFilter, pool_page
from review_db import queries
from review_db.database import Database

TINY = TrainConfig(image_size=32, epochs=2, batch_size=32, patience=2, hidden=32)
EXTERNAL = "ext-gan"


def paint_external(folder: Path, n_per_class: int = 8, size: tuple[int, int] = (56, 48),
                   seed: int = 0, background: str | None = None) -> Path:
    """A generator's output as another group would hand it over: JPEG images of another size
    than the real pool's PNGs, PNG masks with the same stem, a CSV manifest with a column the
    studio does not know."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = ["file,class,seed,prompt,sampler_note" + (",background" if background else "")]
    tints = {"AD": (170, 60, 60), "SSA": (150, 120, 80), "HP": (120, 90, 110)}
    for cls, tint in tints.items():
        for k in range(n_per_class):
            base = rng.normal(0, 18, (size[1], size[0], 3)) + np.array(tint)
            image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
            mask = Image.new("L", size, 0)
            box = [int(v) for v in rng.integers(4, 20, 2)] + [int(v) for v in rng.integers(30, 44, 2)]
            ImageDraw.Draw(mask).ellipse(box, fill=255)
            ImageDraw.Draw(image).ellipse(box, fill=tuple(int(t * 1.2) % 256 for t in tint))
            stem = f"{cls.lower()}{k:02d}"
            image.save(folder / "images" / f"{stem}.jpg", quality=90)
            mask.save(folder / "masks" / f"{stem}.png")
            row = f"images/{stem}.jpg,{cls},{seed * 100 + k},a {cls} polyp,ddim-50"
            rows.append(row + (f",{background}" if background else ""))
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """The demo data set (90 frames at 64 px, every frame its own lesion group), the demo
    generator with 4 images per class in the pool, an admin, and the external folder."""
    from polyp_core.review.accounts import create_account
    from tests.conftest import demo_pool

    root = tmp_path_factory.mktemp("external")
    workspace, db = demo_pool(root, n_frames=90, steps=10)
    create_account(db, "boss", "correct horse battery", "admin")
    for name in ("r1", "r2"):
        create_account(db, name, "correct horse battery")
    return workspace, db, paint_external(root / "ext")


def _pool_shas(db: Database) -> list[str]:
    with db.session() as session:
        return sorted(i.sha256 for i in queries.synthetic_images(session))


@pytest.fixture(scope="module")
def imported(studio):
    """The external folder imported through the command line, once for the module (whichever
    test asks first): the exit code and what it printed."""
    import contextlib
    import io

    workspace, db, folder = studio
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["--workspace", str(workspace.root), "import-synthetic", str(folder),
                    "--generator", EXTERNAL, "--dataset", "phantom", "--trained-on",
                    "phantom:train", "--version", "1.2", "--source-note",
                    "Doe et al. 2025, doi:10/xyz", "--licence", "CC-BY-4.0", "--db", db.url])
    return code, out.getvalue(), err.getvalue()


def test_an_external_folder_goes_through_pool_diagnostics_study_and_retrain(studio, imported):
    from types import SimpleNamespace

    from polyp_core.demo import DEMO_GENERATOR
    from polyp_core.diagnostics.report import DiagnoseConfig, diagnose
    from polyp_core.review.accounts import Person
    from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool, create_study

    workspace, db, folder = studio
    code, printed, errors = imported
    out = SimpleNamespace(out=printed, err=errors)
    assert code == 0, out.err
    train = [i for i in workspace.load_manifest("phantom").items if i.split == "train"]
    assert (f"imported 24 images (24 with masks) of generator '{EXTERNAL}'" in out.out
            and f"trained on: phantom:train ({len(train)} frames)" in out.out), out.out

    # the pool: every image, its mask, its manifest row (the unknown column kept) and its file
    page = pool_page(db, PoolFilter(generator=EXTERNAL), per_page=50)
    assert page.total == 24
    item = next(i for i in page.items if i.provenance["extra"]["file"] == "images/ad03.jpg")
    extra = item.provenance["extra"]
    assert item.class_label == "AD" and item.provenance["seed"] == 3
    assert item.provenance["backend"] == "external" and item.provenance["prompt"] == "a AD polyp"
    assert extra["columns"] == {"sampler_note": "ddim-50"} and extra["manifest_row"] == 5
    assert extra["file_sha256"] == __import__("hashlib").sha256(
        (folder / "images" / "ad03.jpg").read_bytes()).hexdigest()
    mask = np.asarray(Image.open(mask_file(workspace, extra["mask_sha256"])))
    assert mask.shape[:2] == (48, 56) and set(np.unique(mask)) == {0, 255}
    record = json.loads((workspace.root / "external" / EXTERNAL / "generator.json").read_text())
    assert (record["version"], record["source"], record["licence"]) == (
        "1.2", "Doe et al. 2025, doi:10/xyz", "CC-BY-4.0")
    assert record["trained_on"]["image_sha256"] == sorted(i.sha256 for i in train)

    # diagnostics: one run, the external generator beside the demo one, each with its rows
    result = diagnose(db, workspace, DiagnoseConfig(dataset="phantom", size=64, subsets=20,
                                                    subset_size=50, projections=("pca",)))
    stored = json.loads((result.folder / "results.json").read_text())
    # (other tests of this module may have added generators of their own before this one)
    assert (stored["generators"][DEMO_GENERATOR], stored["generators"][EXTERNAL]) == (12, 24)
    rows = stored["kid_by_generator"]
    assert {DEMO_GENERATOR, EXTERNAL} <= set(rows)
    assert set(rows[EXTERNAL]["three_class"]["classes"]) == {"AD", "SSA", "HP"}

    # a study showing both generators: the JPEGs of another size are served like the rest
    with db.session() as session:
        boss = queries.reviewer_by_name(session, "boss")
        admin = Person(boss.id, boss.name, boss.role)
    create_study(db, workspace, admin, StudySpec(
        "external-vs-demo", (RealPool("phantom", 12, split="train"), SyntheticPool(12, EXTERNAL),
                             SyntheticPool(12, DEMO_GENERATOR)), ("r1", "r2"), overlap=2))
    with db.session() as session:
        settings = queries.study_by_name(session, "external-vs-demo").settings
    assert settings["audit"]["passed"] and not settings["held"], settings["audit"]
    served = sorted((workspace.root / "studies").rglob("served/*"))
    assert len(served) >= 36 and len({p.stat().st_size for p in served}) == 1
    assert len({Image.open(p).size for p in served}) == 1

    # retrain: the fixed split (the generator learned from the train split only), report names it
    config = ExperimentConfig(dataset="phantom", train=TINY, seeds=(0,), folds=0,
                              allow_small_test=True, name="external",
                              policy=SelectionPolicy(generators=(EXTERNAL,)))
    run = run_experiment(db, workspace, config, device=torch.device("cpu"))
    report = (run.folder / "report.html").read_text()
    added = sum(run.results["selection"]["counts"]["selected"].values())
    assert run.results["selection"]["generators"] == [{
        "generator": EXTERNAL, "images": added, "made": "imported",
        "version": "1.2", "source": "Doe et al. 2025, doi:10/xyz", "licence": "CC-BY-4.0",
        "trained_on": "phantom:train"}], added
    assert (f"<td>{EXTERNAL}</td><td>{added}</td><td>imported</td>"
            "<td>phantom:train</td><td>1.2</td>") in report


def test_a_real_frame_among_them_is_refused_and_nothing_is_imported(studio, tmp_path, capsys):
    workspace, db, folder = studio
    copy = shutil.copytree(folder, tmp_path / "ext")
    frame = workspace.load_manifest("phantom").items[7]
    shutil.copyfile(frame.image, copy / "images" / "stolen.png")
    with open(copy / "manifest.csv", "a") as manifest:
        manifest.write("images/stolen.png,AD,99,x,y\n")
    before = _pool_shas(db)
    files_before = sorted(workspace.root.rglob("*"))

    def refused() -> str:
        code = cli(["--workspace", str(workspace.root), "import-synthetic", str(copy),
                    "--generator", "ext-other", "--dataset", "phantom", "--trained-on",
                    "phantom:train", "--db", db.url])
        error = capsys.readouterr().err
        assert code == 2 and _pool_shas(db) == before, error
        return error

    named = f"manifest.csv row 26: images/stolen.png is the real frame {frame.id!r} of data set "
    error = refused()
    assert f"{named}'phantom'" in error and "saved again" not in error, error
    # the same frame saved again (other bytes, the same pixels) is refused too, named
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "re-encoded")
    with Image.open(frame.image) as image:
        image.convert("RGB").save(copy / "images" / "stolen.png", pnginfo=info, compress_level=1)
    assert sha256_file(copy / "images" / "stolen.png") != frame.sha256
    error = refused()
    assert f"{named}'phantom' saved again (other bytes, the same decoded pixels)" in error, error
    assert _pool_shas(db) == before
    assert [p for p in sorted(workspace.root.rglob("*")) if "studio.db" not in p.name] == \
        [p for p in files_before if "studio.db" not in p.name]


def test_unknown_training_data_and_inpainted_test_frames_are_refused_by_retrain(studio, tmp_path):
    workspace, db, _ = studio
    items = workspace.load_manifest("phantom").items
    config = ExperimentConfig(dataset="phantom", train=TINY, seeds=(0,), folds=0,
                              allow_small_test=True)
    unknown = import_synthetic(db, workspace, SyntheticImport(
        source=str(paint_external(tmp_path / "u", n_per_class=2, seed=1)),
        generator="ext-unknown", dataset="phantom"))
    assert len(unknown.images) == 6
    only = SelectionPolicy(generators=("ext-unknown",))
    with pytest.raises(ValueError, match="'ext-unknown' was imported with its training data "
                                         "declared unknown.*allow_unknown_training_data"):
        plan_experiment(db, workspace, ExperimentConfig(**{**config.__dict__, "policy": only}))
    plan = plan_experiment(db, workspace, ExperimentConfig(
        **{**config.__dict__, "policy": only, "allow_unknown_training_data": True}))
    assert plan.design["warnings"][0].startswith("ran with `allow_unknown_training_data`: "
                                                 "ext-unknown declared no training data")

    frame = next(i for i in items if i.split == "test")
    inpainted = import_synthetic(db, workspace, SyntheticImport(
        source=str(paint_external(tmp_path / "b", n_per_class=1, seed=2,
                                  background=f"phantom:{frame.id}")),
        generator="ext-inpaint", dataset="phantom", trained_on="phantom:train"))
    with pytest.raises(ValueError, match=rf"split: image {inpainted.images[0][:12]} was made on "
                                         rf"frame phantom:{frame.id} of group {frame.group or frame.id}"):
        plan_experiment(db, workspace, ExperimentConfig(
            **{**config.__dict__, "policy": SelectionPolicy(generators=("ext-inpaint",))}))


def test_bad_manifests_name_the_row_and_import_nothing(studio, tmp_path):
    workspace, db, _ = studio
    bad = paint_external(tmp_path / "bad", n_per_class=3, seed=3)
    lines = (bad / "manifest.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",AD,", ",CARCINOID,", 1)
    lines[2] = lines[2].replace("images/ad01.jpg", "images/missing.jpg")
    lines[4] = lines[3]
    Image.new("L", (20, 20)).save(bad / "masks" / "ssa01.png")
    pooled = Path(pool_page(db, PoolFilter(generator="demo-ddpm"), per_page=1).items[0].path)
    shutil.copyfile(pooled, bad / "images" / "old.png")
    lines.append("images/old.png,HP,1,x,y")
    (bad / "manifest.csv").write_text("\n".join(lines) + "\n")
    before = _pool_shas(db)
    with pytest.raises(DatasetImportError) as error:
        import_synthetic(db, workspace, SyntheticImport(source=str(bad), generator="ext-bad",
                                                        dataset="phantom"))
    text = str(error.value)
    assert "manifest.csv row 2: class 'CARCINOID' is not one this data set knows" in text
    assert "manifest.csv row 3: image 'images/missing.jpg' not found" in text
    assert "manifest.csv row 5: images/ad02.jpg is the same image as row 4" in text
    assert "manifest.csv row 6: mask ssa01.png is 20x20 but its image is 56x48" in text
    assert "manifest.csv row 11: images/old.png is already in the synthetic pool (generator " \
        "demo-ddpm)" in text
    with pytest.raises(DatasetImportError, match="'demo-ddpm' already names 12 image"):
        import_synthetic(db, workspace, SyntheticImport(source=str(bad), generator="demo-ddpm",
                                                        dataset="phantom"))
    assert _pool_shas(db) == before
    assert not (workspace.root / "external" / "ext-bad").exists()


def test_a_zip_with_a_jsonl_manifest_imports_the_same_way(studio, tmp_path):
    """The zip goes through the data import's archive checks into staging, which is removed
    afterwards; JSONL rows carry nested values, kept as given."""
    import zipfile

    workspace, db, _ = studio
    folder = paint_external(tmp_path / "j", n_per_class=1, seed=5)
    (folder / "manifest.csv").unlink()
    rows = [{"file": f"images/{c}00.jpg", "class": c.upper(), "seed": 500 + k,
             "sampler": {"name": "ddim", "steps": 50}} for k, c in enumerate(("ad", "ssa", "hp"))]
    (folder / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    archive = tmp_path / "j.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            handle.write(path, f"j/{path.relative_to(folder)}")
    result = import_synthetic(db, workspace, SyntheticImport(
        source=str(archive), generator="ext-zip", dataset="phantom", trained_on="phantom:train"))
    assert len(result.images) == 3 and result.masks == 3
    item = pool_page(db, PoolFilter(generator="ext-zip", class_label="SSA")).items[0]
    assert item.provenance["seed"] == 501
    assert item.provenance["extra"]["columns"] == {"sampler": {"name": "ddim", "steps": 50}}
    assert item.provenance["extra"]["manifest_row"] == 2  # the JSONL line
    assert not list(workspace.staging_dir.iterdir())
    record = json.loads((workspace.root / "external" / "ext-zip" / "generator.json").read_text())
    assert record["imports"][0]["from"] == str(archive)  # not the removed staging folder


def test_imported_images_with_masks_feed_every_arm_of_a_segmentation_run(studio, imported):
    """The external images' masks join the real training masks in the augmented arm and train
    the synthetic-only arm; the learning curve's arms learn from half the real training groups;
    every model is tested on a second source too. The demo generator's images (no masks) are
    left out, and the report says where the added images came from."""
    from polyp_core.demo import DEMO_GENERATOR

    workspace, db, folder = studio
    assert imported[0] == 0, imported[2]
    from polyp_core.data.importer import ImportConfig, import_dataset
    from polyp_core.data.phantom import write_phantom

    if "other" not in workspace.datasets():  # a second source: other lesions, other seed
        write_phantom(workspace.root.parent / "other", n_frames=20, size=64, seed=9, workers=1)
        import_dataset(workspace, ImportConfig(str(workspace.root.parent / "other"),
                                               name="other"))
    config = ExperimentConfig(dataset="phantom", task="segmentation", folds=0, seeds=(0,),
                              allow_small_test=True, name="seg-external",
                              arms=("baseline", "augmented", "synthetic"), real_fractions=(0.5,),
                              against=("other",),
                              policy=SelectionPolicy(generators=(EXTERNAL, DEMO_GENERATOR)),
                              train=TrainConfig(image_size=64, epochs=1, batch_size=16))
    run = run_experiment(db, workspace, config, device=torch.device("cpu"))
    arms = run.results["arms"]
    assert list(arms) == ["baseline", "augmented", "synthetic", "baseline 50%", "augmented 50%"]
    n_train = {arm: arms[arm]["per_seed"][0]["n_train"] for arm in arms}
    assert n_train["synthetic"] == 24 and n_train["augmented 50%"] == n_train["baseline 50%"] + 24
    assert n_train["baseline"] // 2 <= n_train["baseline 50%"] < n_train["baseline"]
    (other,) = run.results["against"]
    assert other["images"] == 20 and list(other["deltas"]) == ["delta"] and set(other["arms"]) == set(arms)
    assert other["arms"]["baseline"]["dice"]["groups"] == other["groups"]
    counts = run.results["selection"]["counts"]
    assert counts["dropped"]["no_mask"] == 12  # the demo generator's 4 per class
    assert sum(counts["selected"].values()) == 24
    assert run.results["selection"]["generators"][0]["generator"] == EXTERNAL
    # the paired delta is the difference of the arms' means over the same test images
    delta, arms = run.results["delta_cluster"]["dice"], run.results["uncertainty"]
    assert delta["estimate"] == pytest.approx(
        arms["augmented"]["dice"]["estimate"] - arms["baseline"]["dice"]["estimate"])
    assert delta["low"] < delta["high"] and delta["groups"] == arms["baseline"]["groups"]
    assert n_train["augmented"] == n_train["baseline"] + 24
    # every arm against its real-data arm, on the same images (the report's forest plot)
    versus = run.results["versus_real"]
    assert {a: d["against"] for a, d in versus.items()} == {
        "augmented": "baseline", "synthetic": "baseline", "augmented 50%": "baseline 50%"}
    for arm, other in (("synthetic", "baseline"), ("augmented 50%", "baseline 50%")):
        for path in (("dice",), ("full", "dice")):
            d, a, b = versus[arm], arms[arm], arms[other]
            for key in path:
                d, a, b = d[key], a[key], b[key]
            assert d["estimate"] == pytest.approx(a["estimate"] - b["estimate"]), (arm, path)
    assert set(versus["synthetic"]["per_class"]) == {"AD", "SSA", "HP"}
    report = (run.folder / "report.html").read_text()
    assert "<svg id='learning-curve'" in report and "synthetic − baseline" in report
    assert f"<td>{EXTERNAL}</td><td>24</td><td>imported</td>" in \
        (run.folder / "report.html").read_text()


def test_imported_images_with_masks_go_into_a_mask_study_and_the_gate(studio, imported):
    """The imported masks work downstream like the studio's own: a study that shows them (its
    audit passes) and the segmentation gate (every image scored)."""
    from dataclasses import replace

    from polyp_core.review.accounts import Person
    from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool, create_study
    from polyp_core.segment.gate import GATE_TRAIN, GateConfig

    workspace, db, folder = studio
    assert imported[0] == 0, imported[2]
    with db.session() as session:
        boss = queries.reviewer_by_name(session, "boss")
        admin = Person(boss.id, boss.name, boss.role)
    create_study(db, workspace, admin, StudySpec(
        "external-masks", (RealPool("phantom", 8, split="train"), SyntheticPool(8, EXTERNAL)),
        ("r1", "r2"), overlap=2, show_mask="outline"))
    with db.session() as session:
        study = queries.study_by_name(session, "external-masks")
        settings = study.settings
        folder_served = (workspace.root / "studies" / str(study.id) / "served")
    assert settings["audit"]["passed"], settings["audit"]
    assert len({p.stat().st_size for p in folder_served.iterdir()}) == 1
    result = gate_now(db, workspace, GateConfig(
        dataset="phantom", generator=EXTERNAL, train=replace(GATE_TRAIN, image_size=64, epochs=1)))
    assert len(result.scores) == 24 and result.reference["n"] > 0
    assert set(result.rates) == {f"{EXTERNAL} / {c}" for c in ("AD", "SSA", "HP")}
