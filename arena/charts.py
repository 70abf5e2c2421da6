"""Server-side SVG charts (no JavaScript, no CDN)."""

from __future__ import annotations

from django.utils.html import escape


def ratings_chart(rows: list[dict], *, width: int = 640) -> str:
    """Bradley–Terry ratings as dots with 95 % interval whiskers, best on top."""
    rows = [r for r in rows if r.get("bt") is not None]
    if not rows:
        return ""
    lows = [r["bt_low"] if r["bt_low"] is not None else r["bt"] for r in rows]
    highs = [r["bt_high"] if r["bt_high"] is not None else r["bt"] for r in rows]
    lo, hi = min(lows), max(highs)
    pad = max(10.0, (hi - lo) * 0.08)
    lo, hi = lo - pad, hi + pad
    label_w, row_h, top = 170, 26, 24
    plot_w = width - label_w - 20
    height = top + row_h * len(rows) + 10

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    parts = [
        f'<svg class="chart" role="img" aria-label="Ratings with 95% intervals" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" xmlns="http://www.w3.org/2000/svg" font-size="12" font-family="system-ui, sans-serif">'
    ]
    step = _nice_step(hi - lo)
    t = (lo // step + 1) * step
    while t < hi:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 6}" y2="{height - 6}" stroke="#e3e6eb"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{top - 10}" text-anchor="middle" fill="#667085">{t:.0f}</text>')
        t += step
    for k, (r, l, h) in enumerate(zip(rows, lows, highs)):
        y = top + k * row_h + row_h / 2
        parts.append(f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(r["name"])}</text>')
        parts.append(f'<line x1="{x(l):.1f}" x2="{x(h):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#2f5bea" stroke-width="2"/>')
        for v in (l, h):
            parts.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}" stroke="#2f5bea" stroke-width="2"/>')
        parts.append(
            f'<circle cx="{x(r["bt"]):.1f}" cy="{y:.1f}" r="4.5" fill="#1d2330"><title>{escape(r["name"])}: '
            f'{r["bt"]:.1f} [{l:.1f}, {h:.1f}]</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def heatmap(names: list[str], matrix: list[list[float | None]], counts: list[list[float]] | None = None, *, title: str = "") -> str:
    """Row-vs-column win rates: blue where the row generator wins, red where it loses."""
    n = len(names)
    if n == 0:
        return ""
    cell, label_w, top = 34, 150, 110
    width, height = label_w + cell * n + 110, top + cell * n + 10
    parts = [
        f'<svg class="chart heatmap" role="img" aria-label="{escape(title or "Win-rate matrix")}" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="system-ui, sans-serif">'
    ]
    for j, name in enumerate(names):
        cx = label_w + j * cell + cell / 2
        parts.append(f'<text transform="translate({cx:.1f},{top - 6}) rotate(-45)">{escape(name)}</text>')
    for i, name in enumerate(names):
        y = top + i * cell
        parts.append(f'<text x="{label_w - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end">{escape(name)}</text>')
        for j in range(n):
            v = matrix[i][j] if i != j else None
            x0 = label_w + j * cell
            if v is None:
                parts.append(f'<rect x="{x0}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="#f1f2f4"/>')
                continue
            parts.append(
                f'<rect x="{x0}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{_diverging(v)}">'
                f'<title>{escape(names[i])} vs {escape(names[j])}: {v:.2f}'
                + (f" over {int(counts[i][j])} votes" if counts else "")
                + "</title></rect>"
            )
            parts.append(
                f'<text x="{x0 + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                f'fill="{"#fff" if abs(v - 0.5) > 0.3 else "#1d2330"}">{v:.2f}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def scatter(points: list[tuple[str, float, float]], *, x_label: str, y_label: str, width: int = 420, height: int = 300) -> str:
    """A labelled scatter plot (metric against human rating)."""
    pts = [(n, x, y) for n, x, y in points if x is not None and y is not None]
    if len(pts) < 2:
        return ""
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    left, bottom, right, top = 56, 40, 16, 14
    pw, ph = width - left - right, height - top - bottom

    def px(v):
        return left + (v - x0) / (x1 - x0) * pw

    def py(v):
        return top + ph - (v - y0) / (y1 - y0) * ph

    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(y_label)} against {escape(x_label)}" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="system-ui, sans-serif">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#e3e6eb"/>',
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle" fill="#667085">{escape(x_label)}</text>',
        f'<text transform="translate(14,{top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#667085">{escape(y_label)}</text>',
        f'<text x="{left}" y="{height - 24}" fill="#667085">{x0:.3g}</text>',
        f'<text x="{left + pw}" y="{height - 24}" text-anchor="end" fill="#667085">{x1:.3g}</text>',
        f'<text x="{left - 4}" y="{top + ph}" text-anchor="end" fill="#667085">{y0:.0f}</text>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" fill="#667085">{y1:.0f}</text>',
    ]
    for name, x, y in pts:
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="#2f5bea"><title>{escape(name)}</title></circle>')
        parts.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 6:.1f}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _diverging(v: float) -> str:
    v = max(0.0, min(1.0, v))
    if v >= 0.5:
        t = (v - 0.5) * 2
        r, g, b = (int(247 + (47 - 247) * t), int(247 + (91 - 247) * t), int(247 + (234 - 247) * t))
    else:
        t = (0.5 - v) * 2
        r, g, b = (int(247 + (198 - 247) * t), int(247 + (40 - 247) * t), int(247 + (40 - 247) * t))
    return f"#{r:02x}{g:02x}{b:02x}"


def _nice_step(span: float) -> float:
    for s in (5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if span / s <= 8:
            return float(s)
    return 2000.0


SERIES_COLOURS = ("#2f5bea", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#1d2330")


def votes_over_time_chart(series: dict[str, list[tuple]], *, width: int = 640, height: int = 220,
                          bucket_seconds: float = 3600.0) -> str:
    """Cumulative votes per series (kind · criterion) as step lines over time, with a legend."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    times = sorted({t for pts in series.values() for t, _ in pts})
    t0, t1 = times[0].timestamp(), times[-1].timestamp()
    # The last bucket gets its own width, so a single bucket is still a visible step.
    t1 += max(bucket_seconds, (t1 - t0) / 20)
    totals = {k: sum(n for _, n in pts) for k, pts in series.items()}
    top_n = max(totals.values())
    left, right, top = 48, 12, 12
    legend_h = 18 * len(series)
    plot_h = height - top - 28
    full_h = height + legend_h

    def x(ts: float) -> float:
        return left + (ts - t0) / (t1 - t0) * (width - left - right)

    def y(n: float) -> float:
        return top + plot_h - n / top_n * plot_h

    parts = [
        f'<svg class="chart" role="img" aria-label="Votes over time" viewBox="0 0 {width} {full_h}" width="100%" '
        f'style="max-width:{width}px" xmlns="http://www.w3.org/2000/svg" font-size="12" font-family="system-ui, sans-serif">'
    ]
    step = _nice_step(top_n) if top_n > 8 else 1.0
    t = 0.0
    while t <= top_n:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e3e6eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" fill="#667085">{t:.0f}</text>')
        t += step
    for ts, anchor in ((times[0], "start"), (times[-1], "end")):
        px = left if anchor == "start" else width - right
        parts.append(f'<text x="{px:.1f}" y="{top + plot_h + 18}" text-anchor="{anchor}" fill="#667085">'
                     f'{"from" if anchor == "start" else "last"} {ts:%Y-%m-%d %H:%M}</text>')
    for k, (name, pts) in enumerate(sorted(series.items())):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        total, path = 0, []
        for ts, n in pts:
            px = x(ts.timestamp())
            path.append(f"{'M' if not path else 'L'}{px:.1f},{y(total):.1f}")
            total += n
            path.append(f"L{px:.1f},{y(total):.1f}")
        path.append(f"L{width - right:.1f},{y(total):.1f}")
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2"><title>{escape(name)}: {total}</title></path>')
        ly = height + 18 * k + 6
        parts.append(f'<rect x="{left}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{left + 18}" y="{ly + 1}">{escape(name)}: {total}</text>')
    parts.append("</svg>")
    return "".join(parts)
