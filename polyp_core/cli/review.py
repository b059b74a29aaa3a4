"""Review commands of ``python -m polyp_core``: reviewers, studies, rating from a terminal.

Passwords come from ``$STUDIO_PASSWORD``, ``--password-stdin`` or a prompt, never from the
command line (which other users of a cluster node can read).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.cli.common import open_db as _db
from polyp_core.cli.common import password as _password
from polyp_core.cli.common import signed_in as _person
from polyp_core.workspace import Workspace

if TYPE_CHECKING:
    from polyp_core.review.studies import RealPool, SyntheticPool


def _pool(spec: str, kind: str) -> RealPool | SyntheticPool:
    from polyp_core.review.studies import parse_pool

    try:
        return parse_pool(spec, kind)
    except ValueError as exc:
        raise SystemExit(f"--{kind} {exc}") from None


def _calibration_pool(spec: str) -> RealPool | SyntheticPool:
    from polyp_core.review.studies import parse_calibration

    try:
        return parse_calibration(spec)
    except ValueError as exc:
        raise SystemExit(f"--{exc}") from None


def cmd_reviewer(args: argparse.Namespace) -> int:
    """Accounts, run by whoever holds the workspace (the operator): add, list, deactivate or
    activate, change a role or a password. Every change ends the account's open sessions."""
    from polyp_core.workflows import TERMINAL
    from polyp_core.workflows import accounts

    db = _db(args)
    if args.action != "list" and not args.name:
        raise SystemExit(f"reviewer {args.action}: give the account's name")
    if args.action == "add":
        person = accounts.create(db, TERMINAL, args.name,
                                 _password(args, f"new password for {args.name}: "), args.role)
        print(f"added {person.role} {person.name}")
    elif args.action == "list":
        for account in accounts.accounts(db, TERMINAL):
            state = "active" if account["active"] else "deactivated"
            print(f"{account['name']}\t{account['role']}\t{state}\t{account['sessions']} "
                  "session(s)")
    else:
        if args.action == "password":
            ended = accounts.set_password(db, TERMINAL, args.name,
                                          _password(args, f"new password for {args.name}: "))
        elif args.action == "role":
            ended = accounts.change(db, TERMINAL, args.name, f"make {args.role}")
        else:
            ended = accounts.change(db, TERMINAL, args.name, args.action)
        print(f"{args.action} {args.name}: done; {ended} open session(s) ended")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """The audit log, newest first: sign-ins, failures, lockouts, account and study changes."""
    from polyp_core.workflows import TERMINAL
    from polyp_core.workflows import accounts

    for e in accounts.audit(_db(args), TERMINAL, tuple(args.kind), args.actor, args.limit):
        print("\t".join([e["at"].isoformat(timespec="seconds"), e["kind"], e["actor"] or "-",
                         e["address"] or "-", e["target"] or "-",
                         json.dumps(e["detail"]) if e["detail"] else ""]))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from polyp_core.runs import json_safe
    from polyp_core.workflows import study

    spec = None
    if args.action in ("create", "plan"):
        # checked before the sign-in: a bad request writes nothing, not even an audit line
        pools = tuple(_pool(s, "real") for s in args.real) + \
            tuple(_pool(s, "synthetic") for s in args.synthetic)
        calibration = tuple(_calibration_pool(s) for s in args.calibration)
        spec = study.study_request(args.name, pools, tuple(args.reviewers.split(",")),
                                   study.STUDY.values(args), calibration)
    db = _db(args)
    person = _person(args, db)
    workspace = Workspace(args.workspace)
    if spec is not None:
        pools = spec.pools
        for line in study.plan(db, workspace, person, spec).lines():
            print(line)
        if args.target_auc is not None:
            from polyp_core.review.power import study_power

            n_real = sum(p.n for p in pools if type(p).__name__ == "RealPool")
            n_syn = sum(p.n for p in pools if type(p).__name__ == "SyntheticPool")
            if spec.overlap < len(spec.reviewers):
                print(f"note: the MRMC analysis uses images every reader rated; with overlap "
                      f"{spec.overlap} of {len(spec.reviewers)} reviewers few or none are")
            print(study_power(args.target_auc, len(spec.reviewers), n_real, n_syn).line())
        if args.action == "create":
            study.create(db, workspace, person, spec)
            print(f"created study {args.name}: {sum(p.n for p in pools)} images, "
                  f"each rated by {args.overlap} of {len(spec.reviewers)} reviewers")
            args.action = "audit-shown"
    if args.action in ("audit", "audit-shown"):
        report = study.audit(db, workspace, person, args.name) if args.action == "audit" else \
            None
        integrity = study.integrity(db, person, args.name)
        if args.json:
            print(json.dumps(json_safe(integrity), indent=1))
        else:
            for line in (report.lines() if report else integrity["audit_lines"]):
                print(line)
            print(integrity["summary"])
    elif args.action == "override":
        study.override(db, person, args.name, args.reason or "")
        print(f"study {args.name}: opened for reviewers despite its leak audit "
              f"(reason recorded: {args.reason})")
    elif args.action == "list":
        for info in study.studies(db, person):
            print(f"{info.name}\t{info.status}\t{info.rated}/{info.assigned} rated")
    elif args.action == "close":
        study.close(db, person, args.name)
        print(f"closed study {args.name}")
    elif args.action == "stats":
        result = study.statistics(db, person, args.name)
        if args.json:
            print(json.dumps(json_safe(result), indent=1))
        else:
            from polyp_core.review.reader import summary_lines

            print(f"{args.name}: {result['n_rated']}/{result['n_assignments']} rated")
            print("  " + study.integrity(db, person, args.name)["summary"])
            for line in summary_lines(result):
                print(f"  {line}")
    elif args.action == "export":
        paths = study.export(db, person, args.name, args.out)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from polyp_core.workflows import review

    db = _db(args)
    person = _person(args, db)
    if args.action == "queue":
        for item in review.queue(db, person, args.study):
            state = f"{item.confidence}:{item.verdict}/{item.quality}" if item.rated else "-"
            if item.rated and item.mask_quality:
                state += f"/mask {item.mask_quality}"
            print(f"{item.position}\t{item.token}\t{state}")
    elif args.action == "image":
        Path(args.out).write_bytes(review.image(db, Workspace(args.workspace), person,
                                                args.token))
        print(f"wrote {args.out}")
    elif args.action == "rate":
        answer = args.verdict or ""
        confidence = int(answer) if answer.isdigit() else None  # 1-5, or real / synthetic
        receipt = review.rate(db, person, args.token, None if confidence else answer,
                              args.quality, args.histology, args.seconds, confidence=confidence,
                              mask_quality=args.mask_quality)
        print(f"rated (revision {receipt.revision}{'' if receipt.changed else ', unchanged'})")
    return 0


def cmd_mrmc(args: argparse.Namespace) -> int:
    """The OR random-reader random-case analysis of an iMRMC input file."""
    from polyp_core.review.mrmc import or_analysis, read_imrmc
    from polyp_core.runs import json_safe

    result = or_analysis(read_imrmc(args.file))
    if args.json:
        print(json.dumps(json_safe(result.to_json()), indent=1))
    else:
        for line in result.lines():
            print(line)
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    """The power of a planned reader study (simulated OR analyses)."""
    from polyp_core.review.power import study_power

    result = study_power(args.auc, args.readers, args.real, args.synthetic,
                         other_auc=args.other_auc, simulations=args.simulations, seed=args.seed)
    print(result.line())
    return 0


def add_review_commands(sub: argparse._SubParsersAction) -> None:
    """Register the review sub-commands on the main parser's ``sub``."""
    power = sub.add_parser("power", help="plan a reader study: the power of its MRMC analysis "
                                         "for a target AUC (or two generators' AUCs)")
    power.add_argument("--auc", type=float, required=True,
                       help="readers' AUC to detect against 0.5 (or generator A's)")
    power.add_argument("--other-auc", type=float, help="generator B's AUC: power to tell A from B")
    power.add_argument("--readers", type=int, required=True)
    power.add_argument("--real", type=int, required=True, help="real images")
    power.add_argument("--synthetic", type=int, required=True,
                       help="synthetic images (per generator)")
    power.add_argument("--simulations", type=int, default=200)
    power.add_argument("--seed", type=int, default=0)
    power.set_defaults(func=cmd_power)
    mrmc = sub.add_parser("mrmc", help="MRMC ROC analysis (Obuchowski-Rockette, Hillis ddf) of "
                                       "an iMRMC input file, e.g. a study's export")
    mrmc.add_argument("file", help="iMRMC input file: truth rows with reader -1, then reader, "
                                   "case, modality, score")
    mrmc.add_argument("--json", action="store_true", help="per-modality per-reader AUCs, "
                                                          "reader-averaged AUCs, F, ddf, p, CIs")
    mrmc.set_defaults(func=cmd_mrmc)
    rev = sub.add_parser("reviewer", help="add, list, deactivate or activate accounts, change "
                                          "a role or password (open sessions end)")
    rev.add_argument("action", choices=["add", "list", "deactivate", "activate", "role",
                                        "password"])
    rev.add_argument("name", nargs="?")
    rev.add_argument("--role", default="reviewer", choices=["admin", "reviewer"],
                     help="for add and role")
    rev.add_argument("--password-stdin", action="store_true")
    rev.add_argument("--db", help="database URL (default: $STUDIO_DB_URL or the workspace's SQLite)")
    rev.set_defaults(func=cmd_reviewer)

    audit = sub.add_parser("audit", help="the audit log: sign-ins, failures, lockouts, "
                                         "account and study changes, refused events")
    audit.add_argument("--kind", action="append", default=[], help="only these kinds")
    audit.add_argument("--actor", help="only this account name")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--db")
    audit.set_defaults(func=cmd_audit)

    from polyp_core.workflows.study import STUDY  # declared once, with the Studies tab's

    study = sub.add_parser("study", help=STUDY.help)
    study.add_argument("action", choices=["plan", "create", "list", "close", "stats", "export",
                                          "audit", "override"])
    study.add_argument("name", nargs="?")
    study.add_argument("--as", dest="as_", required=True, help="admin account")
    study.add_argument("--real", action="append", default=[], metavar="DATASET[:SPLIT]:N")
    study.add_argument("--synthetic", action="append", default=[], metavar="GENERATOR[@CKPT]:N")
    study.add_argument("--reviewers", default="", help="comma-separated reviewer names")
    STUDY.add_options(study)
    study.add_argument("--calibration", action="append", default=[],
                       metavar="real:DATASET[:SPLIT]:N | synthetic:GENERATOR[@CKPT]:N",
                       help="calibration items every reviewer gets, scored apart")
    study.add_argument("--target-auc", type=float,
                       help="plan: the power of the MRMC analysis to show this AUC against 0.5")
    study.add_argument("--reason", help="with override: why the study opens despite its audit")
    study.add_argument("--json", action="store_true")
    study.add_argument("--out", default="study_export")
    study.add_argument("--password-stdin", action="store_true")
    study.add_argument("--db")
    study.set_defaults(func=cmd_study)

    review = sub.add_parser("review", help="a reviewer's queue, images and ratings")
    review.add_argument("action", choices=["queue", "image", "rate"])
    review.add_argument("study", nargs="?")
    review.add_argument("token", nargs="?")
    review.add_argument("verdict", nargs="?", help="1 definitely real, 2 probably real, 3 unsure, "
                                                   "4 probably synthetic, 5 definitely synthetic "
                                                   "(or real / synthetic: 1 / 5)")
    review.add_argument("quality", nargs="?", help="good, moderate or poor")
    review.add_argument("--histology")
    review.add_argument("--mask-quality", help="good, moderate or poor (studies that show masks)")
    review.add_argument("--seconds", type=float)
    review.add_argument("--out", default="image.jpg")
    review.add_argument("--as", dest="as_", required=True, help="your reviewer account")
    review.add_argument("--password-stdin", action="store_true")
    review.add_argument("--db")
    review.set_defaults(func=cmd_review)
