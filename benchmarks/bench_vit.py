"""End-to-end ViT inference: vitc beside PyTorch (transformers, eager and sdpa attention), ONNX Runtime and
OpenVINO, in one process, on a random checkpoint with ViT-B/16 (or S/16, Ti/16) shapes.

    pip install ".[bench]"
    python benchmarks/bench_vit.py --model b16 --batch 1 8 --threads 1 2 --json out.json --markdown

A thin script over the installed package: the method, the engines and the tables are vitc.bench's, the same
as `vitc bench --model FOLDER --compare torch,onnxruntime,openvino`; this script only builds the random
checkpoint (cached in ~/.cache/vitc-bench/<model>) and changes some defaults (batch 1 8, all peers, memory
measured). See benchmarks/README.md.
"""
import argparse
import sys

try:
    from vitc.bench.checkpoint import RANDOM_SPECS, build_random_checkpoint
    from vitc.bench.options import ALL_PEERS, add_options, check, run
except ImportError as exc:
    sys.exit(f"bench_vit.py needs vitc installed with its benchmark peers ({exc}): pip install \".[bench]\"")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="b16",
                   help=f"{'/'.join(RANDOM_SPECS)}: random checkpoint with those shapes (b16 = "
                        f"google/vit-base-patch16-224), built once; or a checkpoint folder / Hub id (default b16)")
    add_options(p, memory_default=True)
    p.set_defaults(batch=[1, 8], compare=ALL_PEERS)
    args = p.parse_args(argv)
    if args.model in RANDOM_SPECS:
        args.model = str(build_random_checkpoint(args.model, args.cache_dir, args.seed,
                                                 log=lambda m: print(m, file=sys.stderr)))
    check(args, p.error)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
