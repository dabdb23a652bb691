"""The same MoCo v2 step in slimssl and in lightly, side by side (issue 8, item 5).

One process builds both and times them alternately (medians over repeats):

* slimssl: the real ``Trainer.train_step`` of ``individual_mocov2_cifar10.yaml`` (MoCo v2,
  ResNet-18 with the CIFAR stem, full width only, queue 4096, tau 0.2, momentum 0.99,
  SGD 0.9 / wd 5e-4; split-BN off so that both sides normalise the whole batch);
* lightly: torchvision's ResNet-18 with the same CIFAR stem (3x3 stride-1 conv, no max-pool),
  ``MoCoProjectionHead(512, 512, 128)`` (slimssl's head sizes), ``NTXentLoss`` with a
  4096-entry memory bank, ``update_momentum`` / ``deactivate_requires_grad`` for the key
  encoder, the same SGD. Asymmetric loss as in MoCo v2 (query = view 1, key = view 2).

Both sides run slimssl's batched two-view augmentation on the same uint8 batch inside the
timed step, so the ratio compares the model step. The MACs of both backbones are printed to
show they are the same network. ``lightly`` is only needed here (``pip install lightly``); it
is not a dependency of slimssl.

Usage::

    python benchmarks/bench_lightly_peer.py [--batch 32] [--repeats 5] [--threads 1]

Writes ``benchmarks/results/lightly_peer.json``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, loadavg, machine_info, make_trainer, temp_run_dir, write_result  # noqa: E402


class LightlyMoCo(nn.Module):
    """MoCo v2 built from lightly's parts (the way lightly's MoCo example assembles it)."""

    def __init__(self, queue: int, temperature: float, momentum: float) -> None:
        import torchvision
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        resnet = torchvision.models.resnet18()
        resnet.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem
        resnet.maxpool = nn.Identity()
        resnet.fc = nn.Identity()
        self.backbone = resnet
        self.head = MoCoProjectionHead(512, 512, 128)
        self.backbone_k = copy.deepcopy(self.backbone)
        self.head_k = copy.deepcopy(self.head)
        deactivate_requires_grad(self.backbone_k)
        deactivate_requires_grad(self.head_k)
        self.criterion = NTXentLoss(temperature=temperature, memory_bank_size=(queue, 128))
        self.momentum = momentum

    def step(self, views: tuple[torch.Tensor, torch.Tensor], optimizer: torch.optim.Optimizer
             ) -> float:
        from lightly.models.utils import update_momentum

        update_momentum(self.backbone, self.backbone_k, self.momentum)
        update_momentum(self.head, self.head_k, self.momentum)
        q = self.head(self.backbone(views[0]))
        with torch.no_grad():
            k = self.head_k(self.backbone_k(views[1]))
        loss = self.criterion(q, k)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32, help="the issue's 256 is ~1 min/step on "
                    "this shared CPU; the ratio is what matters")
    ap.add_argument("--queue", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="lightly_peer", help="results/<OUT>.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import lightly
    except ImportError:
        sys.exit("this benchmark needs lightly: pip install lightly (not a slimssl dependency)")
    from slimssl.export import profile_family
    from slimssl.export.profile import count_macs

    overrides = ["data.path=synthetic", "data.image_size=32", f"data.batch_size={args.batch}",
                 f"method.queue_size={args.queue}", "method.bn_splits=1", "optim.warmup_epochs=0"]
    with temp_run_dir() as run_dir:
        trainer = make_trainer("individual_mocov2_cifar10", overrides, run_dir)
        cfg = trainer.cfg
        peer = LightlyMoCo(args.queue, cfg.method.temperature, cfg.method.momentum)
        opt = torch.optim.SGD(list(peer.backbone.parameters()) + list(peer.head.parameters()),
                              lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                              weight_decay=cfg.optim.weight_decay)
        peer.train()
        images = next(iter(trainer.loader))[0]
        gen = torch.Generator().manual_seed(0)
        macs_slim = profile_family(trainer.backbone, [1.0], 32)[0]["macs"]
        macs_peer = count_macs(peer.backbone, 32)

        def lightly_step() -> None:
            peer.step(trainer.views(images, gen), opt)

        timings = alternate({"slimssl": lambda: trainer.train_step(images, 1.0),
                             "lightly": lightly_step}, args.repeats, warmup=2)
    r = timings["slimssl"]["median_s"] / timings["lightly"]["median_s"]
    result = {"machine": machine_info(args.threads), "args": vars(args),
              "lightly_version": lightly.__version__, "slimssl_overrides": overrides,
              "backbone_macs": {"slimssl_export": macs_slim, "torchvision_lightly": macs_peer},
              "slimssl_step_s": round(timings["slimssl"]["median_s"], 4),
              "lightly_step_s": round(timings["lightly"]["median_s"], 4),
              "ratio_slimssl_over_lightly": round(r, 3), "timings": timings}
    print(f"MACs/image: slimssl {macs_slim / 1e6:.1f}M, lightly/torchvision {macs_peer / 1e6:.1f}M")
    print(f"MoCo v2 step, batch {args.batch}: slimssl {result['slimssl_step_s']:.3f} s, lightly "
          f"{result['lightly_step_s']:.3f} s -> slimssl/lightly {r:.2f}x (load {loadavg()[0]})")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
