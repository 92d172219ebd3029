"""The `vitc` command."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="vitc", description="CPU inference for HuggingFace ViT checkpoints")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config", help="print the ISA, OpenMP and thread settings of this build")
    args = parser.parse_args(argv)
    if args.command == "config":
        from .runtime import show_config
        show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
