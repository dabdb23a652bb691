"""A family as a model repository (``slimssl export --format hub``, :mod:`slimssl.hub`): the
folder's members load back as plain models computing what the slimmable members compute, the
model card's torchvision builder runs with slimssl unimportable, and pulls are tested against a
local Hugging Face cache only (HF_HUB_OFFLINE=1: nothing is downloaded)."""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import json
import re
import sys
import types

import pytest
import torch

import slimssl.hub
from slimssl.cli import main
from slimssl.cli.members import open_run
from slimssl.eval.report import write_results
from slimssl.export import extract_subnet
from slimssl.export.profile import count_macs, count_params
from slimssl.models import SlimResNet, create
from slimssl.nn import SubnetSpec
from interop_util import trained_like
from tinyrun import train_tiny_run, write_image_folder

# a fake evaluation table: the card must carry these numbers
RESULTS = {1.0: {"knn_top1_k200": 71.5, "linear_switchable_top1": 74.25},
           0.5: {"knn_top1_k200": 63.25, "linear_switchable_top1": 66.0}}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-epoch ResNet-18 run (ImageNet stem: its full-width member is timm-expressible)."""
    out = tmp_path_factory.mktemp("run")
    data = write_image_folder(tmp_path_factory.mktemp("images"))
    train_tiny_run(data, out, "model.arch=resnet18", "model.stem=imagenet")
    write_results(out, [{"subnet": f"w{w:.2f}", "width": w, "depth": None, **acc}
                        for w, acc in RESULTS.items()])
    return out


@pytest.fixture(scope="module")
def run_backbone(run_dir):
    return open_run(str(run_dir)).backbone


def _member_output(backbone, width, x):
    with torch.no_grad(), backbone.subnet(width):
        return backbone(x)


def test_cli_hub_folder_loads_every_member(run_dir, run_backbone, tmp_path, monkeypatch,
                                           capsys):
    folder = tmp_path / "hub"
    assert main(["export", str(run_dir), "--format", "hub", "--out", str(folder)]) == 0
    assert "w0.50: hub max|diff| 0.0e+00" in capsys.readouterr().out
    config = json.loads((folder / "config.json").read_text())
    assert [m["label"] for m in config["members"]] == ["w1.00", "w0.50"]
    assert config["training_config"]["model"]["arch"] == "resnet18"
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: slimssl\n")
    x = torch.randn(3, 3, 8, 8)
    for m in config["members"]:
        assert (folder / m["file"]).is_file()
        plain = slimssl.hub.load(folder, width=m["width"])
        assert plain.preprocessing["image_size"] == 8
        assert all(type(t).__module__.startswith(("torch.nn", "slimssl.export"))
                   for t in plain.modules())
        with torch.no_grad():
            assert (plain(x) - _member_output(run_backbone, m["width"], x)).abs().max() <= 1e-5
        assert m["params"] == count_params(plain) == sum(p.numel() for p in plain.parameters())
        assert m["macs"] == count_macs(plain, 8)
        # the card's row: params (M), MACs (G), kNN and linear top-1 from results.json
        acc = RESULTS[m["width"]]
        row = (f"| {m['label']} | {m['params'] / 1e6:.2f} | {m['macs'] / 1e9:.3f} | "
               f"{acc['knn_top1_k200']:.2f} | {acc['linear_switchable_top1']:.2f} |")
        assert row in card
    assert config["members"][0]["timm"]["kwargs"]["layers"] == [2, 2, 2, 2]
    assert config["members"][1]["timm"] is None  # 32-channel stem: not a timm ResNet
    if importlib.util.find_spec("timm") is not None:  # the card's timm line, as pasted
        monkeypatch.chdir(folder)
        namespace = {}
        exec(next(b for b in _code_blocks(card) if "import timm" in b), namespace)  # noqa: S102
        with torch.no_grad():
            built = namespace["model"].eval()
            assert (built(x) - _member_output(run_backbone, 1.0, x)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="no member with width 0.3; this family has w1.00, "
                                         "w0.50"):
        slimssl.hub.load(folder, width=0.3)


def test_cli_timm_export_of_the_full_width_member(run_dir, run_backbone, tmp_path, capsys):
    timm = pytest.importorskip("timm")
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "timm", "--widths", "1",
                 "--out", str(out)]) == 0
    assert "w1.00: timm max|diff| 0.0e+00" in capsys.readouterr().out
    config = json.loads((out / "w1.00" / "config.json").read_text())
    model = timm.create_model(config["architecture"], **config["model_args"],
                              checkpoint_path=str(out / "w1.00" / "model.safetensors")).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert (model(x) - _member_output(run_backbone, 1.0, x)).abs().max() <= 1e-5


def test_cli_timm_export_refuses_narrow_members_before_writing(run_dir, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "timm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "member w0.50" in err and "stem has 32 channels" in err and "torchvision" in err
    assert not out.exists()


def _code_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def _without_slimssl(name, *args, **kwargs):
    if name == "slimssl" or name.startswith("slimssl."):
        raise ImportError(f"{name} must not be needed by the model card's builder")
    return builtins.__import__(name, *args, **kwargs)


@pytest.mark.parametrize("build,width", [
    # bottlenecks (one per stage) at 0.3: their outputs round on their own (77 != 4 x 19)
    (lambda w: SlimResNet("bottleneck", (1, 1, 1, 1), widths=(1.0, w)), 0.3),
    (lambda w: create("resnet18", widths=(1.0, w), stem="cifar", num_classes=7), 0.25),
    # slimmed MobileNet layers round their own widths, unlike torchvision's blocks: V2 at 0.35
    # hidden 32 != round(8 x 6); V3-Small at 0.3 an SE squeeze of 40 != make_div(176 // 4) =
    # 48 and the last conv 176 != 6 x 32
    (lambda w: create("mobilenet_v2", widths=(1.0, w), num_classes=5), 0.35),
    (lambda w: create("mobilenet_v3_small", widths=(1.0, w), stem="cifar"), 0.3),
])
def test_card_torchvision_builder_rebuilds_a_narrow_member(tmp_path, monkeypatch, build, width):
    model = trained_like(build(width))
    widths = model.widths
    members = [(SubnetSpec(w), extract_subnet(model, w), {"params": 0, "macs": 0})
               for w in widths]
    info = {"backbone": type(model).__name__,
            "preprocessing": {"mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 16}}
    folder = slimssl.hub.write_family(tmp_path / "hub", members, info)
    blocks = _code_blocks((folder / "README.md").read_text())
    builder = next(b for b in blocks if "def build_torchvision(" in b)
    usage = next(b for b in blocks if "build_torchvision(member" in b)
    assert not re.search(r"^\s*(import|from)\s+slimssl", builder + usage, flags=re.M)
    namespace = {"__builtins__": {**vars(builtins), "__import__": _without_slimssl}}
    monkeypatch.chdir(folder)
    exec(builder, namespace)  # noqa: S102 -- the card's text, as a user would paste it
    exec(usage, namespace)  # noqa: S102
    rebuilt = namespace["model"]
    import torchvision

    assert type(rebuilt).__module__.startswith("torchvision.models.")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad(), model.subnet(width):
        assert (rebuilt(x) - model(x)).abs().max() <= 1e-5


def _fake_hub_cache(cache, repo_id, folder):
    """The Hugging Face cache layout of one downloaded revision of ``repo_id``."""
    commit = "0" * 40
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())


def test_load_by_repo_id_reads_the_hub_cache_offline(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    model = trained_like(create("resnet10_narrow", widths=(1.0, 0.5), stem="cifar"))
    members = [(SubnetSpec(w), extract_subnet(model, w), {"params": 0, "macs": 0})
               for w in (1.0, 0.5)]
    info = {"backbone": "resnet10_narrow",
            "preprocessing": {"mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 8}}
    folder = slimssl.hub.write_family(tmp_path / "hub", members, info)
    _fake_hub_cache(tmp_path / "cache", "someone/family", folder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    plain = slimssl.hub.load("someone/family", width=0.5)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), model.subnet(0.5):
        assert (plain(x) - model(x)).abs().max() <= 1e-5
    with pytest.raises(Exception, match="offline|cache|OFFLINE"):  # not cached: no download
        slimssl.hub.load("someone/other", width=0.5)


def test_hub_transfers_without_huggingface_hub_say_how_to_install(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert main(["export", str(tmp_path / "no-run"), "--format", "hub", "--push", "a/b"]) == 2
    assert "pip install 'slimssl[hub]'" in capsys.readouterr().err  # before the run is read
    with pytest.raises(ValueError, match=r"pip install 'slimssl\[hub\]'"):
        slimssl.hub.load("someone/family", width=0.5)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hub repository"):
        slimssl.hub.load(tmp_path / "missing", width=0.5)


def test_push_uploads_the_folder(tmp_path, monkeypatch):
    model = create("resnet10_narrow", widths=(1.0,), stem="cifar").eval()
    folder = slimssl.hub.write_family(
        tmp_path / "hub", [(SubnetSpec(1.0), extract_subnet(model, 1.0), {"params": 0, "macs": 0})],
        {"backbone": "resnet10_narrow",
         "preprocessing": {"mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 8}})
    calls = []

    class FakeApi:  # records what would go over the network
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", folder_path, repo_id))

    fake = types.ModuleType("huggingface_hub")
    fake.__spec__ = importlib.machinery.ModuleSpec("huggingface_hub", None)
    fake.HfApi = FakeApi
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    url = slimssl.hub.push(folder, "someone/family", private=True, token="t")
    assert url == "https://huggingface.co/someone/family"
    assert calls == [("token", "t"), ("create", "someone/family", True, True),
                     ("upload", str(folder), "someone/family")]
    with pytest.raises(FileNotFoundError, match="config.json"):
        slimssl.hub.push(tmp_path, "someone/family")


def test_depth_family_members_are_picked_by_width_and_depth(tmp_path):
    """DSPNet-style families: a width names several members, the depth picks one."""
    model = trained_like(create("resnet18", widths=(1.0, 0.5),
                                depth_choices=[(2, 2, 2, 2), (1, 1, 1, 1)]))
    specs = model.family()
    members = [(s, extract_subnet(model, s), {"params": 0, "macs": 0}) for s in specs]
    info = {"backbone": "resnet18",
            "preprocessing": {"mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 32}}
    folder = slimssl.hub.write_family(tmp_path / "hub", members, info)
    config = slimssl.hub.read_config(folder)
    assert [m["label"] for m in config["members"]] == [s.label for s in specs]
    shallow = next(m for m in config["members"] if m["label"] == "w1.00 d1-1-1-1")
    assert shallow["timm"]["kwargs"]["layers"] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match=r"several depths \[\[2, 2, 2, 2\], \[1, 1, 1, 1\]\]"):
        slimssl.hub.load(folder, width=0.5)
    plain = slimssl.hub.load(folder, width=0.5, depth=[1, 1, 1, 1])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), model.subnet(SubnetSpec(0.5, (1, 1, 1, 1))):
        assert (plain(x) - model(x)).abs().max() <= 1e-5
    assert len(plain.layer3) == 1
