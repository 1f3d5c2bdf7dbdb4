"""Options shared by several commands, parsed one way: the box rule and the map sizes."""

from __future__ import annotations

import argparse

from camloc.boxes import DEFAULT_BOX_RULE, THRESHOLD_MODES, BoxRule
from camloc.errors import InputError
from camloc.explainer.passes import check_map_sizes


def add_box_rule_options(p: argparse.ArgumentParser) -> None:
    """`--threshold` and `--threshold-mode`: the one box rule (`camloc.boxes.BoxRule`) of every command."""
    p.add_argument(
        "--threshold",
        "--loc-threshold",
        dest="threshold",
        type=float,
        default=DEFAULT_BOX_RULE.threshold,
        help=f"box threshold, a fraction in [0, 1] (default {DEFAULT_BOX_RULE.threshold})",
    )
    p.add_argument(
        "--threshold-mode",
        choices=THRESHOLD_MODES,
        default=DEFAULT_BOX_RULE.mode,
        help="'max': fraction of the map's maximum (default); 'minmax': fraction of its min-max range",
    )


def box_rule_from(args: argparse.Namespace) -> BoxRule:
    """The BoxRule the options give (an `InputError` for a threshold outside [0, 1], NaN or inf)."""
    return BoxRule(args.threshold, args.threshold_mode)


def parse_map_sizes(text: str | None) -> tuple[int, ...] | None:
    """'224,448' -> (224, 448); 'native' -> () (the classification pass alone); None -> None (the default)."""
    if text is None:
        return None
    if text.strip().lower() == "native":
        return ()
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--map-sizes: '{text}' is not a comma-separated list of integers or 'native'") from None
    try:
        return check_map_sizes(sizes)
    except InputError as exc:
        raise InputError(f"--map-sizes: {exc} (out of range)") from None
