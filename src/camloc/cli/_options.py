"""Options shared by several commands, parsed one way: the box rule, the map sizes and the zoom."""

from __future__ import annotations

import argparse

from camloc.boxes import DEFAULT_BOX_RULE, THRESHOLD_MODES, BoxRule
from camloc.errors import InputError
from camloc.explainer.passes import DEFAULT_ZOOM, Zoom


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


def parse_zoom(text: str | None) -> Zoom | bool | None:
    """--zoom: None (the default), 'on', 'off', or 'EXPAND,MAX_AREA,SIZE[,largest|all]' (a `Zoom`)."""
    if text is None:
        return None
    key = text.strip().lower()
    if key in ("on", "off"):
        return key == "on"
    parts = [t.strip() for t in key.split(",")]
    try:
        if len(parts) not in (3, 4):
            raise ValueError
        expand, max_area, size = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise InputError(
            f"--zoom: '{text}' is not 'on', 'off' or EXPAND,MAX_AREA,SIZE[,largest|all] (e.g. 1.0,0.5,320)"
        ) from None
    components = parts[3] if len(parts) == 4 else DEFAULT_ZOOM.components
    return Zoom(expand, max_area, size, components)  # type: ignore[arg-type]  # Zoom checks the value
