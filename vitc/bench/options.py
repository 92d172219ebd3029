"""Command-line options of the benchmark, shared by `vitc bench` and benchmarks/bench_vit.py, and the
function both call with the parsed options."""
import argparse
import os
import sys

from .checkpoint import DEFAULT_CACHE
from .engines import DTYPES, ENGINES, GROUPS, expand

ALL_PEERS = "torch,onnxruntime,openvino"


def _names(text):
    return [n.strip() for n in text.split(",") if n.strip()]


def add_options(p, memory_default=False):
    """The options after --model; `--compare` lists peers beside vitc (comma-separated)."""
    p.add_argument("--compare", default="", metavar="PEERS",
                   help=f"peers timed beside vitc, comma-separated: {', '.join(e for e in ENGINES if e != 'vitc')}; "
                        f"groups " + ", ".join(f"{g}={'+'.join(e)}" for g, e in GROUPS.items())
                        + f" (e.g. {ALL_PEERS})")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="float32: every engine in f32; bfloat16: PyTorch bf16 autocast, OpenVINO default "
                        "precision; int8: ONNX Runtime dynamic int8 (default float32)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="thread counts (default: 1 and all usable CPUs)")
    p.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                   help="input side in pixels (default: the config's image_size; DINOv2 configs say 518, their "
                        "processor crops 224)")
    p.add_argument("--rounds", "--repeats", type=int, default=10,
                   help="timed round-robin rounds per cell, at most (default 10)")
    p.add_argument("--min-rounds", type=int, default=3, help="rounds per cell even past --cell-budget (default 3)")
    p.add_argument("--cell-budget", type=float, default=90.0, metavar="SECONDS",
                   help="end a cell's rounds (after --min-rounds) when the next would end past this many seconds; "
                        "0: always --rounds (default 90)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per engine per cell (default 1)")
    p.add_argument("--gap-ms", type=float, default=10.0,
                   help="idle pause before each timed call so the previous engine's spinning threads sleep")
    p.add_argument("--tol", type=float, default=None,
                   help="max max|d|/max|ref| against the reference (default 1e-3 float32, 0.1 bfloat16, 0.3 int8)")
    p.add_argument("--seed", type=int, default=0, help="input seed")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE),
                   help="ONNX exports cache (default ~/.cache/vitc-bench or $VITC_BENCH_CACHE)")
    p.add_argument("--ov-shape", choices=["static", "dynamic"], default="static",
                   help="OpenVINO: compile per batch size (static, default) or once with a dynamic batch")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=memory_default,
                   help="cold start and peak RSS per engine, each in a fresh process")
    p.add_argument("--json", metavar="PATH", help="every number and setting, written whole at the end")
    p.add_argument("--markdown", action="store_true", help="also print README-ready markdown tables")
    p.add_argument("--chart", metavar="OUT.svg", help="SVG bar chart of GFLOP/s per engine, batch and threads")


def check(args, error):
    """Validate and complete parsed options; error(message) reports a bad command line."""
    from .runner import finish_args

    for name in ("batch", "threads"):
        values = getattr(args, name) or [1]
        if min(values) < 1:
            error(f"--{name} must be >= 1, got {min(values)}")
    if args.image_size is not None and args.image_size < 1:
        error(f"--image-size must be >= 1, got {args.image_size}")
    if args.rounds < 1 or args.min_rounds < 1:
        error("--rounds and --min-rounds must be >= 1")
    try:
        args.engines = expand(["vitc"] + _names(args.compare))
    except ValueError as exc:
        error(str(exc))
    for path, what in ((args.json, "--json"), (args.chart, "--chart")):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            error(f"{what} {path}: folder {os.path.dirname(os.path.abspath(path))} does not exist")
    return finish_args(args)


def run(args):
    """Run, print, then write --json / --chart whole. Exit status 0; 1 for a failed run; 130 on Ctrl-C
    (nothing written)."""
    from . import report
    from .runner import BenchmarkError, run as run_benchmark

    try:
        result = run_benchmark(args, print_fn=lambda text: print(text, flush=True))
        if args.markdown:
            print("\n" + report.markdown(result), flush=True)
        if args.chart:
            from .chart import write_chart

            write_chart(result, args.chart)
            print(f"wrote {args.chart}", file=sys.stderr)
        if args.json:
            report.write_json(result, args.json)
            print(f"wrote {args.json}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nvitc bench: interrupted; no file written", file=sys.stderr)
        return 130
    except (BenchmarkError, OSError, ValueError) as exc:  # a wrong model path / id: one line, no traceback
        print(f"vitc bench: error: {exc}", file=sys.stderr)
        return 1
    return 0
