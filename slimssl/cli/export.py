"""``slimssl export RUN_DIR``: standalone deployment files for chosen members of a run.

Each member becomes ``<out>/<member>/`` with the requested formats (safetensors + arch.json,
TorchScript, ONNX), each file read back and checked against the model; a table of params, MACs
and the accuracy recorded in the run's ``results.json`` is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    import torch

    from slimssl.cli.members import member_specs, open_run
    from slimssl.data import load_dataset
    from slimssl.data.views import eval_transform
    from slimssl.eval.family import recalibrate_if_universal
    from slimssl.eval.report import format_table, read_results
    from slimssl.export.budget import accuracy_by_label, accuracy_metric
    from slimssl.export.deploy import export_member, parse_formats
    from slimssl.export.extract import extract_subnet
    from slimssl.export.profile import count_macs, count_params

    formats = parse_formats(args.format)
    run_ = open_run(args.run, args.data)
    cfg, backbone = run_.cfg, run_.backbone
    specs = member_specs(backbone, args.widths, args.depths)
    out = Path(args.out) if args.out else run_.directory / "export"
    results = read_results(run_.directory) if (run_.directory / "results.json").is_file() else []
    metric = accuracy_metric(results) if results else None
    accuracy = accuracy_by_label(results, metric) if metric else {}
    d = cfg.data
    train_set = load_dataset(d.path, "train", d.image_size, seed=cfg.train.seed,
                             cache_dir=d.cache_dir)
    transform = eval_transform(train_set.mean, train_set.std)
    example = torch.randn(2, 3, d.image_size, d.image_size, generator=torch.Generator().manual_seed(0))
    rows, checks = [], []
    for spec in specs:
        recalibrate_if_universal(backbone, spec, train_set.images, transform,
                                 cfg.eval.recalib_images)
        plain = extract_subnet(backbone, spec).cpu()
        diffs = export_member(plain, out / spec.slug, formats, example,
                              extra={"spec": spec.to_dict(), "mean": train_set.mean,
                                     "std": train_set.std, "image_size": d.image_size})
        row = {"subnet": spec.label, "params_m": count_params(plain) / 1e6,
               "macs_g": count_macs(plain, d.image_size) / 1e9}
        if spec.label in accuracy:
            row[metric] = accuracy[spec.label]
        rows.append(row)
        checks.append(f"{spec.label}: " + ", ".join(
            f"{fmt} max|diff| {diff:.1e}" if diff is not None else f"{fmt} written (no runtime "
            "to check it: pip install onnxruntime)" for fmt, diff in diffs.items()))
    print(format_table(rows))
    if not metric:
        print("(no accuracy: results.json is missing; run slimssl knn RUN_DIR)")
    print("\n".join(checks))
    print(f"exported {len(specs)} member(s) to {out.resolve()}")
    return 0


def add_parser(sub) -> None:
    from slimssl.cli.members import add_member_arguments

    p = sub.add_parser("export", help="write chosen members as standalone models "
                       "(safetensors, TorchScript, ONNX), each checked against the model")
    add_member_arguments(p)
    p.add_argument("--format", default="safetensors",
                   help="comma-separated: safetensors, torchscript, onnx "
                   "(onnx needs pip install 'slimssl[onnx]')")
    p.add_argument("--out", help="output folder (default: RUN_DIR/export)")
    p.set_defaults(func=run)
