"""The documentation's examples run, and the configuration reference names every config key.

A code block in README.md or docs/*.md is *runnable* when the line right before its opening fence is
`<!-- run -->` (docs/contributing.md, "Runnable examples"). Each page's runnable blocks run in
order, in one fresh folder per page that holds `layers/`: the demo layers (`gpucomp demo`'s, at
64x64 pixels). So a wrong flag, a renamed function or a config key that no longer exists fails here.

- ```bash / ```console: run by `bash -euo pipefail`; `gpucomp` on PATH is this checkout's, run by
  this interpreter; `pip install ...` is skipped (gpucomp is importable already).
- ```python: run by this interpreter.
- ```toml: written to a file (`<!-- run file=NAME -->` names it, for later blocks of the page) and
  checked with `gpucomp validate layers -c FILE`.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
REFERENCE = DOCS / "configuration.md"
MARKER = re.compile(r"^<!--\s*run(?P<opts>(?:\s+\w+=\S+)*)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+)(?P<lang>[\w-]*)\s*$")  # an opening fence: ``` and a language or none
SHELLS = ("bash", "console", "sh")
BLOCK_TIMEOUT = 120  # seconds; every block here takes a few
# Pages whose examples must run (the brief of issue 24): a page here without a runnable block fails.
MUST_RUN = {"README.md": ("bash", "python", "toml"), "getting-started.md": ("bash",),
            "configuration.md": ("toml",), "python-api.md": ("python",)}
SHELL_PRELUDE = """\
pip() { if [ "${1-}" = install ]; then echo "test_docs: 'pip $*' skipped (gpucomp is importable)"; \
else command pip "$@"; fi; }
"""


def runnable_blocks(page: Path) -> list[dict]:
    """The page's runnable blocks: {"line", "lang", "code", "opts"}, in page order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if not m:
            if fence := FENCE.match(lines[i]):  # a block's lines (a marker shown in an example) are not markers
                i = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence["fence"]), len(lines))
            i += 1
            continue
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        assert fence, f"{page.name}:{i + 1}: `<!-- run -->` must be right above a ``` fence"
        opts = dict(kv.split("=", 1) for kv in m["opts"].split())
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == fence["fence"]), None)
        assert end is not None, f"{page.name}:{i + 2}: the block is never closed"
        lang = fence["lang"]
        assert lang in (*SHELLS, "python", "toml"), f"{page.name}:{i + 2}: a runnable block must be bash, python or toml"
        blocks.append({"line": i + 2, "lang": lang, "code": "\n".join(lines[i + 2:end]) + "\n", "opts": opts})
        i = end + 1
    return blocks


@pytest.fixture(scope="session")
def demo_layers(tmp_path_factory) -> Path:
    from gpucomp.demo import make_layers

    layers = tmp_path_factory.mktemp("docs-layers") / "layers"
    make_layers(layers, 6, 36, 64, 7)  # gpucomp demo's layers (6 layers, 36 traits, layer seed 7), 64x64
    return layers


@pytest.fixture(scope="session")
def bin_dir(tmp_path_factory) -> Path:
    """A folder whose `gpucomp` runs this checkout's gpucomp with this interpreter."""
    folder = tmp_path_factory.mktemp("docs-bin")
    shim = folder / "gpucomp"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gpucomp "$@"\n')
    shim.chmod(0o755)
    return folder


def _env(bin_dir: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("GPUCOMP_REQUIRE_BROWSER", None)
    return env


def _missing(block: dict) -> list[str]:
    """The optional packages a block says it needs (`<!-- run needs=av -->`) that are not installed here:
    the README's test command installs only `.[test]`."""
    return [m for m in block["opts"].get("needs", "").split(",") if m and importlib.util.find_spec(m) is None]


def _run_block(page: Path, block: dict, cwd: Path, env: dict) -> None:
    where = f"{page.relative_to(ROOT)}:{block['line']} ({block['lang']})"
    if block["lang"] in SHELLS:
        cmd = ["bash", "-euo", "pipefail", "-c", SHELL_PRELUDE + block["code"]]
    elif block["lang"] == "python":
        script = cwd / f"_block_{block['line']}.py"
        script.write_text(block["code"], encoding="utf-8")
        cmd = [sys.executable, script.name]
    else:
        name = block["opts"].get("file", f"_block_{block['line']}.toml")
        (cwd / name).write_text(block["code"], encoding="utf-8")
        cmd = [sys.executable, "-m", "gpucomp", "validate", "layers", "-c", name]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    assert res.returncode == 0, (f"{where} exited {res.returncode}\n--- block\n{block['code']}"
                                 f"--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-4000:]}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run(page: Path, demo_layers: Path, bin_dir: Path, tmp_path: Path) -> None:
    blocks = runnable_blocks(page)
    langs = {("bash" if b["lang"] in SHELLS else b["lang"]) for b in blocks}
    if missing := set(MUST_RUN.get(page.name, ())) - langs:
        pytest.fail(f"{page.name}: no runnable {', '.join(sorted(missing))} block (mark one with <!-- run -->)")
    if not blocks:
        pytest.skip(f"{page.name}: no runnable blocks")
    import shutil

    shutil.copytree(demo_layers, tmp_path / "layers")
    env = _env(bin_dir)
    for block in blocks:
        if not _missing(block):  # a block needing an extra that is not installed here is left out (CI has them)
            _run_block(page, block, tmp_path, env)


def test_marker_convention() -> None:
    """A typo in a marker (`<!-- runs -->`, `<!--run-->` with options glued on) would silently skip a block."""
    loose = re.compile(r"^\s*<!--\s*run\b")
    for page in PAGES:
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if loose.search(line):
                assert MARKER.match(line), f"{page.name}:{n}: malformed run marker {line!r}"


# --- the configuration reference -------------------------------------------------------------------------

def _literal_in(func_name: str, source: str, kind: type) -> list[str]:
    """The keys in config.py's function: of the dict literal it passes to check_table (kind=dict), or of its
    first set/tuple literal of strings (kind=set)."""
    tree = ast.parse(source)
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == func_name)
    for node in ast.walk(func):
        if kind is dict and isinstance(node, ast.Call) and getattr(node.func, "id", "") == "check_table" and (
                isinstance(node.args[1], ast.Dict)):
            return [k.value for k in node.args[1].keys]
        if kind is set and isinstance(node, (ast.Set, ast.Tuple)) and node.elts and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            return [e.value for e in node.elts]
    raise AssertionError(f"gpucomp/config.py: {func_name} has no literal of its keys any more; update this test")


def config_keys() -> dict[str, object]:
    """Every key a TOML config may hold, dotted (`collection.size`, `layers.traits.z`), -> its default
    where the code states one (None otherwise). Read from gpucomp/config.py and the parsers it calls."""
    from gpucomp import config
    from gpucomp.encode import animated, formats
    from gpucomp.metadata import tokens

    source = Path(config.__file__).read_text(encoding="utf-8")
    resize_source = Path(sys.modules["gpucomp.encode.resize"].__file__).read_text(encoding="utf-8")
    keys: dict[str, object] = {}
    for table, body in config.SCHEMA.items():
        for key, (name, _) in body.items():
            keys[f"{table}.{key}"] = getattr(config.Config, name)
    keys.update({f"layers.{k}": None for k in config.LAYER_KEYS})
    keys.update({f"layers.traits.{k}": None for k in config.TRAIT_KEYS})
    keys.update({f"stacks.{k}": None for k in _literal_in("_stacks", source, set)})
    keys.update({f"rules.{k}": None for k in _literal_in("_rules", source, set)})
    keys.update({f"links.{k}": None for k in _literal_in("_links", source, set)})
    keys.update({f"one_of_ones.{k}": None for k in _literal_in("_one_of_ones", source, dict)})
    keys.update({f"metadata.{k}": None for k in tokens.TABLE_KEYS})
    keys.update({"output.format": "png", "output.sizes": None, "output.animation": None})
    for fmt in config.FORMAT_TABLES:
        for key, (_, _, _, default) in formats.SETTINGS[fmt].items():
            keys[f"output.{fmt}.{key}"] = default
    for key, (_, _, _, default) in animated.SETTINGS.items():
        keys[f"output.animated.{key}"] = default
    tree = ast.parse(resize_source)
    size = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_size")
    literal = next(n for n in ast.walk(size) if isinstance(n, ast.Dict) and n.keys)
    keys.update({f"output.sizes.{k.value}": None for k in literal.keys})
    return keys


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def reference_rows() -> dict[str, list[str]]:
    """`| `key` | type | default | example | ... |` rows of docs/configuration.md: key -> cells."""
    rows = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\|\s*`([a-z_][a-z0-9_.]*)`\s*\|", line)
        if m and "." in m[1]:
            rows[m[1]] = [c.strip() for c in line.strip().strip("|").split("|")]
    return rows


def test_reference_documents_every_config_key() -> None:
    keys, rows = config_keys(), reference_rows()
    missing = sorted(set(keys) - set(rows))
    assert not missing, (f"docs/configuration.md does not document {', '.join(missing)}: add a row "
                         f"| `key` | type | default | example | meaning | for each")
    stale = sorted(set(rows) - set(keys))
    assert not stale, f"docs/configuration.md documents keys the config does not read: {', '.join(stale)}"


def test_reference_defaults_match_the_code() -> None:
    rows = reference_rows()
    for key, default in config_keys().items():
        if default is None:
            continue
        cell = rows[key][2]
        first = re.search(r"`([^`]*)`", cell)
        assert first and first[1] == _toml(default), (
            f"docs/configuration.md: {key}'s default is {_toml(default)} in the code, the page says {cell!r}")


def test_reference_examples_are_toml() -> None:
    import tomllib

    for key, cells in reference_rows().items():
        example = re.search(r"`([^`]*)`", cells[3])
        assert example, f"docs/configuration.md: {key} has no example"
        table = key.rpartition(".")[0]
        try:
            tomllib.loads(f"[{table}]\n{example[1]}")
        except tomllib.TOMLDecodeError as err:
            pytest.fail(f"docs/configuration.md: {key}'s example {example[1]!r} is not TOML ({err})")
