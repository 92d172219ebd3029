"""`vitc explain` vs `vitc classify` on the same photos, each a fresh process (import + load + decode +
forward [+ maps, overlays and PNGs]), with a random-weight ViT-B/16 (google/vit-base-patch16-224 shapes,
built once with transformers save_pretrained: vitc.bench.checkpoint). Goal: explain <= 1.5 x classify.

Photos: the JPEGs in /work/shared/photos (if present), topped up to --photos with synthetic 1024x768 JPEGs.
Runs alternate classify / explain (the order flips each round) so load from other processes hits both; the
report gives each round's ratio and the median ratio.

    PYTHONPATH=. python benchmarks/bench_explain.py [--rounds 5] [--photos 10] [--threads 2] [-- extra explain args]
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_preprocess import write_jpegs  # noqa: E402
from vitc.bench.checkpoint import build_random_checkpoint  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PHOTOS = "/work/shared/photos"


def gather_photos(folder, count):
    real = sorted(p for p in glob.glob(os.path.join(PHOTOS, "*")) if p.lower().endswith((".jpg", ".jpeg")))
    for path in real[:count]:
        shutil.copy(path, folder)
    if len(real) < count:
        write_jpegs(folder, count - len(real), 1024, 768)
    return sorted(os.listdir(folder))


def timed(argv, env):
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="vitc --threads (default: all cores)")
    parser.add_argument("extra", nargs="*", help="more `vitc explain` arguments (after --), e.g. --grid")
    args = parser.parse_args()

    model = str(build_random_checkpoint("b16"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory() as tmp:
        photos, out = os.path.join(tmp, "photos"), os.path.join(tmp, "out")
        os.makedirs(photos)
        names = gather_photos(photos, args.photos)
        common = ["--model", model] + (["--threads", str(args.threads)] if args.threads else [])
        commands = {
            "classify": [sys.executable, "-m", "vitc.cli", "classify", photos] + common,
            "explain": [sys.executable, "-m", "vitc.cli", "explain", photos, "--out", out] + common + args.extra,
        }
        print(f"{len(names)} photos ({', '.join(names)}), model {model}")
        for name, argv in commands.items():
            print(f"  {name}: {' '.join(argv[1:])}")
        for argv in commands.values():  # warm the page cache and the .pyc files
            timed(argv, env)
        times = {name: [] for name in commands}
        for r in range(args.rounds):
            order = list(commands) if r % 2 == 0 else list(reversed(commands))
            for name in order:
                times[name].append(timed(commands[name], env))
            print(f"round {r + 1}: classify {times['classify'][-1]:.2f} s, explain {times['explain'][-1]:.2f} s, "
                  f"ratio {times['explain'][-1] / times['classify'][-1]:.2f}")
        ratios = [e / c for e, c in zip(times["explain"], times["classify"])]
        print(f"median: classify {statistics.median(times['classify']):.2f} s, explain "
              f"{statistics.median(times['explain']):.2f} s; ratio median {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}) over {args.rounds} rounds")


if __name__ == "__main__":
    main()
