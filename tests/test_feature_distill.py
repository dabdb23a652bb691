"""US3L intermediate-feature distillation (authors' R-50 setting) against hand computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimssl.engine.build import build_backbone, build_method
from slimssl.engine.config import Config, ConfigError
from slimssl.engine.trainer import Trainer
from slimssl.methods.feature_distill import FeatureDistillation
from slimssl.methods.simclr import MomentumSimCLR
from slimssl.models import create
from slimssl.nn.norm import SlimBatchNorm2d
from slimssl.nn.spec import SubnetSpec


class _OneLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = SlimBatchNorm2d(2, "universal")   # a 2-channel point to distil


def _t(*values):
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def test_projection_and_leading_losses_by_hand():
    fd = FeatureDistillation(_OneLayer(), ["layer"], weight=1.0, align="projection")
    with torch.no_grad():
        fd.proj[0].weight.copy_(torch.tensor([[1.0, 5.0], [2.0, 7.0]]).view(2, 2, 1, 1))
    student = [[_t(3.0), _t(1.0)]]            # a 1-channel student (width 0.5), views 1 and 2
    teacher = [[_t(1.0, 0.0), _t(4.0, 4.0)]]  # the full-width teacher, views 1 and 2
    # projection sliced to the student's channel: W[:, :1] = [1, 2]
    # view 1 vs teacher view 2: [3, 6] vs [4, 4] -> (1 + 4) / 2 = 2.5
    # view 2 vs teacher view 1: [1, 2] vs [1, 0] -> (0 + 4) / 2 = 2.0;  mean 2.25
    assert fd.loss(student, teacher).item() == pytest.approx(2.25)
    lead = FeatureDistillation(_OneLayer(), ["layer"], align="leading")
    assert lead.proj is None
    # teacher's leading channel: 3 vs 4 -> 1; 1 vs 1 -> 0; mean 0.5
    assert lead.loss(student, teacher).item() == pytest.approx(0.5)
    # the gradient reaches the projection (it trains with the network), not the teacher
    t_req = [[x.clone().requires_grad_() for x in teacher[0]]]
    fd.loss(student, t_req).backward()
    assert fd.proj[0].weight.grad[:, 1].abs().sum() == 0       # unused input channel
    assert fd.proj[0].weight.grad[:, 0].abs().sum() > 0
    assert all(x.grad is None for x in t_req[0])


def test_bad_settings_name_the_problem():
    with pytest.raises(ValueError, match="layer9"):
        FeatureDistillation(_OneLayer(), ["layer9"])
    with pytest.raises(ValueError, match="align"):
        FeatureDistillation(_OneLayer(), ["layer"], align="pad")
    with pytest.raises(ConfigError, match="feature_distill_weight"):
        Config.from_dict({"method": {"name": "mocov2", "feature_distill_weight": 1.0}})


def _method(weight, layers=("layer2", "layer3", "layer4")):
    torch.manual_seed(0)
    backbone = create("resnet10_narrow", widths=[1.0, 0.5], norm="universal", stem="cifar",
                      width_range=(0.25, 1.0))
    return MomentumSimCLR(backbone, 16, 8, 16, feature_distill_weight=weight,
                          feature_distill_layers=layers).train()


def test_students_add_the_cross_view_mse_of_stages_2_to_4():
    views = (torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8))
    plain, fd_method = _method(0.0), _method(2.0)
    fd_method.load_state_dict(plain.state_dict(), strict=False)   # same weights, + projections
    keys = fd_method.target_forward(views)
    assert torch.allclose(keys, plain.target_forward(views))
    # the features by hand: hooks on the teacher and on the width-0.5 student
    def grab(module, layer_names, spec=None):
        out = {n: [] for n in layer_names}
        hs = [module.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: out[n].append(o.detach())) for n in layer_names]
        for v in views:
            if spec is None:
                with torch.no_grad():
                    module(v)
            else:
                with module.subnet(spec):
                    module(v)
        for h in hs:
            h.remove()
        return out
    names = ["layer2", "layer3", "layer4"]
    t = grab(fd_method.target.backbone, names)
    s = grab(fd_method.online.backbone, names, SubnetSpec(0.5))
    want = 0.0
    for i, n in enumerate(names):
        w = fd_method.feature_distill.proj[i].weight
        for v in range(2):
            proj = F.conv2d(s[n][v], w[:, :s[n][v].shape[1]])
            assert proj.shape == t[n][1 - v].shape            # full teacher channels
            want += F.mse_loss(proj, t[n][1 - v]).item() / 6
    sub = fd_method.subnet_forward(views, SubnetSpec(0.5), keys)
    base = plain.subnet_forward(views, SubnetSpec(0.5), keys)
    assert sub.loss.item() - base.loss.item() == pytest.approx(2.0 * want, rel=1e-4)
    # the full width (the teacher's own size) takes no feature term
    full = fd_method.subnet_forward(views, SubnetSpec(1.0), keys)
    assert full.loss.item() == pytest.approx(
        plain.subnet_forward(views, SubnetSpec(1.0), keys).loss.item(), rel=1e-6)


def test_r50_config_points_and_a_trainer_step(tmp_path):
    cfg = Config.from_dict({"method": {"name": "simclr_momentum",
                                       "feature_distill_weight": 1.0,
                                       "feature_distill_layers": ["layer2.3.bn2", "layer3.5.bn2",
                                                                  "layer4.2.bn2"]},
                            "model": {"arch": "resnet50", "norm": "universal", "stem": "imagenet",
                                      "width_range": [0.25, 1.0], "widths": [1.0, 0.25]},
                            "recipe": {"name": "us3l"}, "optim": {"weight_decay": 0.0}})
    method = build_method(cfg, build_backbone(cfg))
    # the authors' DISTILL_FEATURE_DIM: 128, 256, 512
    assert [p.weight.shape[0] for p in method.feature_distill.proj] == [128, 256, 512]
    cfg = Config.from_dict(dict(
        data=dict(path="synthetic", image_size=8, batch_size=8, num_workers=0,
                  views="byol_cifar"),
        train=dict(epochs=1, device="cpu", tensorboard=False, log_every=1),
        model=dict(arch="resnet10_narrow", widths=[1.0, 0.25], width_range=[0.25, 1.0],
                   norm="universal"),
        method=dict(name="simclr_momentum", proj_hidden=16, proj_dim=8, pred_hidden=16,
                    feature_distill_weight=1.0),
        recipe=dict(name="us3l", num_sampled=3, group_reg=5e-5),
        optim=dict(name="sgd", lr=0.1, weight_decay=0.0, warmup_epochs=0)))
    trainer = Trainer(cfg, tmp_path, progress="off")
    proj = trainer.method.feature_distill.proj[0].weight
    before = proj.detach().clone()
    images, _ = next(iter(trainer.loader))
    logs = trainer.train_step(images, 0.9)          # last dynamic stage: two students
    assert logs["num_subnets"] == 3
    assert not torch.equal(before, proj)            # the projections train with the network
    assert "feature_proj" not in "".join(n for n, _ in trainer.method.target.named_parameters())
