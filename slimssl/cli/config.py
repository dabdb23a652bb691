"""``slimssl config list`` and ``slimssl config show [NAME]``: the configuration, documented.

``show`` prints every key of the run configuration with its value (the built-in default, or the
value in config NAME: a packaged recipe's name or a YAML path) and the comment that documents it
in the schema (:mod:`slimssl.engine.config`; the comments are read from its source, so the schema
is the one place they are written). The output is valid YAML that loads back to the same config:
``slimssl config show slimclr_mocov2_cifar10 > mine.yaml``, edit, ``--config mine.yaml``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
from typing import Any

__all__ = ["field_comments", "format_config", "add_parser"]

_WIDTH = 99


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` of a config dataclass, from its source: the comment lines right above
    a field and the comment at the end of its line(s), joined."""
    src = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whole line is a comment)
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(),
                                      tok.line.lstrip().startswith("#"))
    out = {}
    for node in ast.parse(src).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line in comments and comments[line][1]:
            above.insert(0, comments[line][0])
            line -= 1
        after = [comments[n][0] for n in range(node.lineno, node.end_lineno + 1)
                 if n in comments and not comments[n][1]]
        out[node.target.id] = " ".join(above + after)
    return out


def _yaml_value(v: Any) -> str:
    """One value in YAML flow style (JSON is valid YAML: null, true, 0.1, "x", [1, 0.5])."""
    return json.dumps(v)


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH - len(indent) - 2, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ", break_on_hyphens=False)


def _section(obj: Any, default: Any, indent: str) -> list[str]:
    comments = field_comments(type(obj))
    lines = []
    for f in dataclasses.fields(obj):
        value, dflt = getattr(obj, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            doc = inspect.getdoc(type(value)) or ""
            lines += [""] + _comment(doc.split("\n\n")[0].replace("\n", " "), indent)
            lines += [f"{indent}{f.name}:"] + _section(value, dflt, indent + "  ")
            continue
        text = comments.get(f.name, "")
        choices = f.metadata.get("choices")
        if choices:
            text += f"{'; ' if text else ''}one of: {', '.join(map(str, choices))}"
        if value != dflt:
            text += f"{'; ' if text else ''}default: {_yaml_value(dflt)}"
        lines += _comment(text, indent) + [f"{indent}{f.name}: {_yaml_value(value)}"]
    return lines


def format_config(cfg: Any, title: str) -> str:
    """Every key of ``cfg`` with its comment (and the default where the value differs), as YAML."""
    head = _comment(title, "") + _comment(
        "Every key with the comment from the schema (slimssl/engine/config.py); valid YAML: save, "
        "edit and pass it to --config.", "")
    return "\n".join(head + _section(cfg, type(cfg)(), "")) + "\n"


def run(args: argparse.Namespace) -> int:
    from slimssl.engine.config import load_config, packaged_configs, resolve_config

    if args.action == "list":
        for name, path in packaged_configs().items():
            first = path.read_text().split("\n", 1)[0].lstrip("# ").strip()
            print(f"{name:32s} {first}")
        return 0
    if args.name is None:
        title = ("The built-in defaults: the default job (slimssl pretrain with no --config), "
                 "SlimCLR-MoCov2 on the embedded digits.")
    else:
        title = f"Config {args.name} ({resolve_config(args.name)})."
    print(format_config(load_config(args.name, args.set), title), end="")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="'list': the packaged paper configs; 'show [NAME]': every "
                       "config key with its value, default and comment (valid YAML)")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="show: a packaged config's name (slimssl config list) "
                   "or a YAML path; default: the built-in defaults")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="show the config with this override applied (repeatable)")
    p.set_defaults(func=run)
