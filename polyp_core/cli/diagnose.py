"""The diagnose command of ``python -m polyp_core``: KID/FID per class pair, copies, diversity,
projections."""

from __future__ import annotations

import argparse

from polyp_core.cli.common import TerminalProgress, open_db
from polyp_core.workspace import Workspace


def cmd_diagnose(args: argparse.Namespace) -> int:
    from polyp_core.diagnostics.report import DiagnoseConfig

    workspace = Workspace(args.workspace)
    config = DiagnoseConfig(
        dataset=args.dataset, generator=args.generator, checkpoint=args.checkpoint,
        real_split=None if args.real_split == "all" else args.real_split,
        extractor=args.extractor, size=args.size, subsets=args.subsets,
        subset_size=args.subset_size, seed=args.seed,
        projections=tuple(args.projection or ["umap"]), near_copy=args.near_copy,
        against=args.against,
        against_split=None if args.against_split == "all" else args.against_split,
        region=args.region)
    from polyp_core.workflows import TERMINAL
    from polyp_core.workflows import diagnose as diagnose_workflow

    with TerminalProgress() as progress:
        result = diagnose_workflow.run(open_db(args), workspace, TERMINAL, config, progress)
    print(f"diagnostic run {result.run_id} ({result.seconds:.1f} s), features: {result.extractor}")
    for scheme, matrix in result.matrices.items():
        print(f"  KID {scheme} (synthetic row vs real column; {matrix.subsets} subsets of "
              f"{matrix.subset_size}; diagonal lower is better, off-diagonal higher):")
        print("    " + " " * 10 + "".join(f"{'real ' + c:>22}" for c in matrix.classes)
              + f"{'margin':>10}{'real-vs-real floor':>22}")
        floors = result.kid_floor.get(scheme, {})
        for syn in matrix.classes:
            cells = "".join(f"{str(matrix.cells[syn][r]).split(' (')[0]:>22}"
                            for r in matrix.classes)
            floor = floors.get(syn)
            floor_text = f"{floor['mean']:.4f} ± {floor['std']:.4f}" if floor else "-"
            print(f"    {'syn ' + syn:<10}{cells}{matrix.margin[syn]:>10.4f}{floor_text:>22}")
        print("    floor: KID of two halves of the real class split by patient/lesion; a "
              "diagonal cell near it is as close as real data gets to itself")
    second = result.second_real
    for scheme, matrix in second.get("kid", {}).items():
        print(f"  KID {scheme}, second real source {second['dataset']} "
              f"({second['split'] or 'all'}: {second['images']} images, "
              f"{second['shared_images']} shared with {config.dataset}) row vs real column:")
        print("    " + " " * 12 + "".join(f"{'real ' + c:>22}" for c in matrix["classes"]))
        for row in matrix["classes"]:
            cells = "".join(f"{k['mean']:.4f} ± {k['std']:.4f}".rjust(22)
                            for k in (matrix["cells"][row][r] for r in matrix["classes"]))
            print(f"    {'real2 ' + row:<12}{cells}")
        print("    a synthetic diagonal cell below the second source's is closer to this data set "
              "than another real source is")
    if result.lesion:
        _print_lesion(result.lesion)
    memo = result.memorisation
    shares = ", ".join(f"{c} {v:.1%}" for c, v in memo["share_flagged"].items())
    print(f"  near copies (cosine >= {memo['threshold']}): {len(memo['pairs'])} ({shares})")
    for kind, values in result.diversity.items():
        print(f"  diversity {kind}: " + ", ".join(f"{c} {v:.3f}" for c, v in values.items()))
    for method, path in result.projection_files.items():
        print(f"  {method}: {path}")
    print(f"  stored in {result.folder}")
    return 0



def _print_lesion(found: dict) -> None:
    """The crops' figures: each diagonal KID with its interval beside the floor, per generator."""
    n, left = found["images"], found["left_out"]
    print(f"  around each polyp (crops; {n['real']} real, {n['synthetic']} synthetic; left out "
          f"without a polyp region: {left['real']} real, {left['synthetic']} synthetic; 95% "
          f"intervals from half-samples of real {found['unit']} and of the synthetic images' "
          "frames):")
    for scheme, matrix in found["kid"].items():
        floors = found["kid_floor"].get(scheme, {})
        for c in matrix["classes"]:
            cell, ci = matrix["cells"][c][c], found["intervals"][scheme][c]
            floor = f", floor {floors[c]['mean']:.4f}" if c in floors else ""
            print(f"    {scheme} {c}: KID {cell['mean']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"
                  f"{floor}")
    for generator, schemes in found["by_generator"].items():
        for scheme, cells in schemes.items():
            print(f"    {generator} ({scheme}): " + ", ".join(
                f"{c} {v['kid']:.4f} [{v['interval']['low']:.4f}, {v['interval']['high']:.4f}] "
                f"(n={v['images']})" for c, v in cells.items()))
    memo = found["memorisation"]
    print(f"    near copies of a real polyp (cosine >= {memo['threshold']}): {len(memo['pairs'])}")


def add_diagnose_commands(sub: argparse._SubParsersAction) -> None:
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
    diag.add_argument("--region", default="frame", choices=["frame", "lesion"],
                      help="lesion: also compare crops around each polyp (the hole an image "
                           "filled, a pasted polyp, a mask), with intervals over lesions")
    diag.add_argument("--against", metavar="DATASET",
                      help="a second real source (another data set): its classes get KID rows "
                           "against this data set's real classes, beside the synthetic ones")
    diag.add_argument("--against-split", default="all", choices=["train", "valid", "test", "all"])
    diag.add_argument("--db")
    diag.set_defaults(func=cmd_diagnose)

