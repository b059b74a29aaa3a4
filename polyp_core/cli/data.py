"""Data commands of ``python -m polyp_core``: demo-data, import, info, scheme, sheet, weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from collections.abc import Sequence

from polyp_core.cli.common import TerminalProgress, print_counts
from polyp_core.workspace import Workspace
from polyp_core.data.labels import SCHEMES


def cmd_demo_data(args: argparse.Namespace) -> int:
    from polyp_core.demo import ensure_demo_dataset

    workspace = Workspace(args.workspace)
    with TerminalProgress() as progress:
        result = ensure_demo_dataset(workspace, n_frames=args.frames, size=args.size,
                                     seed=args.seed, name=args.name, force=args.force,
                                     progress=progress)
    if result is None:
        print(f"data set {args.name!r} already in {workspace.root} (use --force to repaint)")
        return 0
    print(f"painted and imported {result.n_images} phantom frames as {result.name!r} "
          f"({result.split_method} split, {result.seconds:.1f} s)")
    print_counts(result.counts)
    return 0


def _aliases(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        raw, sep, canon = value.partition("=")
        if not sep:
            raise SystemExit(f"--label-alias {value!r}: write it as RAW=CLASS, e.g. TA=AD")
        pairs.append((raw, canon.strip().upper()))
    return tuple(pairs)


def cmd_import(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db
    from polyp_core.workflows import TERMINAL, data

    config = data.import_request(data.IMPORT.values(args), _aliases(args.label_alias),
                                 tuple(args.cache_size))
    with TerminalProgress() as progress:  # a zip is unpacked into the workspace, with limits
        result = data.import_data(open_db(args), Workspace(args.workspace), TERMINAL, config,
                                  progress)
    print(f"imported {result.n_images} images ({result.n_masks} with masks) as {result.name!r}: "
          f"scheme {result.scheme}, {result.split_method} split, {result.decoded} decoded, "
          f"{result.seconds:.1f} s")
    for note in result.notes:
        print(f"  note: {note}")
    print_counts(result.counts)
    return 0


def cmd_import_synthetic(args: argparse.Namespace) -> int:
    """Import an external generator's images (folder or zip, with a manifest) into the pool."""
    from polyp_core.cli.common import open_db
    from polyp_core.workflows import TERMINAL, pool

    request = pool.import_synthetic_request(pool.IMPORT_SYNTHETIC.values(args))
    with TerminalProgress() as progress:
        result = pool.import_synthetic(open_db(args), Workspace(args.workspace), TERMINAL,
                                       request, progress)
    learned = result.declared_training or "unknown (retrain needs --allow-unknown-training-data)"
    print(f"imported {len(result.images)} images ({result.masks} with masks) of generator "
          f"{result.generator!r} (import {result.import_id}); trained on: {learned}")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    """The segmentation gate: a U-Net trained on the data set's real training frames scores
    every synthetic image with a mask (IoU with its own mask), beside held-out real frames."""
    from polyp_core.cli.common import cancel_on_interrupt, open_db
    from polyp_core.workflows import TERMINAL, pool

    config = pool.gate_request(pool.GATE.values(args))
    made: dict = {}
    work = pool.gate_work(open_db(args), Workspace(args.workspace), TERMINAL, config, made)
    with TerminalProgress() as progress:
        work(progress, cancel_on_interrupt())
    result = made["result"]
    print(f"scored {len(result.scores)} synthetic image(s) at {config.train.image_size} px; IoU "
          f">= {config.threshold} counts as accepted (95% intervals over images)")
    print("\n".join(result.lines()))
    print(f"  stored as gate {result.gate} ({result.folder}); filter with --min-gate-iou")
    return 0


def cmd_delete_dataset(args: argparse.Namespace) -> int:
    """Delete a data set nothing uses (refused, naming the studies and runs that use it)."""
    from polyp_core.cli.common import open_db
    from polyp_core.workflows import TERMINAL, data

    for what in data.delete(open_db(args), Workspace(args.workspace), TERMINAL, args.name):
        print(f"removed {what}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    workspace = Workspace(args.workspace)
    if not args.name:
        names = workspace.datasets()
        print(f"workspace {workspace.root}: {len(names)} data set(s)")
        for name in names:
            manifest = workspace.load_manifest(name)
            print(f"  {name}: {len(manifest.items)} images, scheme {manifest.scheme}, "
                  f"{manifest.layout} layout")
        return 0
    manifest = workspace.load_manifest(args.name)
    scheme = args.scheme or manifest.scheme
    if args.json:
        print(json.dumps({"name": manifest.name, "scheme": scheme, "schemes": manifest.schemes,
                          "counts": manifest.class_counts(scheme), "source": manifest.source,
                          "split_method": manifest.split_method}, indent=1))
        return 0
    print(f"{manifest.name}: {len(manifest.items)} images from {manifest.source}")
    print(f"  layout {manifest.layout}; masks: {'yes' if manifest.has_masks else 'no'}; "
          f"split {manifest.split_method} (seed {manifest.split_seed}, "
          f"{'/'.join(str(f) for f in manifest.split_fractions)})")
    print(f"  scheme {scheme} (active: {manifest.scheme}; available: {', '.join(manifest.schemes)})")
    raw = sorted({i.raw_label for i in manifest.items})
    print(f"  raw labels: {', '.join(raw)}")
    print_counts(manifest.class_counts(scheme))
    return 0


def cmd_scheme(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db
    from polyp_core.workflows import TERMINAL, data

    manifest = data.set_scheme(open_db(args), Workspace(args.workspace), TERMINAL, args.name,
                               args.scheme)
    print(f"{manifest.name}: active scheme is now {manifest.scheme}")
    print_counts(manifest.class_counts())
    return 0


def cmd_sheet(args: argparse.Namespace) -> int:
    from PIL import Image

    from polyp_core.data.browse import contact_sheet
    from polyp_core.data.cache import PixelCache

    workspace = Workspace(args.workspace)
    manifest = workspace.load_manifest(args.name)
    sheet = contact_sheet(manifest, PixelCache(workspace.pixel_cache_dir), args.per_class,
                          args.size, args.scheme, args.masks, args.seed)
    Image.fromarray(sheet).save(args.out)
    classes = ", ".join(manifest.class_counts(args.scheme)["all"])
    print(f"wrote {args.out}: one row per class ({classes}), {args.per_class} images each")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from polyp_core.backbones import BACKBONES, WeightsRegistry

    registry = WeightsRegistry(Workspace(args.workspace).weights_dir)
    if args.action == "add":
        if not (args.name and args.file and args.sha256):
            raise SystemExit("weights add NAME FILE --sha256 HASH")
        entry = registry.add(args.name, args.file, args.sha256, args.arch)
        print(f"registered {args.name}: {entry['path']} (sha256 {entry['sha256'][:12]}...)")
        return 0
    print("backbones: " + ", ".join(sorted(BACKBONES)))
    for name, entry in registry.entries().items():
        print(f"  {name}: {entry['path']} sha256 {entry['sha256'][:12]}...")
    return 0



def cmd_export(args: argparse.Namespace) -> int:
    """``export [DATASET] OUT``: a data set's fixed split with its selection, or (``--run``) an
    arm's training set in one fold, as nnU-Net, image folders or CSV, with a data card."""
    from polyp_core.cli.common import TerminalProgress, open_db as _db
    from polyp_core.export import export
    from polyp_core.workflows.export import export_request

    if len(args.paths) > 2:
        raise ValueError("export takes [DATASET] OUT")
    dataset = args.paths[0] if len(args.paths) == 2 else None
    fields = vars(args) | {"dataset": dataset, "out": args.paths[-1]}
    config = export_request(fields)
    workspace, db = Workspace(args.workspace), _db(args)
    with TerminalProgress() as progress:
        card = export(db, workspace, config, progress)
    print(f"exported to {config.out} ({card['export']['format']}) in {card['seconds']} s")
    for part, kinds in card["counts"].items():
        for kind, classes in kinds.items():
            print(f"  {part:<5} {kind:<9} " + ", ".join(f"{c}: {n}" for c, n in classes.items()))
    for warning in card["warnings"]:
        print(f"  warning: {warning}")
    print(f"  data card: {Path(config.out) / 'DATACARD.md'}")
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    from polyp_core.export import FORMATS

    ex = sub.add_parser("export", help="a training set as an nnU-Net dataset, image folders or "
                                       "a CSV, with a data card and the studio's grouped folds")
    ex.add_argument("paths", nargs="+", metavar="[DATASET] OUT",
                    help="the data set (or --run) and a new folder to write")
    ex.add_argument("--to", choices=FORMATS, default="nnunet")
    ex.add_argument("--run", help="export what an arm of this stored run learned from")
    ex.add_argument("--arm", default="augmented")
    ex.add_argument("--fold", type=int, default=1, help="the run's fold, from 1")
    ex.add_argument("--generators", help="the policy: only these generators (comma-separated)")
    ex.add_argument("--min-quality", choices=["moderate", "good"])
    ex.add_argument("--min-reviewers", type=int, default=1)
    ex.add_argument("--verdict", default="any")
    ex.add_argument("--unrated", default="include", choices=["include", "exclude"])
    ex.add_argument("--exclude-memorised", help="diagnose run ids whose near copies are dropped")
    ex.add_argument("--real-only", action="store_true", help="the real images alone")
    ex.add_argument("--folds", type=int, default=5, help="nnU-Net's folds (splits_final.json)")
    ex.add_argument("--seed", type=int, default=0, help="the folds' seed")
    ex.add_argument("--number", type=int, default=501, help="nnU-Net's dataset number")
    ex.add_argument("--name", default="Polyps", help="nnU-Net's dataset name")
    ex.add_argument("--licence", help="the real data's licence, for the data card")
    ex.add_argument("--with-reviewers", action="store_true",
                    help="name the reviewers in the data card's rating summary")
    ex.add_argument("--db")
    ex.set_defaults(func=cmd_export)

    demo = sub.add_parser("demo-data", help="paint the phantom demo data set and import it")
    demo.add_argument("--frames", type=int, default=1100)
    demo.add_argument("--size", type=int, default=256)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--name", default="phantom")
    demo.add_argument("--force", action="store_true", help="repaint and replace")
    demo.set_defaults(func=cmd_demo_data)

    from polyp_core.workflows.data import IMPORT  # declared once, with the Data tab's

    imp = sub.add_parser("import", help=IMPORT.help)
    IMPORT.add_options(imp)
    imp.add_argument("--label-alias", action="append", default=[], metavar="RAW=CLASS")
    imp.add_argument("--cache-size", type=int, action="append", default=[],
                     help="also cache resized pixels at this size (repeatable)")
    imp.add_argument("--db", help="database URL (default: $STUDIO_DB_URL or the workspace's SQLite)")
    imp.set_defaults(func=cmd_import)

    from polyp_core.workflows.pool import IMPORT_SYNTHETIC  # declared once, with the Pool tab's

    ext = sub.add_parser("import-synthetic", help=IMPORT_SYNTHETIC.help)
    IMPORT_SYNTHETIC.add_options(ext)
    ext.add_argument("--db")
    ext.set_defaults(func=cmd_import_synthetic)

    from polyp_core.workflows.pool import GATE  # declared once, with the Pool tab's defaults

    gate = sub.add_parser("gate", help=GATE.help)
    GATE.add_options(gate)
    gate.add_argument("--db")
    gate.set_defaults(func=cmd_gate)

    delete = sub.add_parser("delete-dataset", help="delete a data set that no study or run uses")
    delete.add_argument("name")
    delete.add_argument("--db")
    delete.set_defaults(func=cmd_delete_dataset)

    info = sub.add_parser("info", help="list data sets, or show one's class counts per split")
    info.add_argument("name", nargs="?")
    info.add_argument("--scheme", choices=list(SCHEMES))
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    scheme = sub.add_parser("scheme", help="switch a data set's active label scheme")
    scheme.add_argument("name")
    scheme.add_argument("scheme", choices=list(SCHEMES))
    scheme.set_defaults(func=cmd_scheme)

    sheet = sub.add_parser("sheet", help="save a contact sheet: a row of images per class")
    sheet.add_argument("name")
    sheet.add_argument("--out", default="contact_sheet.png")
    sheet.add_argument("--per-class", type=int, default=6)
    sheet.add_argument("--size", type=int, default=160)
    sheet.add_argument("--scheme", choices=list(SCHEMES))
    sheet.add_argument("--masks", action="store_true", help="outline the masks")
    sheet.add_argument("--seed", type=int, default=0)
    sheet.set_defaults(func=cmd_sheet)

    weights = sub.add_parser("weights", help="list or register local weight files")
    weights.add_argument("action", choices=["list", "add"])
    weights.add_argument("name", nargs="?")
    weights.add_argument("file", nargs="?")
    weights.add_argument("--sha256")
    weights.add_argument("--arch", help="timm architecture the file is for")
    weights.set_defaults(func=cmd_weights)
