"""A benchmark report (the --json of `vitc bench` or benchmarks/bench_vit.py) as an SVG bar chart: GFLOP/s
per engine, grouped by (batch, threads), with the ceiling of each thread count marked by a dashed line.
Hand-written SVG: no plotting library at run time.

The ceiling is report["ceiling"] when present ({"label": ..., "gflops": {threads: value}}), else this CPU's
estimated peak for the report's dtype (report["peak"]).
"""
import os
from xml.sax.saxutils import escape

COLORS = ["#1b5e9e", "#e07b39", "#f2b134", "#5aa469", "#8e6bbf", "#c0504d", "#4bacc6", "#7f7f7f"]
W, H = 760, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 44, 80


def _ceilings(report):
    """(label, {threads: GFLOP/s}) or (None, {})."""
    if report.get("ceiling"):
        c = report["ceiling"]
        return c["label"], {int(t): float(v) for t, v in c["gflops"].items()}
    peaks = {int(t): p["gflops"] for t, p in (report.get("peak") or {}).items() if p}
    return (f"estimated {report.get('dtype', 'float32')} peak" if peaks else None), peaks


def _nice_step(top):
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if top / step <= 8:
            return step
    return 10 ** len(str(int(top)))


def _label(report, name):
    return (report.get("labels") or {}).get(name) or (report.get("modes") or {}).get(name) or name


def svg(report, title=None):
    cells = report["cells"]
    engines = list(report["engines"])
    ceiling_label, ceilings = _ceilings(report)
    best = max((s["gflops"] for c in cells for s in c["results"].values()), default=1.0)
    shown = {t: g for t, g in ceilings.items() if g <= 2.5 * best}  # a far-off peak would flatten every bar
    top = max([best] + list(shown.values())) * 1.12
    step = _nice_step(top)
    top = step * -(-top // step)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    y = lambda v: TOP + plot_h * (1 - v / top)  # noqa: E731
    group_w = plot_w / max(len(cells), 1)
    bar_w = min(34.0, 0.8 * group_w / max(len(engines), 1))
    title = title or report.get("title") or (
        f"{os.path.basename(str(report.get('model', '')).rstrip('/'))}, {report.get('dtype', 'float32')}: "
        f"GFLOP/s (higher is better)")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
           f'<text x="{W / 2:.1f}" y="22" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>']
    v = 0
    while v <= top + 1e-9:  # horizontal grid and y labels
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#444">{v:g}</text>')
        v += step
    out.append(f'<text x="16" y="{TOP + plot_h / 2:.1f}" transform="rotate(-90 16 {TOP + plot_h / 2:.1f})" '
               f'text-anchor="middle" fill="#444">GFLOP/s</text>')
    for i, cell in enumerate(cells):
        x0 = LEFT + i * group_w
        names = [n for n in engines if n in cell["results"]]
        start = x0 + (group_w - bar_w * len(names)) / 2
        for j, name in enumerate(names):
            s = cell["results"][name]
            bx, by = start + j * bar_w, y(s["gflops"])
            color = COLORS[engines.index(name) % len(COLORS)]
            out.append(f'<rect x="{bx + 1:.1f}" y="{by:.1f}" width="{bar_w - 2:.1f}" height="{TOP + plot_h - by:.1f}" '
                       f'fill="{color}"><title>{escape(_label(report, name))}: {s["gflops"]:.1f} GFLOP/s, '
                       f'{s["ms_per_image"]:.2f} ms/image</title></rect>')
            inside = TOP + plot_h - by > 16  # the value inside the bar's top: clear of the ceiling line
            out.append(f'<text x="{bx + bar_w / 2:.1f}" y="{by + 12 if inside else by - 3:.1f}" '
                       f'text-anchor="middle" font-size="9" fill="{"#fff" if inside else "#333"}">'
                       f'{s["gflops"]:.0f}</text>')
        ceiling = shown.get(int(cell["threads"]))
        if ceiling:
            out.append(f'<line x1="{x0 + 4:.1f}" x2="{x0 + group_w - 4:.1f}" y1="{y(ceiling):.1f}" '
                       f'y2="{y(ceiling):.1f}" stroke="#c00000" stroke-width="1.5" stroke-dasharray="5 3"/>')
            out.append(f'<text x="{x0 + group_w - 4:.1f}" y="{y(ceiling) - 3:.1f}" text-anchor="end" font-size="9" '
                       f'fill="#c00000">{ceiling:.0f}</text>')
        out.append(f'<text x="{x0 + group_w / 2:.1f}" y="{TOP + plot_h + 16:.1f}" text-anchor="middle">'
                   f'batch {cell["batch"]}, {cell["threads"]} thread{"s" if cell["threads"] != 1 else ""}</text>')
    out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#444"/>')
    legend = [(COLORS[k % len(COLORS)], _label(report, n), False) for k, n in enumerate(engines)]
    if ceiling_label and shown:
        legend.append(("#c00000", ceiling_label, True))
    far = {t: g for t, g in ceilings.items() if t not in shown}
    if far:
        legend.append(("#c00000", f"{ceiling_label} off scale: "
                       + ", ".join(f"{g:.0f} at {t} threads" for t, g in sorted(far.items())), True))
    lx, ly = LEFT, TOP + plot_h + 36
    for color, text, dashed in legend:
        width = 16 + 6.8 * len(text) + 18
        if lx + width > W - RIGHT:
            lx, ly = LEFT, ly + 18
        if dashed:
            out.append(f'<line x1="{lx}" x2="{lx + 14}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" '
                       f'stroke-width="1.5" stroke-dasharray="5 3"/>')
        else:
            out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{lx + 18}" y="{ly}">{escape(text)}</text>')
        lx += width
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_chart(report, path, title=None):
    """Written whole: temporary file in the same folder, then renamed."""
    text = svg(report, title)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
