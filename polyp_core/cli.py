"""``python -m polyp_core``: the studio's engine from a terminal, for clusters without a UI."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from polyp_core import __version__
from polyp_core.errors import DatasetImportError, StudioError
from polyp_core.workspace import Workspace


def _terminal_progress(done: int, total: int, message: str) -> None:
    if sys.stderr.isatty():
        end = "\n" if done >= total else "\r"
        print(f"  [{done}/{total}] {message}", end=end, file=sys.stderr, flush=True)
    elif done >= total or done % 200 == 0:
        print(f"  [{done}/{total}] {message}", file=sys.stderr, flush=True)


def _print_counts(counts: dict[str, dict[str, int]]) -> None:
    classes = list(next(iter(counts.values())))
    print(f"  {'split':<6}" + "".join(f"{c:>7}" for c in classes) + f"{'total':>8}")
    for split, row in counts.items():
        print(f"  {split:<6}" + "".join(f"{row[c]:>7}" for c in classes)
              + f"{sum(row.values()):>8}")


def cmd_demo_data(args: argparse.Namespace) -> int:
    from polyp_core.demo import ensure_demo_dataset

    workspace = Workspace(args.workspace)
    result = ensure_demo_dataset(workspace, n_frames=args.frames, size=args.size, seed=args.seed,
                                 name=args.name, force=args.force, progress=_terminal_progress)
    if result is None:
        print(f"data set {args.name!r} already in {workspace.root} (use --force to repaint)")
        return 0
    print(f"painted and imported {result.n_images} phantom frames as {result.name!r} "
          f"({result.split_method} split, {result.seconds:.1f} s)")
    _print_counts(result.counts)
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
    from polyp_core.data.importer import ImportConfig, import_dataset

    fractions = tuple(float(x) for x in args.fractions.split(","))
    config = ImportConfig(
        source=args.source, name=args.name, layout=args.layout, labels_csv=args.labels_csv,
        id_column=args.id_column, label_column=args.label_column, group_column=args.group_column,
        path_column=args.path_column, mask_column=args.mask_column, split=args.split,
        split_fractions=fractions, seed=args.seed, scheme=args.scheme,
        label_aliases=_aliases(args.label_alias), cache_sizes=tuple(args.cache_size),
        overwrite=args.overwrite)
    result = import_dataset(Workspace(args.workspace), config, progress=_terminal_progress)
    print(f"imported {result.n_images} images ({result.n_masks} with masks) as {result.name!r}: "
          f"scheme {result.scheme}, {result.split_method} split, {result.decoded} decoded, "
          f"{result.seconds:.1f} s")
    for note in result.notes:
        print(f"  note: {note}")
    _print_counts(result.counts)
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
    _print_counts(manifest.class_counts(scheme))
    return 0


def cmd_scheme(args: argparse.Namespace) -> int:
    manifest = Workspace(args.workspace).set_scheme(args.name, args.scheme)
    print(f"{manifest.name}: active scheme is now {manifest.scheme}")
    _print_counts(manifest.class_counts())
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


def cmd_diagnose(args: argparse.Namespace) -> int:
    from polyp_core.diagnostics.report import DiagnoseConfig, diagnose
    from review_db import Database
    from review_db.database import database_url

    workspace = Workspace(args.workspace)
    config = DiagnoseConfig(
        dataset=args.dataset, generator=args.generator, checkpoint=args.checkpoint,
        real_split=None if args.real_split == "all" else args.real_split,
        extractor=args.extractor, size=args.size, subsets=args.subsets,
        subset_size=args.subset_size, seed=args.seed,
        projections=tuple(args.projection or ["umap"]), near_copy=args.near_copy)
    result = diagnose(Database(args.db or database_url(workspace.root)), workspace, config,
                      progress=_terminal_progress)
    print(f"diagnostic run {result.run_id} ({result.seconds:.1f} s), features: {result.extractor}")
    for scheme, matrix in result.matrices.items():
        print(f"  KID {scheme} (synthetic row vs real column; {matrix.subsets} subsets of "
              f"{matrix.subset_size}; diagonal lower is better, off-diagonal higher):")
        print("    " + " " * 10 + "".join(f"{'real ' + c:>22}" for c in matrix.classes)
              + f"{'margin':>10}")
        for syn in matrix.classes:
            cells = "".join(f"{str(matrix.cells[syn][r]).split(' (')[0]:>22}"
                            for r in matrix.classes)
            print(f"    {'syn ' + syn:<10}{cells}{matrix.margin[syn]:>10.4f}")
    memo = result.memorisation
    shares = ", ".join(f"{c} {v:.1%}" for c, v in memo["share_flagged"].items())
    print(f"  near copies (cosine >= {memo['threshold']}): {len(memo['pairs'])} ({shares})")
    for kind, values in result.diversity.items():
        print(f"  diversity {kind}: " + ", ".join(f"{c} {v:.3f}" for c, v in values.items()))
    for method, path in result.projection_files.items():
        print(f"  {method}: {path}")
    print(f"  stored in {result.folder}")
    return 0


def cmd_export_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from polyp_core.demo import export_generator

    target = export_generator(Workspace(args.workspace), args.model, args.checkpoint, Path(args.to))
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"exported {args.model}@{args.checkpoint} to {target} ({size / 1e6:.1f} MB)")
    return 0


def cmd_train_demo_generator(args: argparse.Namespace) -> int:
    from pathlib import Path

    from polyp_core.cli_generate import _cancel_on_interrupt
    from polyp_core.demo import train_demo_generator

    steps = tuple(int(s) for s in args.steps.split(","))
    if len(steps) != 2 or min(steps) < 1:
        raise SystemExit(f"--steps {args.steps!r}: write FIRST,SECOND, e.g. 4000,2500")
    target = train_demo_generator(Workspace(args.workspace), Path(args.to), steps, args.checkpoint_every,
                                  _terminal_progress, _cancel_on_interrupt(), same_threads=not args.all_threads)
    if target is None:
        print("cancelled: run the same command again to continue where it stopped")
        return 130
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"demo generator written to {target} ({size / 1e6:.1f} MB)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m polyp_core", description=__doc__)
    parser.add_argument("--version", action="version", version=f"polyp-studio {__version__}")
    parser.add_argument("--workspace", default=None,
                        help="workspace folder (default: $STUDIO_WORKSPACE or ./workspace)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-data", help="paint the phantom demo data set and import it")
    demo.add_argument("--frames", type=int, default=1100)
    demo.add_argument("--size", type=int, default=256)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--name", default="phantom")
    demo.add_argument("--force", action="store_true", help="repaint and replace")
    demo.set_defaults(func=cmd_demo_data)

    imp = sub.add_parser("import", help="import a data set (folder or CSV) into the workspace")
    imp.add_argument("source", help="hospital-layout folder, class-per-folder tree, or CSV")
    imp.add_argument("--name")
    imp.add_argument("--layout", default="auto", choices=["auto", "hospital", "folders", "csv"])
    imp.add_argument("--labels-csv", help="the label table, if the folder has several CSVs")
    for column in ("id", "label", "group", "path", "mask"):
        imp.add_argument(f"--{column}-column", help=f"name of the {column} column")
    imp.add_argument("--split", default="auto",
                     choices=["auto", "stratified", "grouped", "files"])
    imp.add_argument("--fractions", default="0.7,0.1,0.2", help="train,valid,test")
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--scheme", choices=["three_class", "ad_vs_rest"])
    imp.add_argument("--label-alias", action="append", default=[], metavar="RAW=CLASS")
    imp.add_argument("--cache-size", type=int, action="append", default=[],
                     help="also cache resized pixels at this size (repeatable)")
    imp.add_argument("--overwrite", action="store_true")
    imp.set_defaults(func=cmd_import)

    info = sub.add_parser("info", help="list data sets, or show one's class counts per split")
    info.add_argument("name", nargs="?")
    info.add_argument("--scheme", choices=["three_class", "ad_vs_rest"])
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    scheme = sub.add_parser("scheme", help="switch a data set's active label scheme")
    scheme.add_argument("name")
    scheme.add_argument("scheme", choices=["three_class", "ad_vs_rest"])
    scheme.set_defaults(func=cmd_scheme)

    sheet = sub.add_parser("sheet", help="save a contact sheet: a row of images per class")
    sheet.add_argument("name")
    sheet.add_argument("--out", default="contact_sheet.png")
    sheet.add_argument("--per-class", type=int, default=6)
    sheet.add_argument("--size", type=int, default=160)
    sheet.add_argument("--scheme", choices=["three_class", "ad_vs_rest"])
    sheet.add_argument("--masks", action="store_true", help="outline the masks")
    sheet.add_argument("--seed", type=int, default=0)
    sheet.set_defaults(func=cmd_sheet)

    diag = sub.add_parser("diagnose", help="KID/FID per class pair, copies, diversity, projections")
    diag.add_argument("--dataset", required=True)
    diag.add_argument("--generator")
    diag.add_argument("--checkpoint")
    diag.add_argument("--real-split", default="train", choices=["train", "valid", "test", "all"])
    diag.add_argument("--extractor", default="efficientnet_lite0")
    diag.add_argument("--size", type=int, default=224)
    diag.add_argument("--subsets", type=int, default=100)
    diag.add_argument("--subset-size", type=int, default=1000)
    diag.add_argument("--projection", action="append", choices=["umap", "tsne", "pca"])
    diag.add_argument("--near-copy", type=float, default=0.95)
    diag.add_argument("--seed", type=int, default=0)
    diag.add_argument("--db")
    diag.set_defaults(func=cmd_diagnose)

    from polyp_core.cli_classify import add_classify_commands
    from polyp_core.cli_generate import add_generate_commands
    from polyp_core.cli_review import add_review_commands

    add_generate_commands(sub)
    add_classify_commands(sub)

    add_review_commands(sub)

    export = sub.add_parser("export-model", help="copy one DDPM checkpoint for sampling only "
                                                 "(how assets/demo-ddpm is made)")
    export.add_argument("--model", required=True)
    export.add_argument("--checkpoint", required=True, help="e.g. step-003000")
    export.add_argument("--to", required=True, help="target folder")
    export.set_defaults(func=cmd_export_model)

    recipe = sub.add_parser("train-demo-generator",
                            help="make assets/demo-ddpm from nothing: phantom set, two training "
                                 "jobs, export (assets/README.md)")
    recipe.add_argument("--to", required=True, help="target folder, e.g. assets/demo-ddpm")
    recipe.add_argument("--steps", default="4000,2500",
                        help="steps of the two jobs (default: the shipped model's 4000,2500)")
    recipe.add_argument("--checkpoint-every", type=int, default=500)
    recipe.add_argument("--all-threads", action="store_true",
                        help="use every CPU thread instead of the shipped model's 1 and 2: faster "
                             "on a bigger machine, but the weights then differ in their last bits")
    recipe.set_defaults(func=cmd_train_demo_generator)

    weights = sub.add_parser("weights", help="list or register local weight files")
    weights.add_argument("action", choices=["list", "add"])
    weights.add_argument("name", nargs="?")
    weights.add_argument("file", nargs="?")
    weights.add_argument("--sha256")
    weights.add_argument("--arch", help="timm architecture the file is for")
    weights.set_defaults(func=cmd_weights)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workspace is None:
        args.workspace = str(Workspace.default().root)
    try:
        return args.func(args)
    except DatasetImportError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (StudioError, ValueError, KeyError, FileNotFoundError, PermissionError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
