"""``python -m polyp_core``: the studio's engine from a terminal, for clusters without a UI.

One module per group of commands (``data``, ``generate``, ``diagnose``, ``classify``,
``review``), each with an ``add_*_commands(sub)``; what they share is in ``common``, which
imports none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from polyp_core import __version__
from polyp_core.errors import DatasetImportError, StudioError
from polyp_core.validation import InvalidRequest
from polyp_core.workspace import Workspace


def build_parser() -> argparse.ArgumentParser:
    from polyp_core.cli.classify import add_classify_commands
    from polyp_core.cli.data import add_data_commands
    from polyp_core.cli.diagnose import add_diagnose_commands
    from polyp_core.cli.generate import add_generate_commands
    from polyp_core.cli.review import add_review_commands

    parser = argparse.ArgumentParser(prog="python -m polyp_core",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"polyp-studio {__version__}")
    parser.add_argument("--workspace", default=None,
                        help="workspace folder (default: $STUDIO_WORKSPACE or ./workspace)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_data_commands, add_diagnose_commands, add_generate_commands,
                add_classify_commands, add_review_commands):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workspace is None:
        args.workspace = str(Workspace.default().root)
    try:
        return args.func(args)
    except DatasetImportError as exc:
        _say(str(exc))
        return 2
    except InvalidRequest as exc:
        _say(f"error: {exc.as_flags()}")
        return 2
    except (StudioError, ValueError, KeyError, FileNotFoundError, PermissionError) as exc:
        from polyp_core.workflows.fields import as_option, name_fields

        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        # the engine names request fields; the terminal shows them as its options
        _say(f"error: {name_fields(str(message), _options(), as_option)}")
        return 2


def _options() -> dict[str, str]:
    """Every form's fields whose option is not ``--<field>`` (``class_label`` -> ``--class``);
    retrain's spelling where two forms differ."""
    from polyp_core.workflows import data, generate, pool, retrain, study, train_generator

    forms = (data.IMPORT, generate.SAMPLE, generate.INPAINT, pool.GATE, pool.IMPORT_SYNTHETIC,
             train_generator.TRAIN_DDPM, study.STUDY, retrain.RETRAIN)
    return {name: flag for form in forms for name, flag in form.options().items()}


def _say(message: str, limit: int = 4000) -> None:
    """An error on stderr: bytes of a name that is not UTF-8 written as ``\\xe9``, and a
    message that quotes a huge input cut to ``limit`` characters."""
    from polyp_core.data.sources import printable_path

    text = printable_path(message)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    print(text, file=sys.stderr)
