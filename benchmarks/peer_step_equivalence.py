"""Is slimssl's MoCo v2 step the same computation as lightly's? (issue 18.1, before any ablation)

Two checks that take seconds instead of training runs:

1. **Step**: slimssl's ``individual`` MoCo v2 (``bn_splits=1``) and lightly's ``NTXentLoss`` with
   a memory bank, on the SAME weights (slimssl's online/target networks exported to plain
   modules, the projection heads rebuilt as ``nn.Linear``), the SAME two views and the SAME
   queue: the loss and every backbone gradient are compared (max relative difference).
2. **Augmentation**: slimssl's batched ``mocov2_cifar`` views against lightly's
   ``MoCoV2Transform`` (per-image torchvision, blur off) on the same 1,000 CIFAR-10 images:
   mean/std of the views, mean |view1 - view2|, mean cosine similarity of the two views,
   the grayscale fraction and the mean horizontal gradient (blurriness of upscaled crops).

If both agree, the accuracy gap against the peer comes from the defaults (split-BN, weight
decay on BN/bias, ...), not from a defect in the step; ``peer_accuracy.py`` then ablates those.

Usage::

    python benchmarks/peer_step_equivalence.py      # writes results/peer_step_equivalence.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, make_trainer, temp_run_dir, write_result  # noqa: E402
from peer_accuracy import MEAN, STD, load_split  # noqa: E402


def _plain_head(projector: nn.Module) -> nn.Sequential:
    """The 2-layer MoCo v2 head (Linear-ReLU-Linear) of a full-width SlimMLP as nn.Linear."""
    lins = [m for m in projector.modules() if getattr(m, "weight", None) is not None
            and m.weight.dim() == 2]
    head = nn.Sequential(nn.Linear(lins[0].weight.shape[1], lins[0].weight.shape[0]), nn.ReLU(),
                         nn.Linear(lins[1].weight.shape[1], lins[1].weight.shape[0]))
    with torch.no_grad():
        for dst, src in zip((head[0], head[2]), lins):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return head


def step_check() -> dict:
    from lightly.loss import NTXentLoss

    from slimssl.export import extract_subnet

    queue = 256
    with temp_run_dir() as d:
        t = make_trainer("individual_mocov2_cifar10", [
            "data.path=synthetic", "data.image_size=16", "data.batch_size=32",
            "model.arch=resnet10_narrow", f"method.queue_size={queue}", "method.bn_splits=1"], d)
        m = t.method
        m.train()
        images = next(iter(t.loader))[0]
        views = t.views(images, t.aug_generator)
        bank = m.queue.queue.clone()
        with torch.no_grad():
            keys = m.target_forward(views)
        out = m.subnet_forward(views, m.online.full_spec, keys)
        out.loss.backward()
        # lightly on the same weights, views and queue
        bb = extract_subnet(m.online.backbone, 1.0).train()
        bbk = extract_subnet(m.target.backbone, 1.0).train()
        head, head_k = _plain_head(m.online.projector), _plain_head(m.target.projector)
        crit = NTXentLoss(temperature=t.cfg.method.temperature,
                          memory_bank_size=(queue, t.cfg.method.proj_dim))
        with torch.no_grad():
            crit.memory_bank.bank.copy_(bank)
            k = head_k(bbk(views[1]))
        loss = crit(head(bb(views[0])), k)
        loss.backward()
        ours = [p.grad for p in m.online.backbone.parameters() if p.grad is not None]
        theirs = [p.grad for p in bb.parameters()]
        rel = max(float((a - b).abs().max() / (b.abs().max() + 1e-12))
                  for a, b in zip(ours, theirs))
        key_diff = float((F.normalize(k, dim=1) - keys).abs().max())
    res = {"slimssl_loss": float(out.loss), "lightly_loss": float(loss),
           "key_max_abs_diff": key_diff, "backbone_grad_max_rel_diff": rel,
           "num_grad_tensors": len(ours)}
    print(f"step: loss slimssl {res['slimssl_loss']:.6f} vs lightly {res['lightly_loss']:.6f}; "
          f"keys differ by {key_diff:.2e}; backbone gradients by {rel:.2e} (relative, max over "
          f"{len(ours)} tensors)")
    return res


def _view_stats(v1: torch.Tensor, v2: torch.Tensor) -> dict:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    px = v1 * std + mean
    gray = ((px[:, 0] - px[:, 1]).abs().flatten(1).amax(1) < 1e-3).float().mean()
    return {"mean": float(v1.mean()), "std": float(v1.std()),
            "abs_view_diff": float((v1 - v2).abs().mean()),
            "view_cosine": float(F.cosine_similarity(v1.flatten(1), v2.flatten(1)).mean()),
            "gray_fraction": float(gray),
            "mean_abs_x_gradient": float((v1[..., 1:] - v1[..., :-1]).abs().mean())}


def augment_check(n_per_class: int = 100) -> dict:
    from lightly.transforms import MoCoV2Transform
    from PIL import Image

    from slimssl.data.views import make_views

    x, y, _ = load_split("train")
    keep = torch.cat([torch.nonzero(y == c).flatten()[:n_per_class] for c in range(10)])
    x = x[keep]
    ours = make_views("mocov2_cifar", 32, MEAN, STD)(x, torch.Generator().manual_seed(0))
    t = MoCoV2Transform(input_size=32, gaussian_blur=0.0,
                        normalize={"mean": list(MEAN), "std": list(STD)})
    torch.manual_seed(0)
    pairs = [t(Image.fromarray(img.permute(1, 2, 0).numpy())) for img in x]
    theirs = (torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))
    res = {"images": len(x), "slimssl": _view_stats(*ours), "lightly": _view_stats(*theirs)}
    for side in ("slimssl", "lightly"):
        print(f"augment {side:8s}: " + " ".join(f"{k} {v:.3f}" for k, v in res[side].items()))
    return res


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    result = {"machine": machine_info(1), "step": step_check(), "augment": augment_check()}
    write_result("peer_step_equivalence", result)


if __name__ == "__main__":
    main()
