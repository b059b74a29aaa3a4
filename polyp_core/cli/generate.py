"""Generator commands of ``python -m polyp_core``: train-ddpm, train-lora, sample."""

from __future__ import annotations

import argparse

from polyp_core.cli.common import TerminalProgress, cancel_on_interrupt, open_db
from polyp_core.generation.request import SCHEDULERS
from polyp_core.workspace import Workspace
from polyp_core.data.labels import SCHEMES


def _train_here(workspace: Workspace, config: object) -> object:
    """Train through the one workflow entry, in this thread (Ctrl-C cancels at the next step
    and keeps the last checkpoint): the training result."""
    from polyp_core.progress import Cancelled
    from polyp_core.workflows import TERMINAL, train_generator

    made: dict = {}

    def here(kind: str, config_json: dict, work: object, owner_id: int | None) -> str:
        with TerminalProgress() as progress:
            try:
                work(progress, cancel_on_interrupt())
            except Cancelled:
                pass  # the result says so
        return "terminal"

    train_generator.start(None, workspace, TERMINAL, config, here, made)
    return made["result"]


def cmd_train_ddpm(args: argparse.Namespace) -> int:
    from polyp_core.workflows import train_generator

    config = train_generator.train_ddpm_request(train_generator.TRAIN_DDPM.values(args),
                                                task=_task(args))
    result = _train_here(Workspace(args.workspace), config)
    print(f"{result.status}: {result.model_id} at step {result.steps_done}, loss {result.final_loss:.4f}, "
          f"{result.seconds:.0f} s; checkpoints: {', '.join(result.checkpoints) or '-'}")
    print(f"  {result.folder}")
    return 0 if result.status == "done" else 130


def _task(args: argparse.Namespace) -> str:
    if args.with_mask and args.inpaint:
        raise SystemExit("--with-mask and --inpaint are two kinds of model: choose one")
    return "image_mask" if args.with_mask else "inpaint" if args.inpaint else "image"


def cmd_copy_paste(args: argparse.Namespace) -> int:
    from polyp_core.workflows import TERMINAL, generate

    request = generate.copy_paste_request(generate.COPY_PASTE.values(args))
    made: dict = {}
    work = generate.copy_paste_work(open_db(args), Workspace(args.workspace), TERMINAL, request,
                                    made)
    with TerminalProgress() as progress:
        work(progress, cancel_on_interrupt())
    print(f"{len(made['stored'])} copy-paste {made['class']} image(s) from {request.dataset} "
          f"({request.source_split} polyps into {request.target_split} frames) added to the "
          f"pool with their masks as generator {request.generator}")
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    from polyp_core.workflows import TERMINAL, generate

    fields = generate.INPAINT.values(args)
    if args.background:  # an image file instead of a data set's frame
        fields |= {"dataset": None, "image": None}
    request = generate.inpaint_request(fields)
    drawn = None
    if args.mask:
        from polyp_core.data.images import load_mask

        drawn = load_mask(args.mask)
    made: dict = {}
    work = generate.inpaint_work(open_db(args), Workspace(args.workspace), TERMINAL, request,
                                 upload=args.background, drawn=drawn, holder=made)
    with TerminalProgress() as progress:
        work(progress, cancel_on_interrupt())
    result, stored, request = made["result"], made["stored"], made["request"]
    frame = result.background.record
    print(f"{len(stored)} inpainted {request.class_label} image(s) from {request.generator}@"
          f"{result.checkpoint} ({result.method}) on {result.background.name}"
          f"{' (split ' + frame['split'] + ')' if frame.get('split') else ''}, mask: "
          f"{result.mask_source['kind']}, hole: {int(result.images[0].hole.sum())} of "
          f"{result.images[0].hole.size} px, added to the pool with their masks")
    if frame.get("split") not in (None, "train"):
        print(f"  note: the frame is in the {frame['split']} split; retrain refuses these images "
              "wherever that frame's group is validated or tested")
    for (_, sha), image in zip(stored, result.images):
        print(f"  seed {image.seed}: {sha}")
    return 0


def cmd_train_lora(args: argparse.Namespace) -> int:
    from polyp_core.generation.sd_lora import LoraTrainConfig

    config = LoraTrainConfig(
        dataset=args.dataset, model_id=args.model, base_model=args.base_model, scheme=args.scheme,
        splits=tuple(args.splits.split(",")), resolution=args.resolution, rank=args.rank,
        alpha=args.alpha or args.rank, dropout=args.dropout,
        target_modules=tuple(args.target_modules.split(",")),
        train_text_encoder=args.train_text_encoder,
        unfreeze=tuple(u for u in args.unfreeze.split(",") if u),
        prior_preservation=args.prior_preservation, steps=args.steps, batch_size=args.batch_size,
        grad_accum=args.grad_accum, lr=args.lr, mixed_precision=args.mixed_precision,
        checkpoint_every=args.checkpoint_every, seed=args.seed)
    result = _train_here(Workspace(args.workspace), config)
    print(f"{result.status}: LoRA {result.model_id} at step {result.steps_done}; checkpoints: "
          f"{', '.join(result.checkpoints) or '-'}\n  {result.folder}")
    return 0 if result.status == "done" else 130


def cmd_sample(args: argparse.Namespace) -> int:
    from polyp_core.generation.request import LoraChoice
    from polyp_core.workflows import TERMINAL, generate

    workspace = Workspace(args.workspace)
    db = open_db(args)
    loras = tuple(LoraChoice(*(lambda p, s: (p, float(s or 1.0)))(*l.partition(":")[::2]))
                  for l in args.lora)
    fields = generate.SAMPLE.values(args)
    jobs = []
    for spec in args.count:
        cls, _, n = spec.partition("=")
        if not n.isdigit():
            raise SystemExit(f"--count {spec!r}: write CLASS=N, e.g. SSA=200")
        jobs.append(generate.sample_request(fields | {"class_label": cls, "n": int(n),
                                                      "prompt": None}, loras))
    if args.prompt or (args.class_label and not args.count):
        jobs.append(generate.sample_request(fields, loras))
    if not jobs:
        raise SystemExit("name what to sample: --count AD=100 --count SSA=200, --class AD --n 8, "
                         "or --prompt TEXT")
    token = cancel_on_interrupt()
    for request in jobs:
        with TerminalProgress() as progress:
            stored = generate.sample_into_pool(db, workspace, TERMINAL, args.model, request,
                                               args.checkpoint, progress, token)
        what = request.class_label or repr(request.prompt)
        print(f"{len(stored)} images of {what} from {args.model} added to the pool "
              f"({workspace.synthetic_dir})")
    return 0


def cmd_check_classes(args: argparse.Namespace) -> int:
    from polyp_core.diagnostics.probe import check_generator_classes

    with TerminalProgress() as progress:
        result = check_generator_classes(
            Workspace(args.workspace), args.model, args.dataset, n=args.n,
            checkpoint=args.checkpoint, classes=args.classes.split(",") if args.classes else None,
            seed=args.seed, steps=args.steps, guidance=args.guidance, scheduler=args.scheduler,
            progress=progress, cancel=cancel_on_interrupt())
    print(f"{args.model} ({args.checkpoint or 'last checkpoint'}), {args.scheduler} {args.steps} steps, "
          f"guidance {args.guidance}, seeds {args.seed}..{args.seed + args.n - 1}")
    print("\n".join(result.lines()))
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

    from polyp_core.demo import train_demo_generator

    steps = tuple(int(s) for s in args.steps.split(","))
    if len(steps) != 2 or min(steps) < 1:
        raise SystemExit(f"--steps {args.steps!r}: write FIRST,SECOND, e.g. 4000,2500")
    with TerminalProgress() as progress:
        target = train_demo_generator(Workspace(args.workspace), Path(args.to), steps,
                                      args.checkpoint_every, progress, cancel_on_interrupt(),
                                      same_threads=not args.all_threads)
    if target is None:
        print("cancelled: run the same command again to continue where it stopped")
        return 130
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"demo generator written to {target} ({size / 1e6:.1f} MB)")
    return 0


def add_generate_commands(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("check-classes", help="do a generator's samples carry their class? "
                           "(a probe trained on real frames reads them)")
    check.add_argument("--model", required=True)
    check.add_argument("--checkpoint")
    check.add_argument("--dataset", required=True, help="the real data set the probe learns from")
    check.add_argument("--classes", help="comma-separated (default: all of the data set's classes)")
    check.add_argument("--n", type=int, default=30, help="samples per class")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--steps", type=int, default=200)
    check.add_argument("--guidance", type=float, default=4.0)
    check.add_argument("--scheduler", default="ddpm", choices=SCHEDULERS)
    check.set_defaults(func=cmd_check_classes)

    from polyp_core.workflows.train_generator import TRAIN_DDPM  # declared once, with the tab's

    train = sub.add_parser("train-ddpm", help=TRAIN_DDPM.help)
    TRAIN_DDPM.add_options(train)
    train.add_argument("--with-mask", action="store_true",
                       help="image and mask: the polyp mask as a fourth channel, in and out")
    train.add_argument("--inpaint", action="store_true",
                       help="train to fill a hole (the polyp mask dilated) in a real frame")
    train.set_defaults(func=cmd_train_ddpm)

    from polyp_core.workflows.generate import INPAINT  # declared once, with the tab's defaults

    paint = sub.add_parser("inpaint", help=INPAINT.help)
    INPAINT.add_options(paint)
    paint.add_argument("--background", help="an image file to use as the background instead")
    paint.add_argument("--mask", help="a mask file of the frame's size (--mask-source drawn)")
    paint.add_argument("--db")
    paint.set_defaults(func=cmd_inpaint)

    from polyp_core.workflows.generate import COPY_PASTE

    pasting = sub.add_parser("copy-paste", help=COPY_PASTE.help)
    COPY_PASTE.add_options(pasting)
    pasting.add_argument("--db")
    pasting.set_defaults(func=cmd_copy_paste)

    lora = sub.add_parser("train-lora", help="fine-tune Stable Diffusion v1.x with LoRA")
    lora.add_argument("--dataset", required=True)
    lora.add_argument("--model", required=True, help="model id (folder under workspace/models)")
    lora.add_argument("--base-model", required=True,
                      help="diffusers folder or hub id (e.g. a Stable Diffusion v1.5 repository)")
    lora.add_argument("--scheme", choices=list(SCHEMES))
    lora.add_argument("--splits", default="train")
    lora.add_argument("--resolution", type=int, default=512)
    lora.add_argument("--rank", type=int, default=8)
    lora.add_argument("--alpha", type=int)
    lora.add_argument("--dropout", type=float, default=0.0)
    lora.add_argument("--target-modules", default="to_q,to_k,to_v,to_out.0")
    lora.add_argument("--train-text-encoder", action="store_true")
    lora.add_argument("--unfreeze", default="", help="comma-separated UNet layer prefixes")
    lora.add_argument("--prior-preservation", action="store_true")
    lora.add_argument("--steps", type=int, default=2000)
    lora.add_argument("--batch-size", type=int, default=4)
    lora.add_argument("--grad-accum", type=int, default=1)
    lora.add_argument("--lr", type=float, default=1e-4)
    lora.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "fp16", "bf16"])
    lora.add_argument("--checkpoint-every", type=int, default=500)
    lora.add_argument("--seed", type=int, default=0)
    lora.set_defaults(func=cmd_train_lora)

    from polyp_core.workflows.generate import SAMPLE  # declared once, with the tab's defaults

    sample = sub.add_parser("sample", help=SAMPLE.help)
    sample.add_argument("--model", required=True)
    sample.add_argument("--checkpoint")
    sample.add_argument("--count", action="append", default=[], metavar="CLASS=N",
                        help="N images of CLASS (repeatable)")
    SAMPLE.add_options(sample)
    sample.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]")
    sample.add_argument("--db")
    sample.set_defaults(func=cmd_sample)

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
