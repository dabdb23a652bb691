"""Every command in docs/ runs: the fenced blocks tagged ``bash test`` / ``python test``.

The tutorials run in one folder that holds a tiny generated ImageFolder ``my_images`` (2
classes, 16 px); the first one's run (``runs/mine``) is made once, by a fixture, for the later
ones. The commands run as written, with two additions that keep the suite fast: ``slimssl
pretrain`` gets :data:`TINY` appended (the tests' tiny run, :data:`tinyrun.TINY_OVERRIDES`;
later arguments win), and ``slimssl reproduce`` gets ``--dry-run`` (its full smoke run is
tests/test_reproduce.py's job).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tinyrun import TINY_OVERRIDES, write_image_folder

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))

TINY = " ".join(f"--set {shlex.quote(o)}" for o in [
    *TINY_OVERRIDES, "method.bn_splits=1", "optim.warmup_epochs=0", "eval.knn_every_epochs=0",
    "eval.recalib_images=32"])
APPEND = {"slimssl pretrain": TINY, "slimssl reproduce": "--dry-run"}
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_CODE_LANGS = {"bash", "sh", "shell", "console", "python", "py"}


def blocks(path: Path) -> list[tuple[str, list[str], str]]:
    """``(language, tags, code)`` of every fenced block of a Markdown file."""
    out = []
    for info, code in _FENCE.findall(path.read_text()):
        words = info.split()
        out.append((words[0] if words else "", words[1:], code))
    return out


def _shell(code: str) -> str:
    """The block's commands, continuation lines joined, with :data:`APPEND` applied."""
    lines = []
    for line in code.replace("\\\n", " ").splitlines():
        for prefix, extra in APPEND.items():
            if line.strip().startswith(prefix + " "):
                line = f"{line.split('#')[0].rstrip()} {extra}"
        lines.append(line)
    return "\n".join(lines)


def test_every_code_block_says_whether_it_runs():
    untagged = [(p.relative_to(REPO), lang) for p in sorted(DOCS.rglob("*.md"))
                for lang, tags, _ in blocks(p)
                if lang in _CODE_LANGS and not {"test", "notest"} & set(tags)]
    assert untagged == [], "tag each code block 'test' (run here) or 'notest'"


def test_shell_rewrite_appends_only_to_its_commands():
    code = "slimssl pretrain --config a.yaml \\\n  --out-dir runs/x   # note\ncat x\n"
    assert _shell(code) == f"slimssl pretrain --config a.yaml    --out-dir runs/x {TINY}\ncat x"


def _run_blocks(tutorial: Path, workdir: Path) -> list[tuple[str, float]]:
    """Run the tutorial's tested blocks in ``workdir``; ``(first line, seconds)`` of each."""
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    slimssl = f"{shlex.quote(sys.executable)} -m slimssl.cli"
    ran = []
    for lang, tags, code in blocks(tutorial):
        if "test" not in tags:
            continue
        if lang == "python":
            cmd = [sys.executable, "-c", code]
        else:
            cmd = ["bash", "-euo", "pipefail", "-c",
                   f'slimssl() {{ {slimssl} "$@"; }}\n{_shell(code)}']
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (f"{tutorial.name}: block failed\n{code}\n--- stdout\n"
                                      f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
        ran.append((code.splitlines()[0], time.perf_counter() - start))
    assert ran, f"{tutorial.name} has no tested block"
    return ran


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder with ``my_images`` and the run of the first tutorial (``runs/mine``), which the
    later tutorials use (so each test passes alone and in any order)."""
    work = tmp_path_factory.mktemp("docs")
    write_image_folder(work / "my_images", size=16)
    _run_blocks(TUTORIALS[0], work)
    return work


def test_first_tutorial_made_the_run(workdir):
    assert TUTORIALS[0].name == "1-pretrain-your-folder.md"
    assert (workdir / "runs/mine/results.md").is_file()
    assert (workdir / "runs/mine/export/w0.50/model.safetensors").is_file()


@pytest.mark.parametrize("tutorial", TUTORIALS[1:], ids=[p.stem for p in TUTORIALS[1:]])
def test_tutorial_commands_run(tutorial, workdir):
    _run_blocks(tutorial, workdir)
