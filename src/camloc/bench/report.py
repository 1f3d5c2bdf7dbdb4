"""Results of the localization benchmark as JSON, a Markdown table and a plot (localization vs resolution)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camloc.errors import InputError
from camloc.io import atomic_path, write_json, write_text


def fmt(value: float | None) -> str:
    """A table cell: one decimal, "n/a" for None."""
    return "n/a" if value is None else f"{value:.1f}"


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], command: str) -> str:
    """The results table, with what produced it."""
    study = info["study"]
    lines = [
        "# Localization on Cluttered Fashion-MNIST",
        "",
        (
            f"Command: `{command}`; {info['total_seconds']:.0f} s in all on {info['threads']} CPU threads "
            f"(torch {info['torch']})."
        ),
        (
            f"Train {study['train_size']} / val {study['val_size']} / test {study['test_size']} images "
            f"({info['data']['canvas']}x{info['data']['canvas']} canvas), {study['epochs']} epochs, batch "
            f"{study['batch_size']}. Percentages on test; MaxBoxAccV2 at the CAM thresholds chosen on val."
        ),
        "",
        (
            "| method | feature map | top-1 cls | top-1 loc | GT-known loc | MaxBoxAccV2 (30/50/70) | mean | PxAP "
            "| train s |"
        ),
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        res = "-" if r["feature_resolution"] is None else "x".join(map(str, r["feature_resolution"]))
        m = r["maxboxacc_v2"]
        lines.append(
            f"| {r['method']} | {res} | {fmt(r['top1_cls'])} | {fmt(r['top1_loc'])} | "
            f"{fmt(r['gt_known_loc'])} | {fmt(m['30'])} / {fmt(m['50'])} / {fmt(m['70'])} | "
            f"{fmt(m['mean'])} | {fmt(r['pxap'])} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Localization (and classification) vs feature-map side; references as horizontal lines."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(
            f"{path}: matplotlib is needed for the plot (pip install 'camloc[bench]'); "
            "results.json and results.md are written"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cams = sorted(
        (r for r in rows if r["feature_resolution"] and not r["method"].startswith("probe")),
        key=lambda r: r["feature_resolution"][0],
    )
    probes = [r for r in rows if r["method"].startswith("probe")]
    sides = [r["feature_resolution"][0] for r in cams]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    series = {
        "MaxBoxAccV2 (mean)": [r["maxboxacc_v2"]["mean"] for r in cams],
        "GT-known loc (20%)": [r["gt_known_loc"] for r in cams],
        "PxAP": [r["pxap"] or 0.0 for r in cams],
        "top-1 cls": [r["top1_cls"] for r in cams],
    }
    for label, ys in series.items():
        ax.plot(sides, ys, marker="o", label=label)
    for r in probes:  # another net: a point of its own, not part of the stride series
        ax.scatter(
            [r["feature_resolution"][0]],
            [r["maxboxacc_v2"]["mean"]],
            marker="*",
            s=120,
            color="black",
            zorder=3,
            label="probe on frozen ImageNet net: MaxBoxAccV2",
        )
    styles = iter([":", "--", "-."])
    for r in rows:
        if not r["feature_resolution"]:
            ax.axhline(
                r["maxboxacc_v2"]["mean"],
                color="gray",
                linestyle=next(styles, ":"),
                linewidth=1,
                label=f"{r['method'].split(' (')[0]}: MaxBoxAccV2",
            )
    ax.set_xscale("log", base=2)
    ticks = sorted(set(sides) | {r["feature_resolution"][0] for r in probes})
    ax.set_xticks(ticks, [f"{s}x{s}" for s in ticks])
    ax.set_xlabel("CAM feature map (96x96 input)")
    ax.set_ylabel("% on test")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Cluttered Fashion-MNIST: localization vs CAM resolution")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_all(out: Path, rows: list[dict[str, Any]], info: dict[str, Any], command: str) -> None:
    """out/results.json (the rows), out/results.md, out/resolution.png and out/run.json (settings, timing)."""
    write_json(out / "results.json", rows)
    write_json(out / "run.json", {**info, "command": command})
    write_text(out / "results.md", markdown(rows, info, command))
    plot(rows, out / "resolution.png")
