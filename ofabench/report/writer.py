"""Write ``reports/<name>/``: plots, a CSV of every point, the pareto document and a Markdown
summary that names the command that produced it and the provenance."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..provenance import atomic_open
from ..search.axes import AXES, AXES_INFO
from ..search.points import ParetoPoint
from ..search.sweep import points_of
from .plots import axis_label, plot_accuracy_vs
from .style import MethodStyle, styles
from .tables import best_table, hypervolume_table, markdown_table, points_frame, search_table

logger = logging.getLogger("ofabench")

FILES = {name: a.figure for name, a in AXES_INFO.items()}


def write_report(
    document: Mapping[str, Any], name: str, out_dir: str | Path, command: str = ""
) -> dict[str, Path]:
    """Write the report of a pareto document into ``out_dir``; returns the files by role."""
    out = Path(out_dir)
    points = points_of(document)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write_files(document, points, name, out, command)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a failed report leaves no empty folder behind
        raise


def _write_files(
    document: Mapping[str, Any], points: list[ParetoPoint], name: str, out: Path, command: str
) -> dict[str, Path]:
    written = _plots(document, points, name, out)
    fronts = {a: s["fronts"] for a, s in document["summary"].items()}
    with atomic_open(out / "points.csv") as handle:
        points_frame(points, fronts).to_csv(handle, index=False)
    written["csv"] = out / "points.csv"
    with atomic_open(out / "pareto.json") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")
    written["json"] = out / "pareto.json"
    text = summary_markdown(document, points, name, written, command)
    with atomic_open(out / "summary.md") as handle:
        handle.write(text)
    written["markdown"] = out / "summary.md"
    logger.info("wrote report %s to %s", name, out)
    return written


def _plots(
    document: Mapping[str, Any], points: list[ParetoPoint], name: str, out: Path
) -> dict[str, Path]:
    written = {}
    sweep_axis = document["axis"]
    for axis in dict.fromkeys([sweep_axis, "latency_ms", "mmacs"]):
        budgets = document["budgets"] if axis == sweep_axis else ()
        title = f"{name}: top-1 vs {axis_label(axis, document.get('device')).split(' (')[0]}"
        path = plot_accuracy_vs(
            points, axis, out / FILES[axis], document.get("device"), budgets, title
        )
        if path is not None:
            written[axis] = path
    return written


# -- the Markdown summary ----------------------------------------------------------------------
def summary_markdown(
    document: Mapping[str, Any],
    points: list[ParetoPoint],
    name: str,
    files: Mapping[str, Path],
    command: str = "",
) -> str:
    """The report's Markdown text."""
    looks = styles(points)
    parts = [
        f"# {name}",
        _setup(document),
        _commands(document, command),
        _figures(files),
        _best_section(document, looks),
        _hypervolume_section(document, looks),
        _search_section(document, points),
        _skipped_section(document),
        _caveats(document, points),
        _sources_section(points, looks),
        _provenance_section(document),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _setup(doc: Mapping[str, Any]) -> str:
    settings = doc["settings"]
    fixed = ", ".join(f"{k} ≤ {v:g}" for k, v in doc.get("fixed", {}).items()) or "none"
    rows = [
        ["search space", f"`{doc['space']}` at resolutions {doc['resolutions']}"],
        ["device (latency)", doc.get("device") or "– (no latency table)"],
        [
            "sweep",
            f"{doc['axis']} ≤ " + ", ".join(f"{b:g}" for b in doc["budgets"]) + f" {doc['unit']}",
        ],
        ["fixed limits", fixed],
        ["accuracy predictor", f"`{doc['sources'].get('predictor', '?')}`"],
        ["latency table", f"`{doc['sources'].get('latency_table', '–')}`"],
        [
            "search",
            f"evolution, population {settings['population']}, {settings['generations']} "
            f"generations, seed {settings['seed']}",
        ],
        ["baselines run", ", ".join(settings["baselines"]) or "none"],
        ["published points", settings.get("published") or "none"],
    ]
    return "## Setup\n\n" + markdown_table(["", ""], rows)


def _commands(doc: Mapping[str, Any], command: str) -> str:
    made_by = doc.get("provenance", {}).get("command", "")
    text = f"## How this was made\n\nThe data came from:\n\n```\n{made_by}\n```"
    if command and command != made_by:
        text += f"\n\nand this report from:\n\n```\n{command}\n```"
    return text


def _figures(files: Mapping[str, Path]) -> str:
    lines = ["## Plots", ""]
    for axis in AXES:
        if axis in files:
            lines.append(f"![top-1 vs {axis}]({files[axis].name})")
            lines.append("")
    lines.append(
        "Each method has one colour and marker; its Pareto front is the step line; dashed "
        "vertical lines are the budgets of the sweep. Filled markers are predicted accuracies, "
        "hollow ones measured (published) top-1."
    )
    return "\n".join(lines)


def _best_section(doc: Mapping[str, Any], looks: Mapping[str, MethodStyle]) -> str:
    table = best_table(doc["best_at_budget"], doc["budgets"], doc["unit"], looks)
    device = f" on {doc['device']}" if doc["axis"] == "latency_ms" and doc.get("device") else ""
    return (
        f"## Best top-1 (%) within each budget\n\nThe most accurate point of each method whose "
        f"{doc['axis']}{device} is within the budget (– : none).\n\n{table}"
    )


def _hypervolume_section(doc: Mapping[str, Any], looks: Mapping[str, MethodStyle]) -> str:
    table = hypervolume_table(doc["summary"], looks)
    return (
        "## Hypervolume\n\nArea dominated by each method's points, in (cost unit × top-1 points), "
        "bounded by one reference point per axis (the largest budget or searched cost, and 1 "
        "point below the worst accuracy considered, floored). Larger is better; methods with "
        f"few points are penalised by construction.\n\n{table}"
    )


def _search_section(doc: Mapping[str, Any], points: list[ParetoPoint]) -> str:
    if not any(p.method == "evolution" and p.budget is not None for p in points):
        return ""
    table = search_table(points, "evolution", doc["unit"])
    return (
        "## Architectures found by the evolutionary search\n\n"
        "Full architectures (ks, e, d, r) are in `points.csv` and `pareto.json`.\n\n" + table
    )


def _skipped_section(doc: Mapping[str, Any]) -> str:
    if not doc.get("skipped"):
        return ""
    lines = ["## Budgets not met", ""]
    lines += [
        f"- {s['method']} at {s['budget']:g} {doc['unit']}: {s['reason']}" for s in doc["skipped"]
    ]
    return "\n".join(lines)


def _caveats(doc: Mapping[str, Any], points: list[ParetoPoint]) -> str:
    mixed = {"predicted", "measured"} <= {p.accuracy_kind for p in points}
    body = _predictor_note(doc) + (MIXED if mixed else "")
    return "## Reading this comparison\n\n" + body.strip() if body else ""


MIXED = (
    "Searched and run-baseline points carry accuracies *predicted* by the accuracy predictor "
    "and latencies *predicted* from the latency table; published points carry *measured* "
    "top-1 of trained (often fine-tuned) networks and the latency their authors report. "
    "The two are not the same quantity: compare shapes and relative positions, not "
    "absolute gaps. Published latencies are shown only on the device they were measured "
    "on; a published point without such a latency appears on the MACs plot only."
)


def _predictor_note(doc: Mapping[str, Any]) -> str:
    """What to know about OFA's published predictor, when it is the one used."""
    if not str(doc["sources"].get("predictor", "")).startswith("ofa:"):
        return ""
    note = (
        "The accuracy predictor is OFA's published ImageNet predictor. The OFA paper (§3.4) "
        "fits its predictor to the accuracies of 16K subnets measured on 10K images sampled "
        "from the ImageNet *training* set, which puts predicted levels above ImageNet "
        "validation top-1."
    )
    if doc.get("space_mismatch"):
        note += (
            f" It was trained on the `ofa_mbv3_w1.2` space (the network of OFA's tutorial); "
            f"`{doc['space']}` was searched with it anyway (`--allow-space-mismatch`): it reads "
            "the same kernel/expand/depth/resolution encoding and does not see the other "
            "channel widths."
        )
    return note + "\n\n"


def _sources_section(points: list[ParetoPoint], looks: Mapping[str, MethodStyle]) -> str:
    cited = {}
    for p in points:
        if p.kind in ("published", "external"):
            cited.setdefault((p.method, p.source), []).append(p.model or p.method)
    if not cited:
        return ""
    lines = ["## Sources of published and external points", ""]
    for (method, source), models in cited.items():
        count = f"{len(models)} point{'s' if len(models) != 1 else ''}"
        lines.append(f"- **{looks[method].label}** ({count}): {source}")
    return "\n".join(lines)


def _provenance_section(doc: Mapping[str, Any]) -> str:
    prov = doc.get("provenance", {})
    host = prov.get("host", {})
    versions = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in doc.get("timing_s", {}).items())
    rows = [
        ["created", prov.get("created", "?")],
        ["ofabench", prov.get("ofabench", "?")],
        ["python", prov.get("python", "?")],
        ["libraries", versions or "?"],
        [
            "host",
            f"{host.get('cpu', '?')}, {host.get('cores', '?')} cores, {host.get('platform', '?')}",
        ],
        ["wall time", timing or "?"],
    ]
    return "## Provenance\n\n" + markdown_table(["", ""], rows)
