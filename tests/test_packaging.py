"""Packaging: configs found by name (in the source tree and inside a built wheel), ``--version``,
``slimssl config show``, and a ``slimssl --help`` that does not import torch or matplotlib."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import slimssl
from slimssl.cli import main
from slimssl.cli.config import field_comments, format_config
from slimssl.engine.config import (Config, ConfigError, load_config, packaged_configs,
                                   resolve_config)

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path, pythonpath: Path | None = None) -> str:
    env = dict(os.environ, PYTHONPATH=str(pythonpath or REPO))
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_and_version_do_not_import_torch(tmp_path):
    # every command's parser is built for --help; none may import the heavy libraries
    out = _python(
        "import sys\nfrom slimssl.cli import main\n"
        "for argv in (['--help'], ['--version'], ['pretrain', '--help'], ['diagnose', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('LOADED', sorted(m for m in ('torch', 'matplotlib', 'torchvision', 'numpy') "
        "if m in sys.modules))", tmp_path)
    assert out.splitlines()[-1] == "LOADED []"
    assert f"slimssl {slimssl.__version__}" in out


def test_version_matches_the_installed_metadata(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"slimssl {slimssl.__version__}"
    assert importlib.metadata.version("slimssl") == slimssl.__version__


def test_packaged_configs_are_the_repository_configs():
    assert set(packaged_configs()) == {p.stem for p in (REPO / "configs").glob("*.yaml")}
    assert "slimclr_mocov2_cifar10" in packaged_configs()


def test_config_by_name_by_path_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    by_name = load_config("slimclr_mocov2_cifar10")
    assert by_name == load_config("slimclr_mocov2_cifar10.yaml")
    assert by_name == load_config(str(REPO / "configs" / "slimclr_mocov2_cifar10.yaml"))
    assert by_name.model.arch == "resnet18"  # the file's value, not the default
    own = tmp_path / "slimclr_mocov2_cifar10.yaml"  # a local file of that name wins
    own.write_text("train:\n  epochs: 3\n")
    assert load_config("slimclr_mocov2_cifar10.yaml").train.epochs == 3
    with pytest.raises(ConfigError, match="did you mean 'slimclr_mocov2_cifar10'"):
        resolve_config("slimclr_mocov2_cifar1")
    with pytest.raises(ConfigError, match="pass --config slimclr_mocov3_r50_300ep"):
        resolve_config("configs/slimclr_mocov3_r50_300ep.yaml")


def _leaf_keys(cfg, prefix=""):
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            yield from _leaf_keys(v, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_every_config_key_has_a_comment():
    missing = []
    for cls in [Config] + [type(getattr(Config(), f.name)) for f in dataclasses.fields(Config)]:
        if cls is Config or dataclasses.is_dataclass(cls):
            comments = field_comments(cls)
            missing += [f"{cls.__name__}.{f.name}" for f in dataclasses.fields(cls)
                        if not dataclasses.is_dataclass(getattr(cls(), f.name))
                        and not comments.get(f.name)]
    assert missing == []


def test_field_comments_join_the_lines_above_and_the_end_of_line():
    comments = field_comments(Config().recipe.__class__)
    assert comments["kd_label_weight"].startswith("supervised + kl: weight of each student's")
    assert comments["group_reg"] == ("US3L lambda (5e-5); > 0 replaces weight decay "
                                     "(optim.weight_decay=0)")


@pytest.mark.parametrize("name,overrides", [(None, []),
                                            ("slimclr_mocov2_cifar10", ["optim.lr=0.5"])])
def test_config_show_is_yaml_that_loads_back(tmp_path, capsys, name, overrides):
    argv = ["config", "show"] + ([name] if name else []) + [f"--set={o}" for o in overrides]
    assert main(argv) == 0
    text = capsys.readouterr().out
    saved = tmp_path / "shown.yaml"
    saved.write_text(text)
    assert load_config(str(saved)) == load_config(name, overrides)
    lines = text.splitlines()
    for key in _leaf_keys(Config()):  # every key, with its comment on the line(s) above
        indent = "  " * key.count(".")
        line = next(i for i, s in enumerate(lines) if s.startswith(f"{indent}{key.split('.')[-1]}:")
                    and (indent or not s.startswith(" ")))
        assert lines[line - 1].lstrip().startswith("#"), key
    if name:  # a value that differs from the default names the default
        i = lines.index('  lr: 0.5')
        assert lines[i - 1].endswith("default: 0.1")


def test_format_config_marks_only_changed_values():
    cfg = Config()
    cfg.train.epochs = 3
    text = format_config(cfg, "title")
    assert re.findall(r"(?:# |; )default: .*", text) == ["; default: 16"]
    assert yaml.safe_load(text)["train"]["epochs"] == 3


@pytest.mark.skipif(importlib.util.find_spec("build") is None, reason="needs the 'build' package")
def test_wheel_holds_the_configs_and_finds_them_by_name(tmp_path):
    """Build a wheel from a copy of the source (no network: --no-isolation) and look a config up
    by name from the unpacked wheel, outside the repository."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "configs", src / "configs")
    shutil.copytree(REPO / "slimssl", src / "slimssl", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o",
                           str(tmp_path / "dist"), str(src)], capture_output=True, text=True,
                          timeout=300)
    if done.returncode and "Missing dependencies" in done.stdout + done.stderr:
        pytest.skip("the build backend's requirements (setuptools>=77) are not installed")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("slimssl-*.whl")
    assert wheel.name.startswith(f"slimssl-{slimssl.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert {Path(n).stem for n in names if n.startswith("slimssl/configs/")} == set(
        packaged_configs())
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    out = _python("from slimssl.engine.config import load_config, resolve_config\n"
                  "print(resolve_config('slimclr_mocov2_cifar10'))\n"
                  "print(load_config('slimclr_mocov2_cifar10').model.arch)", tmp_path, unpacked)
    path, arch = out.split()
    assert Path(path).is_relative_to(unpacked) and arch == "resnet18"
