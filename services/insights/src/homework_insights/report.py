"""The summary as an HTML page a therapist reads: headline numbers, a chart per series (inline SVG), barriers,
what changed, flags with their reasons. One self-contained page: no scripts, no external assets."""

from __future__ import annotations

from datetime import date, datetime
from html import escape
from typing import Any

from homework_insights.store import Doc

WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 560, 170, 44, 14, 14, 30
BETTER_WHEN_HIGHER = {"done": True, "adherence_pct": True, "quality_mean": True, "skipped": False, "missed": False}
"""Which changes read as good news (green) or bad (red); the others (due, partial) stay neutral."""

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:960px;color:#1f2933;
line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e4e7eb;
padding-bottom:.3rem}.muted{color:#616e7c}.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}
.card{border:1px solid #e4e7eb;border-radius:8px;padding:.6rem .9rem;min-width:110px}
.card b{display:block;font-size:1.4rem}.flag{border-left:4px solid #d64545;background:#fff5f5;padding:.5rem .8rem;
margin:.5rem 0;border-radius:4px}.flag code{font-size:.85rem}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e4e7eb;font-size:.92rem}
.up{color:#2f8132}.down{color:#d64545}.chart{margin:.5rem 0 1.2rem}.trend{font-size:.85rem;padding:.1rem .45rem;
border-radius:10px;background:#eef2f7;margin-left:.4rem}
"""


def render_summary(s: Doc, previous_link: str | None = None) -> str:
    """The whole page for one stored summary."""
    h = s["headline"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Pre-session summary, {escape(s['client_id'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Pre-session summary <span class='muted'>client {escape(s['client_id'])}</span></h1>",
        f"<p class='muted'>Local days {escape(s['first_day'])} to {escape(s['last_day'])} ({escape(s['timezone'])}); "
        f"generated {_when(s['generated_at'])}.</p>",
        _cards(h),
        _flags(s["flags"]),
        _changes(s.get("changes")),
        _assignments(s["assignments"]),
        _barriers(s["barriers"]),
        _series(s["series"], s.get("thresholds", [])),
        _exposure(s["exposure"]),
        _method(),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}%"


def _cards(h: dict[str, Any]) -> str:
    cards = [
        ("Adherence", _pct(h["adherence_pct"])),
        ("Due", h["due"]),
        ("Done", h["done"]),
        ("Partial", h["partial"]),
        ("Skipped", h["skipped"]),
        ("Missed", h["missed"]),
        ("Late", h["late"]),
        ("Quality (0-10)", "n/a" if h["quality_mean"] is None else f"{h['quality_mean']:g}"),
    ]
    r = h["reminders"]
    cards.append(("After a reminder", f"{r['completions_after_reminder']} of {r['occurrences_reminded']} reminded"))
    body = "".join(
        f"<div class='card'><span class='muted'>{escape(k)}</span><b>{escape(str(v))}</b></div>" for k, v in cards
    )
    return f"<h2>Headline</h2><div class='cards'>{body}</div>"


def _flags(flags: list[Doc]) -> str:
    if not flags:
        return "<h2>Flags</h2><p>No flag: nothing crossed a line worth raising.</p>"
    items = []
    for f in flags:
        figures = ", ".join(f"{escape(str(k))} = {escape(str(v))}" for k, v in f["figures"].items())
        items.append(
            f"<div class='flag'><strong>{escape(f['code'].replace('_', ' '))}</strong>: {escape(f['reason'])}"
            f"<br><code>rests on: {figures}</code></div>"
        )
    return "<h2>Flags</h2>" + "".join(items)


def _changes(changes: Doc | None) -> str:
    if not changes:
        return "<h2>Since the last summary</h2><p>This is the first summary for this client.</p>"
    rows = []
    for name, c in changes["figures"].items():
        delta = c["change"]
        better = BETTER_WHEN_HIGHER.get(name)
        cls = "" if not delta or better is None else ("up" if (delta > 0) == better else "down")
        shown = "" if delta is None else f"{delta:+g}"
        rows.append(
            f"<tr><td>{escape(name.replace('_', ' '))}</td><td>{_fmt(c['before'])}</td><td>{_fmt(c['now'])}</td>"
            f"<td class='{cls}'>{shown}</td></tr>"
        )
    new = "".join(f"<li>new: {escape(f['reason'])}</li>" for f in changes["new_flags"])
    gone = "".join(f"<li>no longer: {escape(f['reason'])}</li>" for f in changes["cleared_flags"])
    ended = _when(changes["previous_period_end"])
    return (
        f"<h2>Since the last summary</h2><p class='muted'>Previous summary ended {ended}.</p>"
        "<table><tr><th>figure</th><th>before</th><th>now</th><th>change</th></tr>"
        + "".join(rows)
        + "</table>"
        + (f"<ul>{new}{gone}</ul>" if new or gone else "<p>No flag appeared or went away.</p>")
    )


def _fmt(value: Any) -> str:
    return "n/a" if value is None else escape(f"{value:g}" if isinstance(value, float) else str(value))


def _assignments(rows: list[Doc]) -> str:
    head = (
        "<tr><th>assignment</th><th>kind</th><th>adherence</th><th>due</th><th>done</th><th>partial</th>"
        "<th>skipped</th><th>missed</th><th>quality</th><th>streak (now / best)</th></tr>"
    )
    body = "".join(
        f"<tr><td>{escape(r['title'])}<br><span class='muted'>{escape(r['state'])}</span></td>"
        f"<td>{escape(r['kind'].replace('_', ' '))}</td><td>{_pct(r['adherence_pct'])}</td><td>{r['due']}</td>"
        f"<td>{r['done']}</td><td>{r['partial']}</td><td>{r['skipped']}</td><td>{r['missed']}</td>"
        f"<td>{_fmt(r['quality_mean'])}</td><td>{r['streak']['current']} / {r['streak']['longest']}</td></tr>"
        for r in rows
    )
    return f"<h2>Assignments</h2><table>{head}{body}</table>"


def _barriers(barriers: list[Doc]) -> str:
    if not barriers:
        return "<h2>Barriers</h2><p>No occurrence was reported as not done.</p>"
    items = "".join(
        f"<tr><td>{i}</td><td>{escape(b['barrier'].replace('_', ' '))}</td><td>{b['count']}</td></tr>"
        for i, b in enumerate(barriers, 1)
    )
    return (
        f"<h2>Barriers, most frequent first</h2><table><tr><th>#</th><th>barrier</th><th>times</th></tr>{items}</table>"
    )


def _series(series: list[Doc], thresholds: list[Doc]) -> str:
    if not series:
        return "<h2>Ratings over the period</h2><p>No rating was recorded in this period.</p>"
    out = ["<h2>Ratings over the period</h2>"]
    for s in series:
        trend = f"<span class='trend'>{escape(s['trend'])}</span>" if s["trend"] else ""
        out.append(
            f"<div class='chart'><strong>{escape(s['label'])}</strong> <span class='muted'>{escape(s['title'])}; "
            f"{s['values']} values, mean {s['mean']:g}</span>{trend}"
            f"{chart(s['points'], s['scale'], s['label'], [t for t in thresholds if t['metric'] == s['metric']])}</div>"
        )
    return "".join(out)


def chart(points: list[Doc], scale: float | None, label: str, thresholds: list[Doc] | None = None) -> str:
    """An inline SVG of daily means (line and dots) with each day's range (vertical bar) and the therapist's
    thresholds on this series (dashed red lines)."""
    if not points:
        return ""
    days = [date.fromisoformat(p["date"]) for p in points]
    span = max(1, (days[-1] - days[0]).days)
    top = scale if scale is not None else max(p["max"] for p in points) or 1
    inner_w, inner_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(d: date) -> float:
        return PAD_L + ((d - days[0]).days / span) * inner_w if len(points) > 1 else PAD_L + inner_w / 2

    def y(v: float) -> float:
        return PAD_T + inner_h - (v / top) * inner_h

    bars = "".join(
        f"<line x1='{x(d):.1f}' x2='{x(d):.1f}' y1='{y(p['min']):.1f}' y2='{y(p['max']):.1f}' "
        "stroke='#9fb3c8' stroke-width='6' stroke-linecap='round'/>"
        for d, p in zip(days, points, strict=True)
    )
    line = " ".join(f"{x(d):.1f},{y(p['mean']):.1f}" for d, p in zip(days, points, strict=True))
    lines = "".join(
        f"<line x1='{PAD_L}' x2='{WIDTH - PAD_R}' y1='{y(t['value']):.1f}' y2='{y(t['value']):.1f}' stroke='#d64545' "
        f"stroke-dasharray='5,4'><title>threshold: {escape(t['direction'].replace('_', ' '))} {t['value']:g}</title>"
        "</line>"
        for t in thresholds or []
        if 0 <= t["value"] <= top
    )
    dots = "".join(
        f"<circle cx='{x(d):.1f}' cy='{y(p['mean']):.1f}' r='3.5' fill='#2680c2'><title>{p['date']}: mean "
        f"{p['mean']:g} (n={p['n']}, {p['min']:g}-{p['max']:g})</title></circle>"
        for d, p in zip(days, points, strict=True)
    )
    axis = (
        f"<line x1='{PAD_L}' y1='{PAD_T}' x2='{PAD_L}' y2='{PAD_T + inner_h}' stroke='#cbd2d9'/>"
        f"<line x1='{PAD_L}' y1='{PAD_T + inner_h}' x2='{WIDTH - PAD_R}' y2='{PAD_T + inner_h}' stroke='#cbd2d9'/>"
        f"<text x='{PAD_L - 6}' y='{PAD_T + 4}' font-size='11' text-anchor='end' fill='#616e7c'>{top:g}</text>"
        f"<text x='{PAD_L - 6}' y='{PAD_T + inner_h}' font-size='11' text-anchor='end' fill='#616e7c'>0</text>"
        f"<text x='{PAD_L}' y='{HEIGHT - 8}' font-size='11' fill='#616e7c'>{days[0].isoformat()}</text>"
        f"<text x='{WIDTH - PAD_R}' y='{HEIGHT - 8}' font-size='11' text-anchor='end' fill='#616e7c'>"
        f"{days[-1].isoformat()}</text>"
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' "
        f"role='img' aria-label='{escape(label)} per day'>{axis}{bars}"
        f"{lines}<polyline points='{line}' fill='none' stroke='#2680c2' stroke-width='2'/>{dots}</svg>"
    )


def _exposure(exposure: list[Doc]) -> str:
    if not exposure:
        return ""
    out = ["<h2>Exposure steps: SUDS per attempt</h2>"]
    for e in exposure:
        rows = "".join(
            f"<tr><td>{_when(a['at'])}</td><td>{a['before']}</td><td>{a['peak']}</td><td>{a['after']}</td>"
            f"<td>{a['peak'] - a['after']}</td><td>{a['minutes']}</td></tr>"
            for a in e["attempts"]
        )
        out.append(
            f"<p><strong>{escape(e['title'])}, step {e['step']}</strong> <span class='muted'>peak changed "
            f"{e['peak_change_across_attempts']:+d} across the attempts kept</span></p><table><tr><th>when</th>"
            f"<th>before</th><th>peak</th><th>after</th><th>drop within</th><th>minutes</th></tr>{rows}</table>"
        )
    return "".join(out)


def _method() -> str:
    return (
        "<h2>How these figures are made</h2><p class='muted'>Due: occurrences of each schedule in the client's time "
        "zone whose window closed (or that were resolved early), minus those voided by a pause, cancellation or end. "
        "Adherence = (done + partial percents / 100) / due. Trends: least-squares slope of the daily means; a label "
        "needs 5 values over 3 days, and a change under 10% of the scale is stable.</p>"
    )
