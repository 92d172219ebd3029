"""Text and markdown tables of a benchmark report, and its JSON written whole (temp file + rename)."""
import json
import os
import tempfile

MIB = 1024 * 1024


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def header(r):
    m, v = r["machine"], r["machine"]["versions"]
    peak = r["peak"].get(1) or next(iter(r["peak"].values()), None)
    lines = [f"vitc bench: {r['model']} ({r['architecture']}), {r['dtype']}; output timed and checked: "
             f"{r['output']}, input {'x'.join(map(str, r['image_size']))}",
             f"model     {r['checkpoint']}; {r['flops_per_image'] / 1e9:.3f} GFLOP/image "
             f"(GEMMs + attention, 2*MACs); weights {r['weight_bytes'] / MIB:.1f} MiB",
             f"cpu       {m['cpu']}; {m['logical_cpus']} logical CPUs, {m['usable_cpus']} usable; "
             f"{' '.join(m['cpu_flags'])}",
             f"peak      " + (f"{peak['per_core_gflops']:.0f} GFLOP/s per core for {r['dtype']}, {peak['how']}"
                              if peak else "unknown (the OS reports no CPU frequency): % of peak left empty"),
             f"software  python {m['python']}, " + ", ".join(f"{k} {v[k]}" for k in v if v[k]),
             f"vitc      {r['vitc']['path']}; isa {r['vitc']['isa']} (available "
             f"{', '.join(r['vitc']['isa_available'])}), thread pool {r['vitc']['thread_pool']}",
             f"load      {' '.join(f'{x:.2f}' for x in m['loadavg'])} (1/5/15 min load average; above "
             f"{m['usable_cpus']} other processes share the CPUs and numbers get noisy: read the spread)",
             f"run       batch {r['batch']}; threads {r['threads']}; {r['warmup']} warm-up + "
             f"{r['min_rounds']}..{r['rounds']} shuffled round-robin rounds (cell budget {r['cell_budget_s']:g} s), "
             f"{r['gap_ms']:g} ms pause before each call"]
    for name in r["engines"]:
        lines.append(f"engine    {name:<12} {r['modes'][name]}")
    for name, why in r["skipped"].items():
        lines.append(f"skipped   {name:<12} {why}")
    if m["env"]:
        lines.append("env       " + " ".join(f"{k}={val}" for k, val in m["env"].items()))
    return "\n".join(lines)


def cell_table(r, cell):
    batch = cell["batch"]
    lines = [f"\n== batch {batch}, {cell['threads']} threads ({r['flops_per_image'] * batch / 1e9:.2f} GFLOP per "
             f"call; median of {cell['rounds']} rounds) ==",
             f"{'engine':<12} {'ms/image':>9} {'GFLOP/s':>8} {'% peak':>7} {'median ms':>10} {'min ms':>9} "
             f"{'spread':>7} {'time/vitc':>9}  max|d|/max|ref| vs {cell['reference']}"]
    for name, s in cell["results"].items():
        lines.append(f"{name:<12} {s['ms_per_image']:>9.2f} {s['gflops']:>8.1f} "
                     f"{_fmt(s['peak_fraction'] and 100 * s['peak_fraction'], '>6.1f')}% {s['median_ms']:>10.2f} "
                     f"{s['min_ms']:>9.2f} {s['spread']:>6.1%} {_fmt(s['time_over_vitc'], '>9.2f')}  "
                     f"{s['rel_err']:.2e}")
    return "\n".join(lines)


def summary_table(r):
    cells = r["cells"]
    cols = [f"b{c['batch']}/t{c['threads']}" for c in cells]
    lines = ["\n== summary: ms per image (time / vitc) ==",
             f"{'engine':<12} " + " ".join(f"{c:>16}" for c in cols)]
    for name in r["engines"]:
        row = []
        for c in cells:
            s = c["results"][name]
            ratio = f" ({s['time_over_vitc']:.2f})" if s["time_over_vitc"] is not None else ""
            row.append(f"{s['ms_per_image']:.2f}{ratio}".rjust(16))
        lines.append(f"{name:<12} " + " ".join(row))
    for name, why in r["skipped"].items():
        lines.append(f"{name:<12} skipped: {why}")
    lines.append(f"total {r['total_wall_s']:.0f} s; load average at the end "
                 + " ".join(f"{x:.2f}" for x in r["loadavg_end"]))
    return "\n".join(lines)


def memory_table(r):
    wb = r["weight_bytes"]
    lines = [f"\n== fresh process per engine: import, load, run batch 1 once "
             f"(threads {max(r['threads'])}; weights {wb / MIB:.1f} MiB) ==",
             f"{'engine':<12} {'peak RSS MiB':>12} {'RSS/weights':>11} {'after import':>12} {'import s':>9} "
             f"{'load s':>7} {'1st run s':>9} {'to output s':>11} {'err':>9}"]
    for name, m in r["memory"].items():
        lines.append(f"{name:<12} {m['peak_rss'] / MIB:>12.1f} {m['peak_rss'] / wb:>11.2f} "
                     f"{m['peak_rss_after_import'] / MIB:>12.1f} {m['import_s']:>9.2f} {m['load_s']:>7.2f} "
                     f"{m['first_run_s']:>9.2f} {m['wall_to_logits_s']:>11.2f} {m['err_vs_reference']:>9.2e}")
    return "\n".join(lines)


def markdown(r):
    md = ["| batch | threads | engine | ms/image | GFLOP/s | % of peak | spread | time / vitc |",
          "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for cell in r["cells"]:
        for name, s in cell["results"].items():
            md.append(f"| {cell['batch']} | {cell['threads']} | {r['modes'][name]} | {s['ms_per_image']:.2f} | "
                      f"{s['gflops']:.1f} | {_fmt(s['peak_fraction'] and 100 * s['peak_fraction'], '.1f')} | "
                      f"{s['spread']:.1%} | {_fmt(s['time_over_vitc'], '.2f')} |")
    if r.get("memory"):
        md += ["", "| engine | peak RSS MiB | RSS / weights | cold start s (spawn to output) |", "|---|---:|---:|---:|"]
        for name, m in r["memory"].items():
            md.append(f"| {r['modes'][name]} | {m['peak_rss'] / MIB:.0f} | {m['peak_rss'] / r['weight_bytes']:.2f} | "
                      f"{m['wall_to_logits_s']:.2f} |")
    m = r["machine"]
    md += ["", f"{r['model']} {r['dtype']}, {m['cpu']} ({m['usable_cpus']} CPUs, load {m['loadavg'][0]:.2f}), "
               f"median of {'/'.join(sorted({str(c['rounds']) for c in r['cells']}))} round-robin rounds; "
               + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)]
    return "\n".join(md)


def write_json(report, path):
    """The whole report or nothing: written to a temporary file in the same folder, then renamed over
    `path`, so an interrupted run (Ctrl-C, kill, full disk) never leaves a partial JSON."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".vitc-bench-", suffix=".json.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
