"""Server-side SVG for the quality profile (no JavaScript, no CDN)."""

from __future__ import annotations

from django.utils.html import escape


def profile_chart(name: str, axes: list[str], values: list[float | None], *, width: int = 340) -> str:
    """One generator's profile: a bar per axis, 0 (worst generator of the study) to 1 (best),
    the axis label (with its source) above each bar; missing values say so."""
    row_h, top, left, right = 34, 8, 8, 44
    plot_w = width - left - right
    height = top + row_h * len(axes) + 6
    parts = [
        f'<svg class="profile" role="img" aria-label="Quality profile of {escape(name)}" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" xmlns="http://www.w3.org/2000/svg" font-size="12" '
        'font-family="system-ui, sans-serif">'
    ]
    for k, (axis, v) in enumerate(zip(axes, values)):
        y = top + k * row_h
        parts.append(f'<text x="{left}" y="{y + 11}" fill="#344054">{escape(axis)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 16}" width="{plot_w}" height="10" rx="3" fill="#eef1f5"/>')
        if v is None:
            parts.append(f'<text x="{left + plot_w + 6}" y="{y + 25}" fill="#98a2b3">n/a</text>')
            continue
        w = max(0.0, min(1.0, v)) * plot_w
        parts.append(f'<rect x="{left}" y="{y + 16}" width="{w:.1f}" height="10" rx="3" fill="#2f5bea"><title>{v:.2f}</title></rect>')
        parts.append(f'<text x="{left + plot_w + 6}" y="{y + 25}" fill="#344054">{v:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)
