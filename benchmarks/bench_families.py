"""The image towers people embed with, vitc beside PyTorch (eager, sdpa), ONNX Runtime and OpenVINO, one command:
random checkpoints with the shapes of openai/clip-vit-base-patch32 (image_embeds), google/siglip-base-patch16-224
(pooler_output), facebook/dinov2-small and -base at 224 (pooler_output), built with transformers into the
cache folder once, then `vitc bench` on each (the same method, engines and output checks: vitc/bench/).

    pip install ".[bench]"
    python benchmarks/bench_families.py                        # float32, batch 1 8, 2 threads, every peer
    python benchmarks/bench_families.py --dtype bfloat16       # peers in their fast modes (see vitc bench --help)
    python benchmarks/bench_families.py --models clip-b32 --rounds 3 --json out.json

Ends with one markdown table: ms/image per engine and family, and the fastest peer's time / vitc's.
"""
import argparse
import sys

try:
    from vitc.bench.checkpoint import FAMILY_SPECS, build_random_checkpoint
    from vitc.bench.options import ALL_PEERS, add_options, check
    from vitc.bench.report import write_json
    from vitc.bench.runner import BenchmarkError, run
except ImportError as exc:
    sys.exit(f"bench_families.py needs vitc installed with its benchmark peers ({exc}): pip install \".[bench]\"")

PEERS = ("torch-eager", "torch-sdpa", "onnxruntime", "openvino")


def summary(reports):
    """One markdown row per (family, batch, threads): ms/image of each engine, best peer / vitc."""
    dtype = reports[0][1]["dtype"]
    md = [f"| model ({dtype}) | output | batch | threads | vitc | " + " | ".join(PEERS)
          + " | fastest peer / vitc |", "|---|---|---:|---:|" + "---:|" * (len(PEERS) + 2)]
    for name, r in reports:
        for cell in r["cells"]:
            res = cell["results"]
            vitc = res.get("vitc")
            peers = {p: res[p]["ms_per_image"] for p in PEERS if p in res}
            best = min(peers, key=peers.get) if peers else None
            ratio = f"{peers[best] / vitc['ms_per_image']:.2f} ({best})" if best and vitc else "-"
            md.append(f"| {name} | {r['output']} | {cell['batch']} | {cell['threads']} | "
                      + (f"{vitc['ms_per_image']:.2f}" if vitc else "-") + " | "
                      + " | ".join(f"{peers[p]:.2f}" if p in peers else "-" for p in PEERS) + f" | {ratio} |")
    load = [f"{x:.1f}" for r in (rep for _, rep in reports) for x in r["machine"]["loadavg"][:1]]
    md.append(f"\nms per image, median of round-robin rounds; load average at each model's start: {', '.join(load)}")
    return "\n".join(md)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(FAMILY_SPECS), choices=list(FAMILY_SPECS),
                   help="random checkpoints to time (default: all)")
    add_options(p)
    p.set_defaults(batch=[1, 8], threads=[2], compare=ALL_PEERS, model=None)
    args = p.parse_args(argv)
    if args.chart:
        p.error("--chart: one chart per model: run `vitc bench --model <cache>/<name> --chart ...` instead")
    json_path, args.json = args.json, None
    check(args, p.error)
    reports = []
    for name in args.models:
        args.model = str(build_random_checkpoint(name, args.cache_dir, args.seed,
                                                 log=lambda m: print(m, file=sys.stderr)))
        args.image_size = FAMILY_SPECS[name][2]
        try:
            reports.append((name, run(args, print_fn=lambda text: print(text, flush=True))))
        except BenchmarkError as exc:
            print(f"bench_families: {name}: {exc}", file=sys.stderr)
            return 1
        if json_path:  # rewritten whole after each model: a long run stopped midway keeps what it measured
            write_json({name: r for name, r in reports}, json_path)
    print("\n" + summary(reports), flush=True)
    if json_path:
        print(f"wrote {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
