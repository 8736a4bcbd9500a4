"""Reports of accuracy-cost comparisons: matplotlib plots (Agg, PNG at print resolution), a
CSV of every point and a Markdown summary, written from a pareto document
(:func:`ofabench.search.sweep.pareto_sweep`). Computing lives in :mod:`ofabench.search`."""

from __future__ import annotations

from .plots import plot_accuracy_vs
from .writer import summary_markdown, write_report

__all__ = ["plot_accuracy_vs", "summary_markdown", "write_report"]
