"""``slimssl profile``: params and MACs of every member, counted on its exported model."""

from __future__ import annotations

import argparse
import json


def parse_widths(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated numbers, got {text!r}")


def run(args: argparse.Namespace) -> int:
    from slimssl.export.profile import format_profile_table, profile_family
    from slimssl.models import create

    model = create(args.arch, widths=args.widths, stem=args.stem, num_classes=args.num_classes)
    rows = profile_family(model, None, args.input_size)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{args.arch} ({args.stem} stem, {args.num_classes} classes, input "
          f"{args.input_size}x{args.input_size}), counted on the exported sub-networks; "
          "MACs = multiply-accumulates of conv + linear layers")
    print(format_profile_table(rows))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="params and MACs of every member, counted on its export")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--widths", type=parse_widths, default=[1.0, 0.75, 0.5, 0.25])
    p.add_argument("--stem", default="imagenet", choices=["imagenet", "cifar"])
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
