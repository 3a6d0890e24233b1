"""The TOML config: a full file loads; unknown tables/keys and wrong types name file and key."""
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from PIL import Image

import gpucomp
from gpucomp.cli import _overrides, build_parser
from gpucomp.config import Config, from_dict, load_config, to_dict, with_overrides
from gpucomp.errors import ConfigError
from gpucomp.plan.options import LayerOption

FULL = """
[collection]
size = 12
seed = 42
start = 0
name_prefix = "Blob"
description = "Procedural blobs ☕"
base_uri = "ipfs://abc/"

[input]
delimiter = "@"

[output]
preset = "small"
opaque_rgb = false

[run]
workers = 3
backend = "cpu"
batch_size = 64
vram_budget = "4GiB"

[[layers]]
folder = "01-Background"

[[layers]]
folder = "02-Body"
name = "Torso"
"""


def write(tmp_path, text, name="gpucomp.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_config_loads(tmp_path):
    cfg = load_config(write(tmp_path, FULL))
    assert cfg == Config(size=12, seed=42, start=0, name_prefix="Blob", description="Procedural blobs ☕",
                         base_uri="ipfs://abc/", delimiter="@", preset="small", opaque_rgb=False, workers=3,
                         backend="cpu", batch_size=64, vram_budget="4GiB",
                         layers=(LayerOption("01-Background"), LayerOption("02-Body", "Torso")))
    assert [(x["folder"], x["name"], x["blend"], x["dna"]) for x in to_dict(cfg)["layers"]] == [
        ("01-Background", None, "normal", True), ("02-Body", "Torso", "normal", True)]
    assert from_dict(to_dict(cfg)) == cfg


def test_empty_config_is_the_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


def test_numeric_vram_budget_is_accepted(tmp_path):
    assert load_config(write(tmp_path, "[run]\nvram_budget = 0.5\n")).vram_budget == "0.5"


def config_error(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    return msg


def test_unknown_table(tmp_path):
    msg = config_error(tmp_path, "[collection]\nsize = 3\n[render]\nfoo = 1\n")
    assert "[render]" in msg


def test_unknown_key(tmp_path):
    msg = config_error(tmp_path, "[output]\ncompression = 9\n")
    assert "output.compression" in msg


@pytest.mark.parametrize("text, key", [
    ('[collection]\nsize = "10"\n', "collection.size"),
    ("[collection]\nseed = true\n", "collection.seed"),  # a bool is not an int
    ("[collection]\nsize = 1.5\n", "collection.size"),
    ("[output]\nopaque_rgb = 1\n", "output.opaque_rgb"),
    ("[input]\ndelimiter = 3\n", "input.delimiter"),
    ("[run]\nvram_budget = true\n", "run.vram_budget"),
])
def test_wrong_type(tmp_path, text, key):
    msg = config_error(tmp_path, text)
    assert key in msg and "expected" in msg


@pytest.mark.parametrize("text, needle", [
    ("[[layers]]\nname = \"x\"\n", "layers[0]"),
    ("[[layers]]\nfolder = \"a\"\ncolour = 1\n", "colour"),
    ("[[layers]]\nfolder = 3\n", "layers[0].folder"),
    ("layers = \"Background\"\n", "layers"),
    ("[[layers]]\nfolder = \"a\"\n[[layers]]\nfolder = \"a\"\n", "twice"),
    ("[output]\npreset = \"tiny\"\n", "tiny"),
    ("[collection]\nsize = 0\n", "size"),
    ("[run]\nbackend = \"metal\"\n", "metal"),
    ("[run]\nvram_budget = \"lots\"\n", "vram_budget"),
    ("[run]\nvram_budget = \"٣GiB\"\n", "neither a fraction"),  # digits Python reads, no config means
    ("[run]\nvram_budget = \"" + "9" * 400 + "GiB\"\n", "larger than any memory"),
    ("[input]\ndelimiter = \".\"\n", "delimiter"),
    ("[collection\nsize = 3\n", "TOML"),
    ("size = 3\n", "[size]"),
])
def test_bad_values_name_the_file(tmp_path, text, needle):
    assert needle in config_error(tmp_path, text)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found") as err:
        load_config(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(err.value)


def test_unreadable_config_names_the_file(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[collection]\nname_prefix = "Caf\xe9"\n')
    for path in (bad, tmp_path):  # not UTF-8; a folder
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert str(path) in str(err.value)


def test_overrides_win_and_none_means_not_given(tmp_path):
    cfg = load_config(write(tmp_path, FULL))
    out = with_overrides(cfg, size=5, seed=None, preset="fast", opaque_rgb=None, force=True)
    assert (out.size, out.seed, out.preset, out.opaque_rgb, out.force) == (5, 42, "fast", False, True)
    assert out.layers == cfg.layers


def test_overrides_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="unknown option"):
        with_overrides(Config(), colour="red")
    with pytest.raises(ConfigError, match="preset"):
        with_overrides(Config(), preset="tiny")
    with pytest.raises(ConfigError, match="size"):
        with_overrides(Config(), size=0)


def test_cli_flags_override_the_file(tmp_path):
    path = write(tmp_path, FULL)
    args = build_parser().parse_args(["generate", "L", "-o", "O", "-c", str(path), "-n", "7", "--seed", "9", "--rgba"])
    cfg = with_overrides(load_config(args.config), **_overrides(args))
    assert (cfg.size, cfg.seed, cfg.opaque_rgb) == (7, 9, False)
    assert (cfg.preset, cfg.workers, cfg.name_prefix) == ("small", 3, "Blob")  # not given: from the file
    args = build_parser().parse_args(["generate", "L", "-o", "O", "-c", str(path)])
    assert with_overrides(load_config(args.config), **_overrides(args)) == load_config(path)


# --- the file itself: read only when it is a plain file of a sane size ------------------------------

def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + FULL.encode())  # as Windows Notepad saves it
    assert load_config(path) == load_config(write(tmp_path, FULL))


@pytest.mark.parametrize("bom, codec", [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_utf16_config_is_named(tmp_path, bom, codec):
    path = tmp_path / "wide.toml"
    path.write_bytes(bom + "[collection]\nsize = 3\n".encode(codec))
    with pytest.raises(ConfigError, match="UTF-16") as err:
        load_config(path)
    assert str(path) in str(err.value) and "save the config as UTF-8" in str(err.value)


def test_config_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(ConfigError, match="is a folder") as err:
        load_config(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_oversized_config_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "huge.toml"
    with open(path, "wb") as f:
        f.truncate(3 << 30)  # a 3 GB sparse file: read whole, this would take seconds and 3 GB of memory
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: reads.append(a) or real_open(*a, **k))
    with pytest.raises(ConfigError, match="far more than a config holds") as err:
        load_config(path)
    assert str(path) in str(err.value) and reads == []


@pytest.mark.parametrize("text, needle", [
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deep"),  # RecursionError inside tomllib
    ("[collection]\nsize = 1" + "0" * 5000 + "\n", "not valid TOML"),  # int() refuses > 4300 digits
])
def test_toml_that_breaks_the_parser_is_a_config_error(tmp_path, text, needle):
    assert needle in config_error(tmp_path, text)


# --- names in the config are matched as the layers folder's names are read (NFC) ---------------------

def test_names_in_a_config_are_nfc(tmp_path):
    nfd = unicodedata.normalize("NFD", "Café")
    cfg = load_config(write(tmp_path, f'[[layers]]\nfolder = "Hat"\nname = "{nfd}"\nnone = "{nfd}"\n'
                                      f'exact = {{ "{nfd} Noir" = 2 }}\n[[rules]]\nnever = ["Hat/{nfd}", "Hat/x"]\n'))
    lo = cfg.layers[0]
    assert (lo.name, lo.none, lo.exact) == ("Café", "Café", (("Café Noir", 2),))
    assert cfg.rules[0].a == ("Hat", "Café")


def test_one_folder_listed_in_two_unicode_forms_is_refused(tmp_path):
    nfc, nfd = (unicodedata.normalize(form, "Café") for form in ("NFC", "NFD"))
    msg = config_error(tmp_path, f'[[layers]]\nfolder = "{nfc}"\n[[layers]]\nfolder = "{nfd}"\n')
    assert "listed twice" in msg and "another Unicode form" in msg


def run_validate(tmp_path, config, timeout=60):
    """`gpucomp validate` with this config in a subprocess with a deadline (a blocking read fails the
    test instead of hanging the suite) and 2 GB of address space (reading a device whole fails it too)."""
    layers = tmp_path / "layers" / "L"
    layers.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (4, 4)).save(layers / "A.png")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "from gpucomp.cli import main; "
            f"sys.exit(main(['validate', {str(tmp_path / 'layers')!r}, '-c', {str(config)!r}]))")
    env = {**os.environ, "PYTHONPATH": str(Path(gpucomp.__file__).parents[1]), "OPENBLAS_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout + p.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_config_that_is_a_named_pipe_is_refused_without_waiting(tmp_path):
    pipe = tmp_path / "gpucomp.toml"
    os.mkfifo(pipe)
    code, out = run_validate(tmp_path, pipe)
    assert code == 2 and f"{pipe}: not a regular file" in out


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_config_that_is_a_device_is_refused_unread(tmp_path):
    code, out = run_validate(tmp_path, "/dev/zero")
    assert code == 2 and "/dev/zero: not a regular file" in out


def test_config_with_a_byte_order_mark_validates(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[collection]\nsize = 1\n")
    code, out = run_validate(tmp_path, path)
    assert code == 0 and "a collection of 1 unique items" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_config_swapped_for_a_pipe_after_the_check_is_refused(tmp_path, monkeypatch):
    """A pipe opened without a writer reads as empty: without the check on the open file, it would
    pass as an empty config (all defaults)."""
    pipe = tmp_path / "gpucomp.toml"
    os.mkfifo(pipe)
    real, plain = os.stat, os.stat(write(tmp_path, "", "plain.toml"))
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: plain if str(p) == str(pipe) else real(p, *a, **k))
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(pipe)
