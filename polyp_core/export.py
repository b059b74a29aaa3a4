"""Take a chosen training set elsewhere: real + selected synthetic images as an nnU-Net v2 raw
dataset, an image-folder tree or a CSV, with a data card and the studio's grouped folds.

What is exported is decided by the studio's own machinery: from a data set and a selection
policy, the experiment's plan of the fixed split (its selection, its leak checks); from a
stored run, exactly the images an arm learned from in a fold (``images.json``'s ``trained``).
Everything is written into a temporary folder beside ``out`` and moved there at the end, so a
refusal or an error leaves nothing. Nothing leaves that a reviewer could not see: no account,
token or path outside ``out``; reviewer names only when asked.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from polyp_core.experiment.policy import SelectionPolicy
from polyp_core.segment import gate as quality_gate
from polyp_core.validation import checked, rule

if TYPE_CHECKING:
    from polyp_core.progress import Progress
    from polyp_core.workspace import Workspace
    from review_db.database import Database

FORMATS = ("nnunet", "imagefolder", "csv")


@checked
@dataclass(frozen=True)
class ExportConfig:
    """One export.

    Attributes:
        to: ``nnunet`` (raw dataset v2), ``imagefolder`` or ``csv``.
        out: the folder to write (must not exist, or be empty).
        dataset: export this data set's fixed split with the synthetic images ``policy`` picks.
        policy: the selection (as retrain's); ``real_only`` exports the real images alone.
        run, arm, fold: export what ``arm`` of stored run ``run`` learned from in fold ``fold``
            (1-based), its test part as the test images.
        folds, seed: nnU-Net's cross-validation in ``splits_final.json``: the studio's grouped,
            stratified folds over the real training cases.
        number, name: ``Dataset<number>_<name>``.
        licence: the real data's licence as the data card states it (else ``unknown``).
        with_reviewers: name the reviewers in the data card's rating summary.
    """

    to: str = rule("nnunet", choices=FORMATS)
    out: str = rule("", text=True)
    dataset: str | None = rule(None, text=True)
    policy: SelectionPolicy = field(default_factory=SelectionPolicy)
    real_only: bool = False
    run: str | None = rule(None, text=True)
    arm: str = rule("augmented", text=True)
    fold: int = rule(1, lo=1, hi=100)
    folds: int = rule(5, lo=2, hi=20)
    seed: int = 0
    number: int = rule(501, lo=1, hi=999)
    name: str = rule("Polyps", text=True)
    licence: str | None = rule(None, text=True)
    with_reviewers: bool = False


@dataclass
class Case:
    """One exported image."""

    sha256: str
    path: str
    mask: str | None
    label: str
    part: str  # train, valid, test
    kind: str  # real, synthetic
    group: str
    generator: str = ""
    made_of: list[str] = field(default_factory=list)
    fold: int | None = None  # nnU-Net's fold that validates it (real training cases)
    copy: int = 0  # the n-th case of the same file (a data set may hold byte copies)

    @property
    def case_id(self) -> str:
        base = f"{'real' if self.kind == 'real' else 'syn'}_{self.sha256[:16]}"
        return base if not self.copy else f"{base}-{self.copy}"


def _number_copies(cases: list[Case]) -> list[Case]:
    """Byte copies (the same file twice in a data set, NeoPolyp has some) get their own case
    ids, so no exported file overwrites another."""
    seen: dict[str, int] = {}
    for case in cases:
        key = f"{case.kind}:{case.sha256[:16]}"
        case.copy = seen.get(key, 0)
        seen[key] = case.copy + 1
    return cases


@dataclass
class Chosen:
    """What an export holds, and what the data card says of it."""

    dataset: str
    cases: list[Case]
    selection: dict
    leak_checks: list[str]
    generators: list[dict]
    origin: str


def _refuse_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"`out`: {out} exists and is not an empty folder; choose a new one "
                         "(nothing was written)")


def choose(db: Database, workspace: Workspace, config: ExportConfig) -> Chosen:
    """The cases to export, refused before anything is written.

    Raises:
        ValueError: neither or both of data set and run; an unknown run, arm or fold; a policy
            that selects nothing; what the experiment's plan refuses (leaks included).
    """
    if bool(config.dataset) == bool(config.run):
        raise ValueError("give a data set (with a selection policy) or `--run` with `--arm` and "
                         "`--fold`, not both")
    task = "segmentation" if config.to == "nnunet" else "classification"
    chosen = _from_run(db, workspace, config, task) if config.run else \
        _from_dataset(db, workspace, config, task)
    _number_copies(chosen.cases)
    return chosen


def _from_dataset(db: Database, workspace: Workspace, config: ExportConfig,
                  task: str) -> Chosen:
    from polyp_core.experiment import ExperimentConfig, plan_experiment
    from polyp_core.experiment.leakage import generator_summary

    arms = ("baseline",) if config.real_only else ("baseline", "augmented")
    request = ExperimentConfig(dataset=config.dataset, task=task, folds=0, seeds=(0,),
                               arms=arms, policy=config.policy, allow_small_test=True)
    try:
        plan = plan_experiment(db, workspace, request)
    except ValueError as refused:
        raise ValueError(f"export: {refused}") from None
    fold = plan.folds[0]
    selection = plan.selections[0]
    if not config.real_only and (selection is None or not selection.images):
        raise ValueError("`policy`: it selects no synthetic image; loosen it, or export the "
                         "real images alone with `--real-only` (nothing was written)")
    cases = [_real(plan.real[i], plan.group_of[i], part)
             for part in ("train", "valid", "test") for i in getattr(fold, part)]
    synthetic = list(selection.images) if selection and not config.real_only else []
    cases += _synthetic(db, workspace, synthetic)
    checks = ["the plan's generator check: no supplying generator learned from a validation or "
              "test image of the data set",
              "inpainted and copy-paste images: none made of a validation or test frame"] \
        if synthetic else []
    return Chosen(str(config.dataset), cases,
                  dict(selection.counts) if selection and synthetic else {}, checks,
                  generator_summary(db, workspace, [selection] if synthetic else []),
                  f"data set {config.dataset}, fixed split, selection policy "
                  f"{_policy_words(config.policy)}" if synthetic else
                  f"data set {config.dataset}, fixed split, real images only")


def _policy_words(policy: SelectionPolicy) -> str:
    """The policy's fields that differ from the defaults (``generators=a; min_quality=good``)."""
    default = SelectionPolicy().to_json()
    changed = {k: v for k, v in policy.to_json().items() if v != default[k]}
    return "; ".join(f"{k}={','.join(v) if isinstance(v, list) else v}"
                     for k, v in changed.items()) or "every synthetic image"


def _declared(workspace: Workspace, generator: str) -> str:
    """What a generator trained in the workspace learned from (its config), in words."""
    config = workspace.models_dir / generator / "config.json"
    if not config.is_file():
        return "unknown"
    data = json.loads(config.read_text())
    seen = data.get("trained_on") or data.get("train") or {}
    images = f" ({seen['n_images']} images)" if "n_images" in seen else ""
    return f"{seen.get('dataset', '?')}: split(s) {', '.join(seen.get('splits', ['?']))}{images}"


def _real(ref: object, group: str, part: str) -> Case:
    return Case(ref.sha256, ref.path, ref.mask, ref.label, part, "real", str(group))


def _synthetic(db: Database, workspace: Workspace, shas_or_refs: list) -> list[Case]:
    """Pool images as cases: path, mask, class, generator and the frames they were made of."""
    from polyp_core.experiment.leakage import _provenance
    from polyp_core.pool import mask_path
    from review_db import queries

    shas = [getattr(r, "sha256", r) for r in shas_or_refs]
    made = _provenance(db, shas)
    cases = []
    with db.session() as session:
        for sha in shas:
            image = queries.image_by_sha(session, sha)
            if image is None:
                raise ValueError(f"synthetic image {sha[:12]} is no longer in the pool")
            generator, extra = made.get(sha, ("?", {}))
            mask = mask_path(Path(image.path).parent, extra["mask_sha256"]) \
                if extra.get("mask_sha256") else None
            frames = [extra.get("background") or {}] + list(extra.get("sources") or [])
            cases.append(Case(sha, image.path, str(mask) if mask else None, image.label or "",
                              "train", "synthetic", f"synthetic:{sha[:12]}", generator,
                              [f["sha256"] for f in frames if f.get("sha256")]))
    return cases


def _from_run(db: Database, workspace: Workspace, config: ExportConfig, task: str) -> Chosen:
    from polyp_core.runs import load_run

    try:
        run = load_run(db, config.run)
    except KeyError:
        raise ValueError(f"`run`: no stored run {config.run!r}") from None
    trained = run["images"].get("trained")
    if trained is None:
        raise ValueError(f"`run`: {config.run} was stored before runs recorded what each arm "
                         "learned from; run it again (`repeat`) to export an arm")
    if config.arm not in trained:
        raise ValueError(f"`arm`: run {config.run} has no arm {config.arm!r} (it has "
                         f"{', '.join(trained)})")
    folds = list(trained[config.arm])
    if config.fold > len(folds):
        raise ValueError(f"`fold`: run {config.run} has {len(folds)} fold(s); fold "
                         f"{config.fold} does not exist")
    part = trained[config.arm][folds[config.fold - 1]]
    dataset = run["config"]["dataset"]
    manifest = workspace.load_manifest(dataset)
    by_sha = {i.sha256: i for i in manifest.items}
    scheme = run["results"].get("scheme") or manifest.scheme
    from polyp_core.data.labels import get_scheme

    mapping = get_scheme(scheme).mapping
    cases = []
    for name, shas in (("train", part["real"]), ("test", part["test"])):
        for sha in shas:
            item = by_sha[sha]
            cases.append(Case(sha, item.image, item.mask, mapping.get(item.label, item.label),
                              name, "real", str(item.group or item.id)))
    cases += _synthetic(db, workspace, part["synthetic"])
    results = run["results"]
    selection = results.get("selection", {})
    counts = (selection.get("per_fold") or [selection.get("counts", {})])[
        min(config.fold, len(selection.get("per_fold") or [0])) - 1] if selection else {}
    return Chosen(dataset, cases, counts,
                  [f"run {config.run}: every leak check of its plan passed (it was stored)"],
                  selection.get("generators", []),
                  f"run {config.run}, arm {config.arm}, {folds[config.fold - 1]}")


def nnunet_splits(cases: list[Case], labels: list[str], k: int, seed: int) -> list[dict]:
    """nnU-Net's ``splits_final.json``: the studio's grouped, stratified K folds over the real
    training cases; each fold trains on the rest and on every synthetic case made of no frame
    it validates on."""
    from polyp_core.experiment.folds import grouped_folds

    real = [c for c in cases if c.kind == "real" and c.part != "test"]
    classes = sorted(set(labels))
    folds = grouped_folds([classes.index(c.label) for c in real], [c.group for c in real], k,
                          seed, classes=classes, inner_valid=0.0)
    synthetic = [c for c in cases if c.kind == "synthetic"]
    group_of_sha = {c.sha256: c.group for c in real}
    splits = []
    for f, fold in enumerate(folds):
        val = [real[i] for i in fold.test]
        held = {c.group for c in val}
        for c in val:
            c.fold = f
        train = [real[i].case_id for i in fold.train]
        train += [c.case_id for c in synthetic
                  if not {group_of_sha.get(s) for s in c.made_of} & held]
        splits.append({"train": sorted(train), "val": sorted(c.case_id for c in val)})
    return splits


def _rgb_png(source: str, target: Path) -> tuple[int, int]:
    """``source`` as an RGB PNG at ``target``; its (height, width)."""
    image = Image.open(source).convert("RGB")
    image.save(target)
    return image.height, image.width


def _mask_png(source: str, target: Path, shape: tuple[int, int]) -> None:
    from polyp_core.data.images import load_mask

    mask = load_mask(source)
    if mask.shape != shape:
        raise ValueError(f"{source}: mask {mask.shape[1]}x{mask.shape[0]} but its image is "
                         f"{shape[1]}x{shape[0]}")
    Image.fromarray(mask.astype(np.uint8)).save(target)


def export(db: Database, workspace: Workspace, config: ExportConfig,
           progress: Progress | None = None) -> dict:
    """Write the export and its data card; returns the data card (as ``datacard.json``).

    Raises:
        ValueError: an existing non-empty ``out`` and what :func:`choose` refuses, before
            anything is written; an image without a mask for nnU-Net.
    """
    import time

    from polyp_core.progress import no_progress

    progress = progress or no_progress
    start = time.perf_counter()
    out = Path(config.out)
    _refuse_out(out)
    chosen = choose(db, workspace, config)
    if config.to == "nnunet":
        missing = [c for c in chosen.cases if not c.mask]
        if missing:
            raise ValueError(f"nnU-Net needs a mask for every image; {len(missing)} have none "
                             f"(e.g. {missing[0].kind} {missing[0].sha256[:12]})")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        written = {"nnunet": _write_nnunet, "imagefolder": _write_imagefolder,
                   "csv": _write_csv}[config.to](scratch, chosen, config, progress)
        card = datacard(db, workspace, config, chosen, written)
        card["seconds"] = round(time.perf_counter() - start, 1)
        (scratch / "datacard.json").write_text(json.dumps(card, indent=1))
        (scratch / "DATACARD.md").write_text(datacard_markdown(card))
        if out.exists():
            out.rmdir()
        scratch.rename(out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return card


def _write_nnunet(root: Path, chosen: Chosen, config: ExportConfig, progress: Progress) -> dict:
    folder = root / f"Dataset{config.number:03d}_{config.name}"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    for n, case in enumerate(chosen.cases):
        images, labels = ("imagesTs", "labelsTs") if case.part == "test" else \
            ("imagesTr", "labelsTr")
        image = folder / images / f"{case.case_id}_0000.png"
        shape = _rgb_png(case.path, image)
        _mask_png(case.mask, folder / labels / f"{case.case_id}.png", shape)
        progress(n + 1, len(chosen.cases), f"{case.case_id}")
    training = [c for c in chosen.cases if c.part != "test"]
    splits = nnunet_splits(chosen.cases, [c.label for c in training if c.kind == "real"],
                           config.folds, config.seed)
    (folder / "splits_final.json").write_text(json.dumps(splits, indent=1))
    (folder / "dataset.json").write_text(json.dumps({
        "name": config.name, "description": f"Polyp Studio export: {chosen.origin}",
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": {"background": 0, "polyp": 1}, "numTraining": len(training),
        "file_ending": ".png", "licence": config.licence or "unknown"}, indent=1))
    _cases_csv(root / "cases.csv", chosen.cases, lambda c: (
        f"{folder.name}/{'imagesTs' if c.part == 'test' else 'imagesTr'}/{c.case_id}_0000.png",
        f"{folder.name}/{'labelsTs' if c.part == 'test' else 'labelsTr'}/{c.case_id}.png"))
    return {"format": "nnU-Net v2 raw", "folder": folder.name, "splits": len(splits)}


def _write_imagefolder(root: Path, chosen: Chosen, config: ExportConfig,
                       progress: Progress) -> dict:
    paths = {}
    for n, case in enumerate(chosen.cases):
        target = root / case.part / case.label / f"{case.case_id}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        _rgb_png(case.path, target)
        paths[case.sha256] = str(target.relative_to(root))
        progress(n + 1, len(chosen.cases), case.case_id)
    _cases_csv(root / "cases.csv", chosen.cases, lambda c: (paths[c.sha256], ""))
    return {"format": "image folders: <split>/<class>/<case>.png"}


def _write_csv(root: Path, chosen: Chosen, config: ExportConfig, progress: Progress) -> dict:
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for n, case in enumerate(chosen.cases):
        shape = _rgb_png(case.path, root / "images" / f"{case.case_id}.png")
        if case.mask:
            _mask_png(case.mask, root / "masks" / f"{case.case_id}.png", shape)
        progress(n + 1, len(chosen.cases), case.case_id)
    real = [c for c in chosen.cases if c.kind == "real" and c.part != "test"]
    if len({c.group for c in real}) >= config.folds:
        try:
            nnunet_splits(chosen.cases, [c.label for c in real], config.folds, config.seed)
        except ValueError:
            pass  # too few groups of a class for the folds: the fold column stays empty
    _cases_csv(root / "cases.csv", chosen.cases, lambda c: (
        f"images/{c.case_id}.png", f"masks/{c.case_id}.png" if c.mask else ""))
    return {"format": "CSV (cases.csv) with images/ and masks/"}


CSV_COLUMNS = ("case", "path", "class", "mask", "split", "fold", "kind", "generator", "sha256")


def _cases_csv(path: Path, cases: list[Case], where: object) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for c in cases:
            image, mask = where(c)
            writer.writerow([c.case_id, image, c.label, mask, c.part,
                             "" if c.fold is None else c.fold, c.kind, c.generator, c.sha256])


def datacard(db: Database, workspace: Workspace, config: ExportConfig, chosen: Chosen,
             written: dict) -> dict:
    """What the export holds and where it came from (``datacard.json``)."""
    from collections import Counter

    from polyp_core import __version__
    from review_db import queries

    manifest = workspace.load_manifest(chosen.dataset)
    routes: dict[str, list[str]] = {}
    for c in chosen.cases:
        if c.kind == "synthetic":
            route = ("copy-paste" if len(c.made_of) > 1 else "inpainted" if c.made_of
                     else "whole frame")
            if route not in routes.setdefault(c.generator, []):
                routes[c.generator].append(route)
    counts: dict = {}
    for c in chosen.cases:
        counts.setdefault(c.part, {}).setdefault(c.kind, Counter())[c.label] += 1
    synthetic = [c.sha256 for c in chosen.cases if c.kind == "synthetic"]
    with db.session() as session:
        ratings = [r for r in queries.synthetic_ratings(session, ()) if r[0] in set(synthetic)]
        gates = queries.gate_scores(session, synthetic)
    rated = {r[0] for r in ratings}
    summary = {"ratings": len(ratings), "images_rated": len(rated),
               "verdicts": dict(Counter(r[3] for r in ratings)),
               "quality": dict(Counter(r[4] for r in ratings if r[4]))}
    if config.with_reviewers:
        summary["reviewers"] = dict(Counter(str(r[1]) for r in ratings))
    passed = [iou for _, iou in gates.values()
              if quality_gate.passes(np.nan if iou is None else iou,
                                  quality_gate.PAPER_THRESHOLD)]
    warnings = []
    if not config.licence:
        warnings.append(f"the licence of {chosen.dataset}'s real images is not declared "
                        "(`--licence`): check it before sharing")
    for g in chosen.generators:
        if g.get("trained_on") in (None, "", "unknown") and g.get("made") == "imported":
            warnings.append(f"generator {g['generator']}: its training data is declared unknown")
    if synthetic:
        warnings.append("nnU-Net's own cross-validation: a generator that learned from the "
                        "training split has seen the frames of every validation fold; the "
                        "studio's grouped CV keeps such groups out of testing")
    return {"studio_version": __version__, "origin": chosen.origin, "export": written,
            "real_data": {"dataset": chosen.dataset, "source": Path(manifest.source).name,
                          "layout": manifest.layout, "scheme": manifest.scheme,
                          "licence": config.licence or "unknown",
                          "split": {"method": manifest.split_method,
                                    "seed": manifest.split_seed}},
            "counts": {part: {kind: dict(sorted(c.items())) for kind, c in kinds.items()}
                       for part, kinds in counts.items()},
            "generators": [{k: g.get(k) for k in ("generator", "images", "made", "version",
                                                   "source", "licence")}
                           | {"trained_on": g.get("trained_on") or _declared(workspace,
                                                                             g["generator"]),
                              "route": routes.get(g["generator"], [])}
                           for g in chosen.generators],
            "selection": chosen.selection, "ratings": summary,
            "gate": {"scored": len(gates), "at_iou_0.7": len(passed)},
            "leak_checks_passed": chosen.leak_checks, "warnings": warnings,
            "config": {k: v for k, v in asdict(config).items() if k not in ("out",)}}


def datacard_markdown(card: dict) -> str:
    """The data card in words (``DATACARD.md``)."""
    real = card["real_data"]
    lines = [f"# Data card: {card['origin']}", "",
             f"Exported by Polyp Studio {card['studio_version']} as {card['export']['format']}"
             f" in {card.get('seconds', '?')} s.", "", "## Real data", "",
             f"- data set `{real['dataset']}` (source folder `{real['source']}`, layout "
             f"{real['layout']}, label scheme {real['scheme']}); split {real['split']['method']}"
             f", seed {real['split']['seed']}", f"- licence: {real['licence']}", "",
             "## Images per split, kind and class", "", "| split | kind | classes |",
             "|---|---|---|"]
    for part, kinds in card["counts"].items():
        for kind, classes in kinds.items():
            lines.append(f"| {part} | {kind} | " + ", ".join(f"{c}: {n}" for c, n in
                                                           classes.items()) + " |")
    lines += ["", "## Generators", ""]
    lines += [f"- {g['generator']}: {g['images']} image(s), {g['made']} ("
              f"{', '.join(g['route']) or '?'}); version {g.get('version') or '-'}; trained on "
              f"{g['trained_on']}" for g in card["generators"]] or ["- none (real images only)"]
    sel = card["selection"]
    lines += ["", "## Selection", ""]
    if sel:
        lines.append(f"- candidates {sel.get('candidates', '?')}, dropped "
                     f"{json.dumps(sel.get('dropped', {}))}, selected "
                     f"{json.dumps(sel.get('selected', {}))}")
    lines += [f"- ratings: {card['ratings']['ratings']} on {card['ratings']['images_rated']} "
              f"exported images; verdicts {json.dumps(card['ratings']['verdicts'])}",
              f"- gate: {card['gate']['scored']} scored, {card['gate']['at_iou_0.7']} at IoU "
              f">= {quality_gate.PAPER_THRESHOLD}", "", "## Leak checks that passed", ""]
    lines += [f"- {c}" for c in card["leak_checks_passed"]] or ["- none needed (real only)"]
    lines += ["", "## Warnings", ""] + ([f"- {w}" for w in card["warnings"]] or ["- none"])
    return "\n".join(lines) + "\n"
