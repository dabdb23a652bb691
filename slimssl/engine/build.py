"""Config -> backbone, method and recipe. The only place that maps names to classes."""

from __future__ import annotations

from slimssl.engine.config import Config, ConfigError
from slimssl.methods.base import SSLMethod
from slimssl.methods.byol import BYOL
from slimssl.methods.mocov2 import MoCoV2
from slimssl.methods.mocov3 import MoCoV3
from slimssl.methods.simclr import MomentumSimCLR, SimCLR
from slimssl.methods.simsiam import SimSiam
from slimssl.methods.supervised import SupervisedClassifier
from slimssl.models.registry import create
from slimssl.nn.switch import SlimmableModel
from slimssl.recipes.base import Recipe
from slimssl.recipes.dspnet import DSPNet
from slimssl.recipes.sampling import UniversalSandwich
from slimssl.recipes.slimclr import SlimCLR, individual
from slimssl.recipes.supervised import SupervisedSlimmable, sandwich_sampler
from slimssl.recipes.us3l import US3L, GroupReg
from slimssl.recipes.usnet import NaiveSlimmable


def build_backbone(cfg: Config) -> SlimmableModel:
    m = cfg.model
    kwargs = dict(widths=m.widths, norm=m.norm, stem=m.stem, num_classes=0)
    if m.width_range is not None:
        kwargs["width_range"] = tuple(m.width_range)
    if m.depths is not None:
        kwargs["depth_choices"] = m.depths
    if m.base_width is not None:
        kwargs["base_width"] = m.base_width
    if cfg.recipe.name == "individual" and len(m.widths) != 1:
        raise ConfigError(f"recipe 'individual' trains one network: give exactly one width in "
                          f"model.widths, got {m.widths}")
    return create(m.arch, **kwargs)


def _build_method(cfg: Config, backbone: SlimmableModel) -> SSLMethod:
    m = cfg.method
    if m.name == "mocov2":
        return MoCoV2(backbone, m.proj_hidden, m.proj_dim, m.queue_size, m.temperature,
                      bn_splits=m.bn_splits)
    if m.name == "mocov3":
        return MoCoV3(backbone, m.proj_hidden or 4096, m.proj_dim, m.pred_hidden or 4096,
                      m.temperature)
    if m.name == "byol":
        return BYOL(backbone, m.proj_hidden or 4096, m.proj_dim, m.pred_hidden or 4096)
    if m.name == "simsiam":
        return SimSiam(backbone, m.proj_hidden or 2048, m.proj_dim, m.pred_hidden or 512)
    if m.name == "simclr":
        return SimCLR(backbone, m.proj_hidden or 2048, m.proj_dim, m.temperature)
    if m.name == "simclr_momentum":
        return MomentumSimCLR(backbone, m.proj_hidden or 2048, m.proj_dim, m.pred_hidden or 2048,
                              m.temperature, m.distill_head, m.distill_loss)
    if m.name == "supervised":
        return SupervisedClassifier(backbone, m.num_classes, m.label_smoothing)
    raise NotImplementedError(f"method {m.name!r} is not implemented")


def build_method(cfg: Config, backbone: SlimmableModel) -> SSLMethod:
    method = _build_method(cfg, backbone)
    for key, enable in (("momentum_bn", method.use_momentum_bn),
                        ("fix_pred_lr", method.use_fixed_predictor_lr)):
        if getattr(cfg.method, key):
            try:
                enable()
            except ValueError as err:
                raise ConfigError(f"config key 'method.{key}': {err}; set it to false") from None
    return method


def _require_norm(cfg: Config, model: SlimmableModel, mode: str) -> None:
    if model.norm_mode != mode:
        raise ConfigError(f"recipe {cfg.recipe.name!r} needs model.norm={mode!r}, got "
                          f"{model.norm_mode!r}")


def build_recipe(cfg: Config, model: SlimmableModel) -> Recipe:
    r = cfg.recipe
    family = model.family()
    if r.name == "slimclr":
        slow = cfg.train.epochs / 2 if r.slow_start_epochs is None else r.slow_start_epochs
        return SlimCLR(family, slow, r.distill, r.distill_temperature, r.weights)
    if r.name == "individual":
        return individual(model.full_spec)
    seed, epochs = cfg.train.seed, cfg.train.epochs
    if r.name == "supervised":
        if r.inplace_distill not in ("none", "kl"):
            raise ConfigError(f"recipe 'supervised' distils soft labels: recipe.inplace_distill "
                              f"must be 'kl' or 'none', got {r.inplace_distill!r}")
        return SupervisedSlimmable(sandwich_sampler(model, r.num_sampled, seed),
                                   distill=r.inplace_distill == "kl",
                                   label_weight=r.kd_label_weight)
    if r.name == "dspnet":
        return DSPNet(family, r.num_sampled, r.warmup_full_epochs, seed)
    if r.name == "snet":
        _require_norm(cfg, model, "switchable")
        return NaiveSlimmable(family=family, distill=r.inplace_distill,
                              temperature=cfg.method.temperature)
    w_min, w_max = model.width_range
    if r.name == "usnet":
        _require_norm(cfg, model, "universal")
        return NaiveSlimmable(width_sampler=UniversalSandwich(w_min, w_max, r.num_sampled, seed),
                              distill=r.inplace_distill, temperature=cfg.method.temperature)
    if r.name == "us3l":
        _require_norm(cfg, model, "universal")
        reg = (GroupReg(r.group_reg, r.group_reg_alpha, r.group_reg_groups,
                        r.group_reg_warmup_epochs) if r.group_reg > 0 else None)
        return US3L(w_min, w_max, r.num_sampled, epochs, r.dynamic_sampling, reg, seed)
    raise NotImplementedError(f"recipe {r.name!r} is not implemented")


def load_pretrained(path: str, map_location: str = "cpu") -> tuple[Config, SSLMethod]:
    """Rebuild a pre-trained method (online + target) from a run dir or a checkpoint file.

    The config travels inside the checkpoint, so no other file is needed; loading uses
    ``weights_only=True`` (no pickle code can run).
    """
    from slimssl.engine.checkpoint import check_state_dict_compatible, resolve_resume

    _, ckpt = resolve_resume(path, map_location)
    cfg = Config.from_dict(ckpt["config"])
    method = build_method(cfg, build_backbone(cfg))
    check_state_dict_compatible(method.state_dict(), ckpt["method"], "model")
    method.load_state_dict(ckpt["method"])
    return cfg, method.eval()
