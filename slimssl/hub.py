"""A pre-trained family as a model repository: write, load, push and pull (Hugging Face layout).

``slimssl export RUN --format hub --out DIR`` writes ``DIR`` as a model repository:

* ``config.json``: the family (format, backbone, preprocessing, the run's full training
  configuration) and one entry per member: its spec, plain architecture and channel counts,
  parameters, MACs, the accuracies of the run's ``results.json``, and where timm can build it,
  the exact ``timm.create_model`` arguments;
* ``<member>.safetensors`` (``w1.00.safetensors``, ``w0.50.safetensors``, ...): one file per
  member holding that member's physically small plain weights (no pickle);
* ``README.md``: the model card, with the per-member table, the recipe and the data, and how to
  load a member with slimssl, with torchvision alone, or with timm.

``load(DIR_OR_REPO_ID, width=0.5)`` returns the plain member (standard torch layers, eval mode).
A repository id (``user/name``) is fetched with ``huggingface_hub`` (``pip install
'slimssl[hub]'``), which is imported only then; so is :func:`push`. ``HF_HUB_OFFLINE=1`` makes a
pull read the local Hugging Face cache only.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
from pathlib import Path
from typing import Any, Sequence

from safetensors.torch import load_file, save_file
from torch import nn

from slimssl.nn.spec import WIDTH_TOL, SubnetSpec

__all__ = ["CONFIG_FILE", "FORMAT", "load", "model_card", "push", "read_config", "require_hub",
           "write_family"]

FORMAT, FORMAT_VERSION = "slimssl-family", 1
CONFIG_FILE, CARD_FILE = "config.json", "README.md"


def require_hub() -> Any:
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ValueError("pushing to or pulling from the Hugging Face Hub needs huggingface_hub: "
                         "pip install 'slimssl[hub]' (a local folder loads without it)")
    import huggingface_hub

    return huggingface_hub


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def member_entry(plain: nn.Module, spec: SubnetSpec, stats: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` entry of one member; ``stats``: params, MACs, accuracies (numbers)."""
    from slimssl.export.timm_export import NotExpressibleError, timm_args

    try:
        name, kwargs = timm_args(plain.arch_name, plain.arch_config)
        timm = {"model_name": name, "kwargs": kwargs}
    except (NotExpressibleError, NotImplementedError):
        timm = None
    return {"label": spec.label, **spec.to_dict(), "file": f"{spec.slug}.safetensors",
            "arch": plain.arch_name, "config": plain.arch_config,
            "num_features": int(plain.num_features), **stats, "timm": timm}


def write_family(directory: str | Path, members: Sequence[tuple[SubnetSpec, nn.Module, dict]],
                 info: dict[str, Any]) -> Path:
    """Write ``config.json``, one safetensors file per member and ``README.md``.

    ``members``: ``(spec, plain module, stats)`` per member, largest first; ``stats`` holds
    ``params``, ``macs`` and any accuracy (``knn_top1_k200``, ``linear_switchable_top1``, ...).
    ``info``: ``backbone`` (registered name), ``preprocessing`` (``mean``, ``std``,
    ``image_size``), ``data`` (``path``, ``train_images``) and ``training_config`` (the run's
    config as a dict)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for spec, plain, stats in members:
        entry = member_entry(plain, spec, stats)
        state = {k: v.detach().contiguous().cpu() for k, v in plain.state_dict().items()}
        save_file(state, str(directory / entry["file"]))
        entries.append(entry)
    from slimssl import __version__

    config = {"format": FORMAT, "version": FORMAT_VERSION, "library_name": "slimssl",
              "slimssl_version": __version__, **info, "members": entries}
    (directory / CONFIG_FILE).write_text(json.dumps(_json_safe(config), indent=2))
    (directory / CARD_FILE).write_text(model_card(config))
    return directory


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# the model card
# --------------------------------------------------------------------------------------------


def _get(tree: dict, dotted: str, default: Any = "-") -> Any:
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return default
        tree = tree[key]
    return tree


def model_card(config: dict[str, Any]) -> str:
    """The README of a family folder (Hugging Face model card: YAML front matter + markdown)."""
    from slimssl.eval.report import markdown_table

    train = config.get("training_config", {})
    members = config["members"]
    method, recipe = _get(train, "method.name"), _get(train, "recipe.name")
    backbone = config.get("backbone", members[0]["arch"])
    pre = config["preprocessing"]
    data = config.get("data", {})
    rows = [{"subnet": m["label"], "params_m": m["params"] / 1e6, "macs_g": m["macs"] / 1e9,
             **{k: v for k, v in m.items() if k.startswith(("knn_", "linear_", "semisup_"))}}
            for m in members]
    narrow = members[-1]
    out = [
        "---", "library_name: slimssl", "pipeline_tag: image-feature-extraction",
        "tags:", "- slimmable-networks", "- self-supervised-learning", f"- {method}",
        f"- {recipe}", "---", "",
        f"# Slimmable {backbone}: {recipe} + {method}", "",
        f"One self-supervised pre-training run of a slimmable {backbone} (slimssl "
        f"{config.get('slimssl_version', '')}) gives {len(members)} networks that share their "
        "leading channels. Each is stored here as its own plain model (standard torch layers, "
        "physically that size): its weights in `<member>.safetensors`, its architecture in "
        "`config.json`.", "",
        "## Members", "",
        markdown_table(rows, drop_empty=True).rstrip(), "",
        f"Parameters and MACs (multiply-accumulates) of the backbone at "
        f"{pre['image_size']}x{pre['image_size']} input; accuracies (top-1, %) as the run's "
        "`results.json` recorded them (kNN on frozen features, linear probes); `-`: not "
        "evaluated.", "",
        "## Use", "",
        "```python", "import slimssl.hub", "",
        f"model = slimssl.hub.load(\"REPO_ID_OR_FOLDER\", width={narrow['width']:g}"
        + (f", depth={narrow['depth']}" if narrow.get("depth") else "") + ")",
        "features = model(images)  # (N, num_features): pooled features, or logits with a head",
        "```", "",
        f"Input: RGB in [0, 1] at {pre['image_size']}x{pre['image_size']}, normalised with "
        f"mean {_fmt(pre['mean'])} and std {_fmt(pre['std'])}.", "",
    ]
    from slimssl.export.torchvision_builder import BUILDERS

    if all(m["arch"] in BUILDERS for m in members):
        out += _torchvision_section(narrow)
    timm_members = [m for m in members if m.get("timm")]
    out += _timm_section(timm_members, len(members))
    out += [
        "## Training recipe", "",
        f"- method: `{method}`, recipe: `{recipe}` (distillation `{_get(train, 'recipe.distill')}`)",
        f"- backbone: `{backbone}`, stem `{_get(train, 'model.stem')}`, widths "
        f"{_get(train, 'model.widths')}, norm `{_get(train, 'model.norm')}`"
        + (f", depths {_get(train, 'model.depths')}" if _get(train, "model.depths", None) else ""),
        f"- {_get(train, 'train.epochs')} epochs, batch {_get(train, 'data.batch_size')}, "
        f"optimizer `{_get(train, 'optim.name')}` lr {_get(train, 'optim.lr')} weight decay "
        f"{_get(train, 'optim.weight_decay')}, seed {_get(train, 'train.seed')}",
        "- every setting of the run: `training_config` in `config.json` (the keys of the run's "
        "`config.yaml`)", "",
        "## Data", "",
        f"- pre-training data: `{data.get('path') or 'digits (embedded default)'}`, "
        f"{data.get('train_images', '-')} training images at "
        f"{pre['image_size']}x{pre['image_size']}", "",
    ]
    return "\n".join(out)


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def _torchvision_section(member: dict) -> list[str]:
    from slimssl.export import torchvision_builder

    source = inspect.getsource(torchvision_builder).strip()
    return [
        "### Without slimssl: torchvision", "",
        "Every member is a torchvision model built from torchvision's blocks with other channel "
        "counts; this builder needs only torch and torchvision:", "",
        "```python", source, "```", "",
        "```python", "import json", "from safetensors.torch import load_file", "",
        "config = json.load(open(\"config.json\"))",
        f"member = next(m for m in config[\"members\"] if m[\"label\"] == "
        f"{json.dumps(member['label'])})",
        "model = build_torchvision(member[\"arch\"], member[\"config\"])",
        "model.load_state_dict(load_file(member[\"file\"]))",
        "model.eval()", "```", "",
        "A `slimssl export --format safetensors` folder works the same way: "
        "`arch = json.load(open(\"arch.json\"))`, `build_torchvision(arch[\"arch\"], "
        "arch[\"config\"])` and `model.safetensors`.", "",
    ]


def _timm_section(members: list[dict], total: int) -> list[str]:
    from slimssl.export.timm_export import create_model_call

    if not members:
        return ["### timm", "",
                "No member here can be built by `timm.create_model`: timm's ResNet fixes a "
                "64-channel 7x7 stem with max-pool, so narrower members, other base widths and "
                "the CIFAR stem are not expressible (use the torchvision builder above).", ""]
    lines = ["### Without slimssl: timm", ""]
    if len(members) < total:
        lines += ["Only these members can be built by `timm.create_model` (timm's ResNet fixes "
                  "a 64-channel 7x7 stem with max-pool; the others need the torchvision builder):",
                  ""]
    lines += ["```python", "import timm", ""]
    lines += [f"model = {create_model_call(m['timm']['model_name'], m['timm']['kwargs'], m['file'])}"
              f"  # {m['label']}" for m in members]
    return lines + ["```", ""]


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _is_local(path_or_repo: str | Path) -> bool:
    return Path(path_or_repo).expanduser().is_dir()


def _fetch(path_or_repo: str | Path, filename: str, revision: str | None) -> Path:
    """A file of the family: from the folder, or from the Hub (cache first)."""
    if _is_local(path_or_repo):
        path = Path(path_or_repo).expanduser() / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a family folder written by slimssl "
                                    f"export --format hub holds {CONFIG_FILE} and one "
                                    ".safetensors file per member")
        return path
    repo = str(path_or_repo)
    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{repo!r} is neither a folder nor a Hub repository id "
                                "(user/name)")
    hub = require_hub()
    return Path(hub.hf_hub_download(repo, filename, revision=revision))


def read_config(path_or_repo: str | Path, revision: str | None = None) -> dict[str, Any]:
    """The family's ``config.json`` (checked to be a slimssl family)."""
    config = json.loads(_fetch(path_or_repo, CONFIG_FILE, revision).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path_or_repo} is not a slimssl family (config.json format "
                         f"{config.get('format')!r}, expected {FORMAT!r})")
    return config


def _pick(config: dict, width: float, depth: Sequence[int] | None) -> dict:
    depth = list(depth) if depth is not None else None
    for m in config["members"]:
        if abs(m["width"] - width) <= WIDTH_TOL and (depth is None or m["depth"] == depth):
            if depth is None and m["depth"] is not None:
                choices = [x["depth"] for x in config["members"]
                           if abs(x["width"] - width) <= WIDTH_TOL]
                if len(choices) > 1:
                    raise ValueError(f"width {width:g} has several depths {choices}: pass "
                                     "depth=[...] to choose one")
            return m
    raise ValueError(f"no member with width {width:g}" + (f" and depth {depth}" if depth else "")
                     + "; this family has " + ", ".join(m["label"] for m in config["members"]))


def load(path_or_repo: str | Path, width: float = 1.0, depth: Sequence[int] | None = None,
         revision: str | None = None) -> nn.Module:
    """The plain member at ``width`` (and ``depth`` for depth families) of a family folder or
    Hub repository, in eval mode; only that member's weights are read (or downloaded)."""
    from slimssl.export.extract import plain_class

    config = read_config(path_or_repo, revision)
    member = _pick(config, float(width), depth)
    module = plain_class(member["arch"]).from_config(member["config"])
    weights = _fetch(path_or_repo, member["file"], revision)
    module.load_state_dict(load_file(str(weights)), strict=True)
    module.preprocessing = dict(config["preprocessing"])
    return module.eval()


def push(directory: str | Path, repo_id: str, private: bool = False, token: str | None = None,
         commit_message: str = "slimssl family") -> str:
    """Upload a family folder to the Hub (creating the repository if needed); returns its URL."""
    read_config(directory)  # refuse a folder that is not a family before touching the network
    hub = require_hub()
    api = hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(directory), repo_id=repo_id, commit_message=commit_message)
    return f"https://huggingface.co/{repo_id}"
