"""The command line: generate, validate, info, demo, output-folder safety, error reporting."""
import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp import __version__, cli
from gpucomp.cli import main
from gpucomp.layers.layerset import load_layers


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


@pytest.fixture
def layers(demo_layers, tmp_path):
    """A private copy of the demo layers that a test may damage."""
    return shutil.copytree(demo_layers, tmp_path / "layers")


def test_generate_writes_images_metadata_and_summaries(demo_layers, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-n", "10", "-o", str(out), "-q"]) == 0
    assert "done: 10 items" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{n}.png" for n in range(1, 11))
    assert sorted(p.name for p in (out / "metadata").iterdir()) == sorted(f"{n}.json" for n in range(1, 11))
    for name in ("_metadata.json", "rarity.json", "gpucomp.json"):
        assert (out / name).is_file()
    assert not [p for p in out.rglob("*") if p.name.startswith(".gpucomp-tmp-")]
    with Image.open(out / "images" / "1.png") as im:
        assert im.size == (64, 64)


def test_metadata_schema(demo_layers, tmp_path):
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-n", "10", "-o", str(out), "-q", "--seed", "3",
                 "--name-prefix", "Blob", "--base-uri", "ipfs://CID/", "--description", "d"]) == 0
    ls = load_layers(demo_layers)
    trait_names = {la.name: {t.name for t in la.traits} for la in ls.layers}
    items = [json.loads((out / "metadata" / f"{n}.json").read_text(encoding="utf-8")) for n in range(1, 11)]
    for n, meta in enumerate(items, start=1):
        assert {"name", "description", "image", "edition", "dna", "attributes"} <= set(meta)
        assert meta["name"] == f"Blob #{n}" and meta["edition"] == n and meta["description"] == "d"
        assert meta["image"] == f"ipfs://CID/{n}.png"
        assert len(meta["dna"]) == 40 and int(meta["dna"], 16) >= 0
        assert [a["trait_type"] for a in meta["attributes"]] == ["Background", "Body", "Clothes", "Eyes"]
        for a in meta["attributes"]:
            assert set(a) == {"trait_type", "value"} and a["value"] in trait_names[a["trait_type"]]
    assert len({m["dna"] for m in items}) == 10
    assert len({tuple(a["value"] for a in m["attributes"]) for m in items}) == 10
    assert json.loads((out / "_metadata.json").read_text(encoding="utf-8")) == items
    rarity = json.loads((out / "rarity.json").read_text(encoding="utf-8"))
    assert [la["name"] for la in rarity["layers"]] == list(trait_names)
    for layer in rarity["layers"]:
        assert {t["name"] for t in layer["traits"]} == trait_names[layer["name"]]
        assert sum(t["count"] for t in layer["traits"]) == 10
    rows = (out / "rarity.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("number,rank,score") and len(rows) == 11
    manifest = json.loads((out / "gpucomp.json").read_text(encoding="utf-8"))
    assert manifest["plan"]["size"] == 10 and manifest["plan"]["seed"] == 3
    assert [la["name"] for la in manifest["plan"]["stacks"][0]["layers"]] == ["Background", "Body", "Clothes", "Eyes"]
    assert manifest["metadata"]["base_uri"] == "ipfs://CID/"


def test_config_file_with_flag_override(demo_layers, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[collection]\nsize = 3\nname_prefix = "Cfg"\n[output]\npreset = "balanced"\n')
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-o", str(out), "-q", "-c", str(cfg), "-n", "4"]) == 0
    assert files_under(out / "images") == ["1.png", "2.png", "3.png", "4.png"]
    assert json.loads((out / "metadata" / "4.json").read_text())["name"] == "Cfg #4"


def test_format_flag_writes_those_formats_with_the_configs_settings(demo_layers, tmp_path, capsys):
    """--format webp,png: WebP primary (metadata image, provenance) and a PNG beside it; the WebP
    keeps the config's [output] webp table (lossless here: decodes to the PNG exactly) although the
    config's own format is png; a x2 size follows the flag's formats."""
    (tmp_path / "c.toml").write_text('[output]\nformat = "png"\nwebp = { lossless = true }\n[[output.sizes]]\n'
                                     'name = "x2"\nscale = 2\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-o", str(out), "-c", str(tmp_path / "c.toml"), "-n", "3", "-q",
                 "--format", "webp,png"]) == 0
    names = sorted(str(p.relative_to(out / "images")) for p in (out / "images").rglob("*.*"))
    assert names == sorted(f"{d}{n}.{e}" for n in (1, 2, 3) for d in ("", "x2/") for e in ("png", "webp"))
    assert json.loads((out / "metadata" / "1.json").read_text())["image"].endswith("/1.webp")
    manifest = json.loads((out / "gpucomp.json").read_text())
    assert manifest["art"]["output"]["formats"][0] == {"name": "webp", "quality": 90, "method": 4, "lossless": True}
    with Image.open(out / "images" / "2.webp") as a, Image.open(out / "images" / "2.png") as b:
        assert np.array_equal(np.asarray(a.convert("RGBA")), np.asarray(b.convert("RGBA")))


@pytest.mark.parametrize("flag, message", [
    ("png,gif", "--format: unknown format 'gif'; give one or more of png, webp, jpeg, avif, comma-separated"),
    ("jpg", "unknown format 'jpg' (write jpeg)"),
    ("png,png", "--format: 'png,png' names a format twice"),
    ("webp", "size 'thumb' is written as png, which is not among the formats (webp)"),
])
def test_format_flag_errors_are_named_before_anything_is_written(demo_layers, tmp_path, capsys, flag, message):
    (tmp_path / "c.toml").write_text('[output]\nformat = ["png", "webp"]\n[[output.sizes]]\nname = "thumb"\n'
                                     'width = 16\nformat = "png"\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-o", str(out), "-c", str(tmp_path / "c.toml"), "-n", "3", "-q",
                 "--format", flag]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert main(["validate", str(demo_layers), "-c", str(tmp_path / "c.toml"), "-n", "3", "--format", flag]) == 2

def test_validate(demo_layers, capsys):
    assert main(["validate", str(demo_layers), "-n", "10"]) == 0
    out, err = capsys.readouterr()
    assert "01-Background -> 'Background'" in out and "64x64" in out and "ok:" in out
    assert f"reading layers folder {demo_layers.resolve()}" in err  # a long scan says what it scans


def test_log_lines_show_what_an_earlier_runs_lock_file_says_as_escapes(demo_layers, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".gpucomp.lock").write_text(json.dumps({"pid": "1\x1b]0;owned\x07\u202e\r"}), encoding="utf-8")
    assert main(["generate", str(demo_layers), "-n", "2", "-o", str(out), "--backend", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "note: an earlier run (pid 1\\x1b]0;owned\\x07\\u202e\\r) ended without finishing" in err
    assert not {"\x1b", "\x07", "\u202e", "\r"} & set(err)


def test_the_cli_shows_warnings_as_escaped_warning_lines_only_while_it_runs(demo_layers, monkeypatch):
    before, seen, real = warnings.formatwarning, [], cli._run_command

    def run_and_look(args):
        seen.append(warnings.formatwarning("bad\x1b[2J\nname\u202e", UserWarning, "f.py", 1))
        return real(args)

    monkeypatch.setattr(cli, "_run_command", run_and_look)
    assert main(["validate", str(demo_layers), "-n", "2"]) == 0
    assert seen == ["warning: bad\\x1b[2J\\nname\\u202e\n"] and warnings.formatwarning is before  # one line


def test_whatever_a_command_prints_reaches_the_terminal_without_escape_sequences(demo_layers, monkeypatch, capsys):
    """The CLI's streams are the last guard: text printed without terminal_safe still shows its
    escapes; newlines, tabs and the CR a progress bar redraws with pass."""
    def careless(args):
        print("name \x1b]0;owned\x07\u202e\x9b2J\u2028 \udcff")
        print("\r[###...] 3/6\tok", file=sys.stderr)
        return 0

    monkeypatch.setattr(cli, "cmd_validate", careless)
    assert main(["validate", str(demo_layers)]) == 0
    out, err = capsys.readouterr()
    assert out == "name \\x1b]0;owned\\x07\\u202e\\x9b2J\\u2028 \\udcff\n" and err == "\r[###...] 3/6\tok\n"


def test_validate_too_many_items(demo_layers, capsys):
    total = load_layers(demo_layers).combinations
    assert main(["validate", str(demo_layers), "-n", str(total + 1)]) == 2
    err = capsys.readouterr().err
    assert "\nerror:" in err and f"only {total} distinct" in err


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"gpucomp {__version__}" in out and "cpu: available" in out
    assert all(f"png preset {p}" in out for p in ("fast", "balanced", "small"))


def test_info_names_the_cpu_compositor(monkeypatch, capsys):
    from gpucomp.render import numpy_backend

    monkeypatch.setattr(numpy_backend, "kernel_status", lambda: (False, "GPUCOMP_NO_JIT is set: NumPy compositing"))
    assert main(["info"]) == 0
    assert "cpu: available (GPUCOMP_NO_JIT is set: NumPy compositing)" in capsys.readouterr().out


def test_refuses_a_foreign_non_empty_output_folder(demo_layers, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["generate", str(demo_layers), "-n", "10", "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err
    assert files_under(out) == ["notes.txt"] and [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main(["generate", str(demo_layers), "-n", "10", "-o", str(out), "-q", "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert len(files_under(out / "images")) == 10


def test_refuses_an_earlier_collection_unless_forced(demo_layers, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-n", "10", "-o", str(out), "-q"]) == 0
    assert main(["generate", str(demo_layers), "-n", "4", "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "made from other inputs: size was 10, now 4" in err and "--force" in err
    assert main(["generate", str(demo_layers), "-n", "4", "-o", str(out), "-q", "--force"]) == 0
    assert files_under(out / "images") == ["1.png", "2.png", "3.png", "4.png"]  # no leftovers of the first


@pytest.mark.parametrize("damage", ["empty", "corrupt", "bad-weight"])
def test_bad_layers_exit_2_name_the_file_and_write_nothing(layers, tmp_path, capsys, damage):
    folder = layers / "03-Clothes"
    if damage == "empty":
        bad = folder / "Broken#2.png"
        bad.write_bytes(b"")
    elif damage == "corrupt":
        bad = folder / "Broken#2.png"
        good = next(folder.iterdir()).read_bytes()
        bad.write_bytes(good[: len(good) // 3])
    else:
        bad = folder / "Broken#0,5.png"
        shutil.copy(next(folder.iterdir()), bad)
    out = tmp_path / "out"
    assert main(["generate", str(layers), "-n", "10", "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(bad) in err and "Traceback" not in err
    assert not out.exists() or files_under(out) == []
    # once the file is fixed, the same command works in the same folder
    bad.unlink()
    assert main(["generate", str(layers), "-n", "10", "-o", str(out), "-q"]) == 0
    assert len(files_under(out / "images")) == 10


def test_failed_plan_does_not_block_the_output_folder(demo_layers, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-n", "100000", "-o", str(out), "-q"]) == 2
    assert "distinct combinations" in capsys.readouterr().err
    assert not out.exists() or files_under(out) == []
    assert main(["generate", str(demo_layers), "-n", "3", "-o", str(out), "-q"]) == 0


def test_missing_layers_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_demo(tmp_path, capsys):
    root = tmp_path / "demo"
    args = ["demo", "-o", str(root), "-q", "--image-size", "64", "-n", "5"]
    assert main(args) == 0
    images = root / "collection" / "images"
    assert files_under(images) == [f"{n}.png" for n in range(1, 6)]
    with Image.open(images / "1.png") as im:
        assert im.size == (64, 64)
        first = np.asarray(im).copy()
    assert len([p for p in (root / "layers").iterdir() if p.is_dir()]) == 6
    assert main(args) == 0  # again: reuses the layers, rewrites the same collection
    with Image.open(images / "1.png") as im:
        assert np.array_equal(np.asarray(im), first)


def test_an_interrupted_demo_resumes_when_run_again_and_other_settings_start_over(tmp_path, capsys, monkeypatch):
    """"Run the same command again" keeps what is finished (it re-rendered every item before); the demo
    owns its folder, so another -n simply makes that collection instead."""
    import gpucomp.outdir.shard as shard

    root = tmp_path / "demo"
    args = ["demo", "-o", str(root), "-q", "--image-size", "32", "-n", "6", "--workers", "1", "--json"]
    real, calls = shard.atomic_write_bytes, [0]

    def stop_after_three(path, data, *a, **k):
        if Path(path).suffix == ".png":
            calls[0] += 1
            if calls[0] > 3:
                raise KeyboardInterrupt
        return real(path, data, *a, **k)

    monkeypatch.setattr(shard, "atomic_write_bytes", stop_after_three)
    assert main(args) == 130
    monkeypatch.setattr(shard, "atomic_write_bytes", real)
    capsys.readouterr()
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed_from"] >= 3 and summary["items"] == 6
    assert main([*args[:-4], "7", "--workers", "1", "--json"]) == 0  # another size: made anew, no question
    assert json.loads(capsys.readouterr().out)["resumed_from"] == 0


def test_a_bigger_size_on_a_collection_suggests_extend(demo_layers, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-o", str(out), "-n", "3", "-q"]) == 0
    assert main(["generate", str(demo_layers), "-o", str(out), "-n", "5", "-q"]) == 2
    err = capsys.readouterr().err
    assert "size was 3, now 5" in err and f"to add 2 items to it, keep its size and run `gpucomp extend {out} -n 2`" in err


def test_help_says_each_commands_defaults(capsys):
    for command, text in (("demo", "number of items (default 50)"), ("generate", "number of items (default 100)"),
                          ("validate", "number of items to plan (default 100)"), ("validate", "as for generate --from")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert text in " ".join(capsys.readouterr().out.split()), (command, text)


def test_validate_counts_the_combinations(demo_layers, capsys):
    assert main(["validate", str(demo_layers), "-n", "2"]) == 0
    out = capsys.readouterr().out
    total = load_layers(demo_layers).combinations
    assert f"ok: a collection of 2 unique items can be planned ({total:,} combinations of the layers)" in out


def test_demo_with_a_bad_option_leaves_the_earlier_demo_alone(tmp_path, capsys):
    root = tmp_path / "demo"
    assert main(["demo", "-o", str(root), "-q", "--image-size", "32", "-n", "2"]) == 0
    before = files_under(root / "layers")
    assert main(["demo", "-o", str(root), "-q", "--image-size", "0", "-n", "2"]) == 2
    assert "--image-size" in capsys.readouterr().err
    assert files_under(root / "layers") == before


def test_demo_refuses_foreign_layers_folder(tmp_path, capsys):
    (tmp_path / "demo" / "layers").mkdir(parents=True)
    (tmp_path / "demo" / "layers" / "art.psd").write_bytes(b"x")
    assert main(["demo", "-o", str(tmp_path / "demo"), "-q", "--image-size", "32", "-n", "2"]) == 2
    assert "not made by gpucomp demo" in capsys.readouterr().err
    assert files_under(tmp_path / "demo") == ["layers/art.psd"]


def test_python_m_help():
    res = subprocess.run([sys.executable, "-m", "gpucomp", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    assert res.stdout.startswith("usage: gpucomp") and "generate" in res.stdout and "validate" in res.stdout


def test_python_m_without_command_is_a_usage_error():
    res = subprocess.run([sys.executable, "-m", "gpucomp"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "usage: gpucomp" in res.stderr


def _gpucomp(*args, env=None):
    full = {**os.environ, "PYTHONPATH": str(Path(gpucomp.__file__).parents[1]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "gpucomp", *args], capture_output=True, env=full, timeout=300)


def test_a_latin1_terminal_gets_escapes_for_what_it_cannot_show(demo_layers, tmp_path):
    """`—` and non-Latin-1 names in a Latin-1 locale: escaped (`\\u2014`), never a UnicodeEncodeError."""
    env = {"PYTHONIOENCODING": "latin-1", "LC_ALL": "C"}
    for args in (["info"], ["generate", str(demo_layers), "-o", str(tmp_path / "out"), "-n", "3", "--backend", "cpu"]):
        done = _gpucomp(*args, env=env)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr[-2000:]
    assert b"\\u2014" in done.stdout + done.stderr  # the summary's dash, as an escape


def test_an_argument_that_is_not_utf8_is_named_in_an_error_line(tmp_path):
    """A path of bytes that are not UTF-8 reaches Python as lone surrogates; the error shows them as
    escapes instead of failing to print them."""
    odd = bytes(tmp_path) + b"/layers-\xff\xfe"
    done = _gpucomp("validate", odd)
    assert done.returncode == 2 and b"Traceback" not in done.stderr, done.stderr[-2000:]
    assert b"error:" in done.stderr and b"layers-\\udcff\\udcfe" in done.stderr


def test_a_thread_that_cannot_start_is_an_error_line_not_a_traceback(demo_layers, tmp_path, monkeypatch, capsys):
    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    rc = main(["generate", str(demo_layers), "-o", str(tmp_path / "out"), "-n", "3", "--backend", "cpu", "-q"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 2 and "cannot start another thread" in err and "lower --workers" in err
