"""What the steps LEARN: slimssl's ``individual`` MoCo v2 against lightly's MoCo v2 (issue 18.1).

Both sides train the same narrow ResNet-18 (CIFAR stem, BasicBlock (2, 2, 2, 2), stem width 16,
so 16-32-64-128 channels and 128-d features) on the same 10,000 CIFAR-10 images (the first
1,000 files of every class folder of ``../shared/data/cifar10-jpeg/train``), with the same
epochs, batch, queue, temperature, key momentum, SGD and warm-up + cosine schedule. Afterwards
each side's backbone is EXPORTED as a plain module and scored by the same weighted-kNN code
(k = 200, T = 0.1; bank = the 10,000 training images, queries = all 10,000 test images, centre
view, no augmentation) next to the same network at its random initialisation.

* ``--side slimssl``: ``slimssl.engine.Trainer`` with ``configs/individual_mocov2_cifar10.yaml``
  and the protocol's overrides (plus ``--set`` for ablations), then ``extract_subnet``.
* ``--side lightly``: the way a lightly user writes MoCo v2 (lightly's example on CIFAR-10):
  torchvision's ``BasicBlock`` assembled into the same narrow ResNet-18 with torchvision's
  initialisation, ``MoCoProjectionHead(128, 128, 128)``, ``NTXentLoss(0.2, memory_bank_size=
  (4096, 128))``, ``update_momentum`` before each step, lightly's ``MoCoV2Transform`` (per-image
  torchvision transforms; blur off at 32 px, as lightly's CIFAR-10 benchmark does) in a
  ``DataLoader``, weight decay on every parameter, query = view 1 and key = view 2.

``lightly`` is an optional benchmark dependency (``pip install lightly``).

Usage::

    python benchmarks/peer_accuracy.py run --side slimssl --seed 0 [--tag NAME --set k=v ...]
    python benchmarks/peer_accuracy.py run --side lightly --seed 0
    python benchmarks/peer_accuracy.py report [--pair slimssl_compile:lightly_paired_compile]

``run`` writes ``benchmarks/results/peer_accuracy/<tag>_s<seed>.json``; ``report`` gathers them
into ``benchmarks/results/peer_accuracy.json`` (means, standard errors, wall-time ratios and the
ablation table).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CIFAR_DIR, RESULTS_DIR, loadavg, machine_info  # noqa: E402

from slimssl.schedule import cosine_lr  # noqa: E402

PER_CLASS = 1000
OUT = RESULTS_DIR / "peer_accuracy"
SUBSET = Path(os.environ.get("SLIMSSL_PEER_DATA", "/tmp/slimssl-peer-cifar10k"))

#: The protocol, identical on both sides.
PROTOCOL = {
    "images": 10 * PER_CLASS, "image_size": 32, "batch": 128, "epochs": 12, "queue": 4096,
    "temperature": 0.2, "key_momentum": 0.99, "lr": 0.06, "sgd_momentum": 0.9,
    "weight_decay": 5e-4, "warmup_epochs": 1, "base_width": 16, "proj_dim": 128,
}


# ------------------------------------------------------------------------------------- data
def make_subset() -> Path:
    """``SUBSET/train/<class>/`` = symlinks to the first PER_CLASS files of each class;
    ``SUBSET/test`` = the whole test folder."""
    if (SUBSET / "done").exists():
        return SUBSET
    src = CIFAR_DIR
    if not (src / "train").is_dir():
        sys.exit(f"peer_accuracy: {src}/train not found (../shared/data/cifar10-jpeg)")
    for cls in sorted(p.name for p in (src / "train").iterdir() if p.is_dir()):
        dst = SUBSET / "train" / cls
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted((src / "train" / cls).iterdir())[:PER_CLASS]:
            link = dst / f.name
            if not link.exists():
                link.symlink_to(f)
    if not (SUBSET / "test").exists():
        (SUBSET / "test").symlink_to(src / "test")
    (SUBSET / "done").write_text("ok\n")
    return SUBSET


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """uint8 (N, 3, 32, 32) images and labels of a split of the subset, decoded with PIL."""
    import numpy as np
    from PIL import Image

    root = make_subset() / split
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    imgs, labels = [], []
    for c, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            with Image.open(f) as im:
                imgs.append(np.asarray(im.convert("RGB")))
            labels.append(c)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels), classes


# ----------------------------------------------------------------------------- evaluation
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@torch.no_grad()
def features(model: nn.Module, images: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    model.eval()
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    out = [model((images[i:i + 500].float() / 255 - m) / s).flatten(1)
           for i in range(0, len(images), 500)]
    return torch.cat(out)


def knn_score(model: nn.Module, data: dict, mean=MEAN, std=STD) -> dict[str, float]:
    from slimssl.eval.knn import knn_accuracy

    bank = features(model, data["train_x"], mean, std)
    query = features(model, data["test_x"], mean, std)
    acc = knn_accuracy(bank, data["train_y"], query, data["test_y"], 10, ks=(200, 20), t=0.1)
    return {"knn200": acc[200], "knn20": acc[20]}


# ------------------------------------------------------------------------------- slimssl
def slimssl_overrides(seed: int, run_dir: str, extra: list[str]) -> list[str]:
    p = PROTOCOL
    return [
        f"data.path={make_subset()}", f"data.image_size={p['image_size']}",
        f"data.batch_size={p['batch']}", "data.num_workers=0",
        "model.arch=resnet18", "model.widths=[1.0]", f"model.base_width={p['base_width']}",
        f"method.queue_size={p['queue']}", f"method.temperature={p['temperature']}",
        f"method.momentum={p['key_momentum']}", f"method.proj_dim={p['proj_dim']}",
        f"optim.lr={p['lr']}", "optim.lr_scaling=none", f"optim.momentum={p['sgd_momentum']}",
        f"optim.weight_decay={p['weight_decay']}", f"optim.warmup_epochs={p['warmup_epochs']}",
        f"train.epochs={p['epochs']}", f"train.seed={seed}", f"out_dir={run_dir}",
        "train.tensorboard=false", f"train.ckpt_every_epochs={p['epochs']}",
        "eval.knn_every_epochs=0", "train.log_every=50",
        *extra,
    ]


def run_slimssl(seed: int, extra: list[str], data: dict) -> dict:
    import tempfile

    from slimssl.engine.config import load_config
    from slimssl.engine.trainer import Trainer
    from slimssl.export import extract_subnet

    run_dir = tempfile.mkdtemp(prefix="peer-slimssl-")
    cfg = load_config(str(Path(__file__).resolve().parents[1] / "configs" /
                          "individual_mocov2_cifar10.yaml"),
                      slimssl_overrides(seed, run_dir, extra))
    trainer = Trainer(cfg, run_dir, progress="auto")
    mean, std = trainer.train_set.mean, trainer.train_set.std
    init = extract_subnet(trainer.backbone, 1.0)
    floor = knn_score(init, data, mean, std)
    t0 = time.perf_counter()
    hist = trainer.fit()
    wall = time.perf_counter() - t0
    final = knn_score(extract_subnet(trainer.backbone, 1.0), data, mean, std)
    losses = [h["loss"] for h in hist]
    return {"wall_s": wall, "img_per_s": PROTOCOL["images"] * PROTOCOL["epochs"] / wall,
            "epoch_loss": losses, "random_init": floor, **final}


# -------------------------------------------------------------------------------- lightly
def narrow_resnet18(base: int) -> nn.Module:
    """ResNet-18 (torchvision's BasicBlock and initialisation) with a CIFAR stem and stage
    widths base * (1, 2, 4, 8); returns pooled features."""
    from torchvision.models.resnet import BasicBlock

    layers: list[nn.Module] = [nn.Conv2d(3, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base),
                               nn.ReLU(inplace=True)]
    inplanes = base
    for i, n in enumerate((2, 2, 2, 2)):
        planes, stride = base * 2 ** i, 1 if i == 0 else 2
        for j in range(n):
            down = None
            if j == 0 and (stride != 1 or inplanes != planes):
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes))
            layers.append(BasicBlock(inplanes, planes, stride if j == 0 else 1, down))
            inplanes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    net = nn.Sequential(*layers)
    for m in net.modules():  # torchvision ResNet.__init__'s initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, transform) -> None:
        from PIL import Image

        self.pil = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pil)

    def __getitem__(self, i: int):
        return self.transform(self.pil[i])


def lr_at(step: int, steps_per_epoch: int) -> float:
    """Linear warm-up then half-cosine to 0 (per step): slimssl's own schedule function
    (:func:`slimssl.schedule.cosine_lr`, warm-up ``step / warmup``), so both sides follow the
    same rates step for step."""
    p = PROTOCOL
    warm, total = p["warmup_epochs"] * steps_per_epoch, p["epochs"] * steps_per_epoch
    return cosine_lr(step, total, p["lr"], warm)


def run_lightly(seed: int, data: dict) -> dict:
    import copy

    from lightly.loss import NTXentLoss
    from lightly.models.modules import MoCoProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import MoCoV2Transform

    p = PROTOCOL
    torch.manual_seed(seed)
    backbone = narrow_resnet18(p["base_width"])
    feat = p["base_width"] * 8
    head = MoCoProjectionHead(feat, feat, p["proj_dim"])
    backbone_k, head_k = copy.deepcopy(backbone), copy.deepcopy(head)
    deactivate_requires_grad(backbone_k)
    deactivate_requires_grad(head_k)
    criterion = NTXentLoss(temperature=p["temperature"], memory_bank_size=(p["queue"], p["proj_dim"]))
    norm = {"mean": list(MEAN), "std": list(STD)}
    transform = MoCoV2Transform(input_size=p["image_size"], gaussian_blur=0.0, normalize=norm)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(_Pairs(data["train_x"], transform), batch_size=p["batch"],
                                         shuffle=True, drop_last=True, generator=g, num_workers=0)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=p["lr"], momentum=p["sgd_momentum"],
                          weight_decay=p["weight_decay"])
    floor = knn_score(backbone, data)
    t0 = time.perf_counter()
    step, losses = 0, []
    for epoch in range(p["epochs"]):
        backbone.train(), head.train()
        ep = []
        for views in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, len(loader))
            update_momentum(backbone, backbone_k, p["key_momentum"])
            update_momentum(head, head_k, p["key_momentum"])
            q = head(backbone(views[0]))
            with torch.no_grad():
                k = head_k(backbone_k(views[1]))
            loss = criterion(q, k)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ep.append(float(loss))
            step += 1
        losses.append(statistics.fmean(ep))
        print(f"lightly epoch {epoch + 1}: loss {losses[-1]:.3f}  "
              f"{(epoch + 1) * len(loader) * p['batch'] / (time.perf_counter() - t0):.1f} img/s",
              flush=True)
    wall = time.perf_counter() - t0
    final = knn_score(backbone, data)
    return {"wall_s": wall, "img_per_s": p["images"] * p["epochs"] / wall, "epoch_loss": losses,
            "random_init": floor, **final}


# ------------------------------------------------------------------------------------ main
def cmd_run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    tag = args.tag or args.side
    out = OUT / f"{tag}_s{args.seed}.json"
    if out.exists() and not args.force:
        print(f"{out} exists (use --force to rerun)")
        return
    train_x, train_y, classes = load_split("train")
    test_x, test_y, _ = load_split("test")
    data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    info = machine_info(args.threads)
    if args.side == "slimssl":
        res = run_slimssl(args.seed, args.set, data)
    else:
        res = run_lightly(args.seed, data)
    res.update(side=args.side, tag=tag, seed=args.seed, overrides=args.set, protocol=PROTOCOL,
               machine=info, loadavg_at_end=loadavg(),
               command="python benchmarks/peer_accuracy.py " + " ".join(sys.argv[1:]))
    OUT.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"{tag} seed {args.seed}: kNN@200 {res['knn200']:.2f} (random init "
          f"{res['random_init']['knn200']:.2f}), wall {res['wall_s']:.0f} s, "
          f"{res['img_per_s']:.1f} img/s -> {out}")


def same_seed(row: dict, base: dict, key: str, op) -> dict:
    """``op(row[key], base[key])`` for every seed both rows have (same-seed comparisons)."""
    by_seed = dict(zip(base["seeds"], base[key]))
    return {s: op(v, by_seed[s]) for s, v in zip(row["seeds"], row[key]) if s in by_seed}


def cmd_report(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {}
    for f in sorted(OUT.glob("*.json")):
        r = json.loads(f.read_text())
        runs.setdefault(r["tag"], []).append(r)
    table = {}
    for tag, rs in runs.items():
        acc = [r["knn200"] for r in rs]
        table[tag] = {
            "seeds": [r["seed"] for r in rs], "knn200": acc,
            "knn200_mean": statistics.fmean(acc),
            "knn200_se": statistics.stdev(acc) / math.sqrt(len(acc)) if len(acc) > 1 else None,
            "random_init_knn200": [r["random_init"]["knn200"] for r in rs],
            "wall_s": [round(r["wall_s"], 1) for r in rs],
            "wall_mean_s": statistics.fmean(r["wall_s"] for r in rs),
            "final_loss": [round(r["epoch_loss"][-1], 3) for r in rs],
            "overrides": rs[0]["overrides"], "cpu": rs[0]["machine"]["cpu"],
            "loadavg": [r["machine"]["loadavg_at_start"] for r in rs],
        }
    peer = table.get("lightly")
    for tag, row in table.items():
        if peer and tag != "lightly":
            row["knn200_minus_peer"] = row["knn200_mean"] - peer["knn200_mean"]
            if row["knn200_se"] is not None and peer["knn200_se"] is not None:
                row["knn200_minus_peer_se"] = math.hypot(row["knn200_se"], peer["knn200_se"])
            # same-seed differences (an ablation run with one seed is compared on that seed)
            base = table.get(args.baseline)
            if base and tag != args.baseline:
                row[f"knn200_minus_{args.baseline}_same_seed"] = same_seed(
                    row, base, "knn200", lambda x, y: round(x - y, 2))
            row["wall_vs_peer"] = row["wall_mean_s"] / peer["wall_mean_s"]
    for pair in args.pair:  # runs trained at the same time on the same machine: same load
        a, b = pair.split(":")
        if a not in table or b not in table:
            print(f"--pair {pair}: no results for {a if a not in table else b} yet")
            continue
        ratio = same_seed(table[a], table[b], "wall_s", lambda x, y: round(x / y, 3))
        table[a][f"wall_vs_{b}_same_seed"] = ratio
        table[a][f"wall_vs_{b}_mean"] = statistics.fmean(ratio.values()) if ratio else None
        table[a][f"knn200_minus_{b}_same_seed"] = same_seed(
            table[a], table[b], "knn200", lambda x, y: round(x - y, 2))
        print(f"{a} vs {b} (run side by side): wall ratio per seed {ratio}, "
              f"kNN difference per seed {table[a][f'knn200_minus_{b}_same_seed']}")
    print(f"{'run':28s} {'seeds':8s} {'kNN@200':>16s} {'vs peer':>8s} {'wall s':>8s} {'x peer':>7s}")
    for tag, row in table.items():
        se = f"+-{row['knn200_se']:.2f}" if row["knn200_se"] is not None else ""
        print(f"{tag:28s} {str(row['seeds']):8s} {row['knn200_mean']:9.2f}{se:>7s} "
              f"{row.get('knn200_minus_peer', 0):+8.2f} {row['wall_mean_s']:8.0f} "
              f"{row.get('wall_vs_peer', 1):7.2f}")
    (RESULTS_DIR / "peer_accuracy.json").write_text(
        json.dumps({"protocol": PROTOCOL, "runs": table}, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--side", choices=("slimssl", "lightly"), required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--tag", default=None, help="result name (default: the side)")
    r.add_argument("--set", action="append", default=[], help="slimssl config override")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--force", action="store_true")
    r.set_defaults(fn=cmd_run)
    rep = sub.add_parser("report")
    rep.add_argument("--baseline", default="slimssl",
                     help="the slimssl run tag ablations are compared with, seed by seed")
    rep.add_argument("--pair", action="append", default=[], metavar="A:B",
                     help="tags A and B ran side by side (same seeds, same time): their "
                          "per-seed wall ratio A/B and kNN difference A-B")
    rep.set_defaults(fn=cmd_report)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
