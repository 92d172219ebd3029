"""A benchmark JSON (from `vitc bench --json`, benchmarks/bench_vit.py --json, or benchmarks/results/) as an
SVG bar chart: GFLOP/s per engine, grouped by batch and threads, the ceiling of each thread count dashed.

    python benchmarks/chart.py benchmarks/results/vit_b16_2026-11-26.json docs/img/speed_vit_b16.svg

The same drawing as `vitc bench --chart OUT.svg` (vitc.bench.chart); no plotting library needed.
"""
import argparse
import json
import sys

try:
    from vitc.bench.chart import write_chart
except ImportError as exc:
    sys.exit(f"chart.py needs vitc installed ({exc}): pip install .")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", help="benchmark JSON")
    p.add_argument("out", help="SVG file to write")
    p.add_argument("--title", help="chart title (default: the report's title, or model and dtype)")
    args = p.parse_args(argv)
    with open(args.report) as f:
        report = json.load(f)
    write_chart(report, args.out, args.title)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
