"""The dashboard's figures and its chart: applications by outcome per month, drawn on the server
as SVG (no script, no external library), with the same numbers in a table beside it."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from ptsp_gate.stores.coverage import OUTCOMES
from ptsp_gate_officer_console.i18n import translator

WIDTH, HEIGHT, PAD = 720, 260, 36


def monthly(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The regions' rows summed per month, oldest first."""
    months: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        bucket = months[row["period"]]
        for outcome in OUTCOMES:
            bucket[outcome] += row[f"applications_{outcome.lower()}"]
        bucket["flagged"] += row["employers_flagged"]
        bucket["cleared"] += row["cleared"]
    return [{"period": p, **months[p]} for p in sorted(months)]


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    applications = {o: sum(r[f"applications_{o.lower()}"] for r in rows) for o in OUTCOMES}
    episodes = sum(r["flag_episodes"] for r in rows)
    cleared = sum(r["cleared"] for r in rows)
    return {
        "applications": applications,
        "flagged": sum(r["employers_flagged"] for r in rows),
        "episodes": episodes,
        "cleared": cleared,
        "conversion": cleared / episodes if episodes else None,
    }


def by_month(rows: list[dict[str, Any]], language: str) -> Markup:
    """A stacked bar per month of applications by outcome."""
    t = translator(language)
    months = monthly(rows)
    top = max((sum(m[o] for o in OUTCOMES) for m in months), default=0) or 1
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / max(len(months), 1)
    bar = step * 0.7
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-labelledby="chart-title" class="chart">',
        f'<title id="chart-title">{escape(t("applications_by_month"))}</title>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"'
        ' class="axis"/>',
        f'<text x="{PAD - 4}" y="{PAD}" class="tick" text-anchor="end">{top}</text>',
    ]
    for i, month in enumerate(months):
        x = PAD + i * step + (step - bar) / 2
        y = HEIGHT - PAD
        for outcome in OUTCOMES:
            h = inner_h * month[outcome] / top
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                    f' class="bar {outcome.lower()}"><title>{escape(t(outcome))}:'
                    f" {month[outcome]}</title></rect>"
                )
        label = month["period"].strftime("%m/%y")
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - PAD + 14}" class="tick"'
            f' text-anchor="middle">{label}</text>'
        )
    for j, outcome in enumerate(OUTCOMES):
        lx = PAD + j * 140
        parts.append(
            f'<rect x="{lx}" y="6" width="12" height="12" class="bar {outcome.lower()}"/>'
            f'<text x="{lx + 16}" y="16" class="legend">{escape(t(outcome))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
