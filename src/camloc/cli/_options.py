"""Options shared by several commands, parsed one way: the box rule, the map sizes and the zoom."""

from __future__ import annotations

import argparse

from camloc.boxes import DEFAULT_BOX_RULE, THRESHOLD_MODES, BoxRule
from camloc.zoom import parse_zoom

# parse_zoom lives in the core (camloc.zoom): camloc-onnx parses --zoom the same way without importing torch
__all__ = ["add_box_rule_options", "box_rule_from", "parse_zoom"]


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
