"""``slimssl export RUN_DIR``: standalone deployment files for chosen members of a run.

Each member becomes ``<out>/<member>/`` with the requested formats (safetensors + arch.json,
TorchScript, ONNX, a timm model folder), each file read back and checked against the model; a
table of params, MACs and the accuracy recorded in the run's ``results.json`` is printed.
``--format hub`` writes the whole family as one model repository into ``<out>`` (config.json,
one safetensors file per member, a model card; :mod:`slimssl.hub`), ``--push USER/NAME``
uploads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _matching_result(results: list[dict], spec) -> dict:
    """The ``results.json`` row of ``spec`` (matched on width and depth, not on the label)."""
    for row in results:
        depth = row.get("depth")
        if abs(float(row.get("width", -1)) - spec.width) < 1e-6 and \
                (list(depth) if depth else None) == (list(spec.depth) if spec.depth else None):
            return row
    return {}


def _accuracies(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith(("knn_", "linear_", "semisup_"))
            and isinstance(v, (int, float))}


def run(args: argparse.Namespace) -> int:
    import torch

    from slimssl.cli.members import member_specs, open_run
    from slimssl.data import load_split
    from slimssl.data.views import eval_transform
    from slimssl.engine.config import config_to_dict
    from slimssl.eval.family import recalibrate_if_universal
    from slimssl.eval.report import format_table, read_results
    from slimssl.export.budget import accuracy_by_label, accuracy_metric
    from slimssl.export.deploy import RUNTIME_HINT, export_member, parse_formats
    from slimssl.export.extract import extract_subnet
    from slimssl.export.profile import count_macs, count_params
    from slimssl.export.timm_export import check_members

    names = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    hub = "hub" in names
    formats = parse_formats(",".join(n for n in names if n != "hub")) if names != ["hub"] else []
    if args.push and not hub:
        raise ValueError("--push uploads a family folder: add hub to --format")
    if args.push:
        from slimssl.hub import require_hub

        require_hub()  # before any work
    run_ = open_run(args.run, args.data)
    cfg, backbone = run_.cfg, run_.backbone
    specs = member_specs(backbone, args.widths, args.depths)
    if "timm" in formats:
        check_members(backbone, specs)  # refuse before anything is written
    out = Path(args.out) if args.out else run_.directory / ("hub" if hub and not formats
                                                            else "export")
    results = read_results(run_.directory) if (run_.directory / "results.json").is_file() else []
    metric = accuracy_metric(results) if results else None
    accuracy = accuracy_by_label(results, metric) if metric else {}
    d = cfg.data
    train_set = load_split(d, "train", cfg.train.seed)  # BN recalibration images (data.mode)
    transform = eval_transform(train_set.mean, train_set.std)
    example = torch.randn(2, 3, d.image_size, d.image_size, generator=torch.Generator().manual_seed(0))
    preprocessing = {"mean": [float(v) for v in train_set.mean],
                     "std": [float(v) for v in train_set.std], "image_size": d.image_size}
    rows, checks, family = [], [], []
    for spec in specs:
        recalibrate_if_universal(backbone, spec, train_set, transform,
                                 cfg.eval.recalib_images)
        plain = extract_subnet(backbone, spec).cpu()
        diffs = export_member(plain, out / spec.slug, formats, example,
                              extra={"spec": spec.to_dict(), **preprocessing}) if formats else {}
        params, macs = count_params(plain), count_macs(plain, d.image_size)
        row = {"subnet": spec.label, "params_m": params / 1e6, "macs_g": macs / 1e9}
        if spec.label in accuracy:
            row[metric] = accuracy[spec.label]
        rows.append(row)
        if hub:
            stats = {"params": params, "macs": macs,
                     **_accuracies(_matching_result(results, spec))}
            family.append((spec, plain, stats))
        checks.append((spec, plain, diffs))
    if hub:
        from slimssl.hub import load, write_family

        write_family(out, family, {
            "backbone": cfg.model.arch, "preprocessing": preprocessing,
            "data": {"path": d.path, "train_images": len(train_set)},
            "training_config": config_to_dict(cfg)})
        with torch.no_grad():
            for spec, plain, diffs in checks:
                reloaded = load(out, spec.width, spec.depth)
                diffs["hub"] = float((reloaded(example) - plain(example)).abs().max())
    print(format_table(rows))
    if not metric:
        print("(no accuracy: results.json is missing; run slimssl knn RUN_DIR)")
    for spec, _, diffs in checks:
        print(f"{spec.label}: " + ", ".join(
            f"{fmt} max|diff| {diff:.1e}" if diff is not None else
            f"{fmt} written (no runtime to check it: {RUNTIME_HINT[fmt]})"
            for fmt, diff in diffs.items()))
    if "timm" in formats:
        import json

        call = json.loads((out / specs[0].slug / "config.json").read_text())
        print(f"timm: {call['slimssl']['create_model']}  (or timm.create_model("
              f"'local-dir:{(out / specs[0].slug).resolve()}', pretrained=True))")
    print(f"exported {len(specs)} member(s) to {out.resolve()}")
    if args.push:
        from slimssl.hub import push

        print(f"pushed to {push(out, args.push, private=args.private)}")
    return 0


def add_parser(sub) -> None:
    from slimssl.cli.members import add_member_arguments

    p = sub.add_parser("export", help="write chosen members as standalone models "
                       "(safetensors, TorchScript, ONNX, timm) or the family as a model "
                       "repository (hub), each checked against the model")
    add_member_arguments(p)
    p.add_argument("--format", default="safetensors",
                   help="comma-separated: safetensors, torchscript, onnx (pip install "
                   "'slimssl[onnx]'), timm (ResNet members timm can build: 64-channel ImageNet "
                   "stem, i.e. full width), hub (the family as a Hugging Face-style folder)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/export, or RUN_DIR/hub for "
                   "--format hub alone)")
    p.add_argument("--push", metavar="USER/NAME", help="upload the hub folder to this Hugging "
                   "Face repository (pip install 'slimssl[hub]'; needs a login token)")
    p.add_argument("--private", action="store_true", help="with --push: a private repository")
    p.set_defaults(func=run)
