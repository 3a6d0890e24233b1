"""One-of-ones (oneofones.py): the folder is checked by name before anything is written, and
every one-of-one gets a number of its own, given or seeded, that no generated item takes."""
import json

import numpy as np
import pytest
from PIL import Image

from gpucomp.errors import ConfigError
from gpucomp.interop.oneofones import generated_numbers, manifest_entry, place, read_one_of_ones


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "ones"
    d.mkdir()
    for k, name in enumerate(["Golden King", "Ghost", "Robot"]):
        Image.new("RGBA", (8, 8), (k * 80, 10, 20, 255)).save(d / f"{name}.png")
    (d / "Ghost.json").write_text(json.dumps({"name": "The Ghost", "attributes": [
        {"trait_type": "1/1", "value": "Ghost"}]}), encoding="utf-8")
    return d


def test_reads_images_and_their_metadata(folder):
    ones = read_one_of_ones(folder, {"Robot": 5})
    assert [o.name for o in ones] == ["Ghost", "Golden King", "Robot"]
    assert ones[0].metadata["name"] == "The Ghost" and ones[1].metadata is None
    assert ones[2].number == 5 and ones[0].number is None and ones[0].size == (8, 8)
    assert len(ones[0].sha256) == 64 and ones[0].sha256 != ones[1].sha256


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "notes.txt").write_text("x"), "neither a PNG nor the .json of one: notes.txt"),
    (lambda d: (d / "Robot.png").write_bytes(b"GIF89a"), "Robot.png: not a PNG file"),
    (lambda d: (d / "Robot.png").write_bytes((d / "Ghost.png").read_bytes()[:40]), "Robot.png: not a readable PNG"),
    (lambda d: (d / "Ghost.json").write_text("[1]"), "Ghost.json: expected a JSON object"),
    (lambda d: (d / "Ghost.json").write_text("{"), "Ghost.json: not readable JSON"),
    (lambda d: (d / "Ghost.json").write_text('{"attributes": [{"value": 1}]}'), "attributes must be a list"),
])
def test_bad_folders_are_named(folder, change, message):
    change(folder)
    with pytest.raises(ConfigError, match=message):
        read_one_of_ones(folder)


@pytest.mark.parametrize("text, value", [
    ('{"name": "The Ghost", "power": NaN}', "NaN"),
    ('{"power": Infinity}', "Infinity"),
    ('{"attributes": [{"trait_type": "Power", "value": -Infinity}]}', "-Infinity"),
    ('{"nested": {"deeper": [1, 2, NaN]}}', "NaN"),
])
def test_metadata_with_a_number_json_does_not_have_is_refused_naming_the_file_and_the_value(folder, text, value):
    (folder / "Ghost.json").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_one_of_ones(folder)
    assert f"{folder / 'Ghost.json'}: not readable JSON ({value} is not a JSON number" in str(err.value)


def test_metadata_holding_a_lone_surrogate_is_refused_before_it_reaches_utf8_files(folder):
    (folder / "Ghost.json").write_text('{"name": "\\ud800"}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"Ghost.json: not readable JSON \(the string .* lone surrogate"):
        read_one_of_ones(folder)


def test_numbers_for_unknown_images_and_missing_folders(folder, tmp_path):
    with pytest.raises(ConfigError, match="no Robott.png"):
        read_one_of_ones(folder, {"Robott": 3})
    with pytest.raises(ConfigError, match="is not a folder"):
        read_one_of_ones(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no PNG image"):
        read_one_of_ones(tmp_path / "empty")


def test_placement_is_seeded_keeps_given_numbers_and_leaves_the_rest(folder):
    ones = read_one_of_ones(folder, {"Robot": 5})
    placed = place(ones, 10, 1, seed=3)
    assert placed[2] == 5 and len(set(placed.tolist())) == 3 and all(1 <= n <= 10 for n in placed)
    assert np.array_equal(place(ones, 10, 1, seed=3), placed)
    assert any(not np.array_equal(place(ones, 10, 1, seed=s), placed) for s in range(4, 10))
    rest = generated_numbers(placed, 10, 1)
    assert len(rest) == 7 and not set(rest.tolist()) & set(placed.tolist())
    assert manifest_entry(ones, placed)[2] == ["Robot", ones[2].sha256, 5]


@pytest.mark.parametrize("numbers, size, message", [
    ({"Robot": 11}, 10, "given number 11, outside the collection's numbers 1..10"),
    ({"Robot": 2, "Ghost": 2}, 10, "are both given number 2"),
    ({}, 2, "3 images, but the collection has only 2 items"),
])
def test_bad_numbers_are_named(folder, numbers, size, message):
    with pytest.raises(ConfigError, match=message):
        place(read_one_of_ones(folder, numbers), size, 1, seed=0)


# ---------------------------------------------------------------- in a collection (generate, resume, extend)

import csv  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gpucomp  # noqa: E402


def cli(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCOMP_TEST_")}
    full_env.update(PYTHONPATH=str(Path(gpucomp.__file__).parents[1]), **(env or {}))
    p = subprocess.run([sys.executable, "-m", "gpucomp", *map(str, args)], capture_output=True, text=True,
                       env=full_env, timeout=120)
    return p.returncode, p.stdout, p.stderr


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


@pytest.fixture
def project(demo_layers, tmp_path):
    """A config with three 64x64 one-of-ones: 'Robot' at the given number 5, the others seeded."""
    ones = tmp_path / "ones"
    ones.mkdir()
    for k, name in enumerate(["Golden King", "Ghost", "Robot"]):
        Image.new("RGBA", (64, 64), (k * 80, 200, 20, 255 - k)).save(ones / f"{name}.png")
    (ones / "Ghost.json").write_text(json.dumps({"name": "The Ghost", "artist": "someone", "attributes": [
        {"trait_type": "1/1", "value": "Ghost"}, {"trait_type": "Mood", "value": "eerie"}]}), encoding="utf-8")
    cfg = tmp_path / "gpucomp.toml"
    cfg.write_text('[collection]\nsize = 30\nseed = 4\n\n[one_of_ones]\nfolder = "ones"\nnumbers = { Robot = 5 }\n',
                   encoding="utf-8")
    return demo_layers, cfg, ones


def generate(project, out, *extra, env=None):
    layers, cfg, _ = project
    return cli("generate", layers, "-o", out, "--config", cfg, "--workers", "2", "-q", *extra, env=env)


def numbers_of_ones(out: Path) -> dict:
    meta = {int(p.stem): json.loads(p.read_text(encoding="utf-8")) for p in (out / "metadata").glob("*.json")}
    return {n: m for n, m in meta.items() if any(a["trait_type"] == "1/1" for a in m["attributes"])}


def test_one_of_ones_are_copied_numbered_merged_and_counted(project, tmp_path):
    out = tmp_path / "out"
    rc, _, err = generate(project, out)
    assert rc == 0, err
    _, _, ones = project
    found = numbers_of_ones(out)
    assert len(found) == 3 and len(list((out / "images").glob("*.png"))) == 30
    by_name = {next(a["value"] for a in m["attributes"] if a["trait_type"] == "1/1"): n for n, m in found.items()}
    assert by_name["Robot"] == 5
    for name, n in by_name.items():  # the file as given, byte for byte
        assert (out / "images" / f"{n}.png").read_bytes() == (ones / f"{name}.png").read_bytes()
    ghost = found[by_name["Ghost"]]
    assert ghost["name"] == "The Ghost" and ghost["artist"] == "someone" and ghost["edition"] == by_name["Ghost"]
    assert ("Mood", "eerie") in [(a["trait_type"], a["value"]) for a in ghost["attributes"]]
    # generated items take the other 27 numbers, each unique and none of them a one-of-one
    generated = [json.loads((out / "metadata" / f"{n}.json").read_text())["dna"] for n in range(1, 31) if n not in found]
    assert len(generated) == 27 == len(set(generated))
    prov = json.loads((out / "provenance.json").read_text())
    shas = {item["number"]: item["sha256"] for item in prov["items"]}
    assert shas[5] == hashlib.sha256((ones / "Robot.png").read_bytes()).hexdigest() and len(shas) == 30
    with open(out / "rarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30
    rarity = json.loads((out / "rarity.json").read_text())
    assert "1/1" in json.dumps(rarity) and "Golden King" in json.dumps(rarity)


def test_same_numbers_for_the_same_seed_and_generated_items_unchanged_elsewhere(project, tmp_path):
    rc, _, err = generate(project, tmp_path / "a")
    assert rc == 0, err
    rc, _, err = generate(project, tmp_path / "b")
    assert rc == 0, err
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


@pytest.mark.parametrize("point", ["manifest", "image:5", "image:17", "finish"])
def test_kill_9_then_resume_is_byte_identical(project, tmp_path, point):
    ref = tmp_path / "ref"
    assert generate(project, ref)[0] == 0
    out = tmp_path / "out"
    rc, _, err = generate(project, out, env={"GPUCOMP_TEST_KILL": point})
    assert rc == -signal.SIGKILL, err
    rc, _, err = cli("resume", out, "-q")
    assert rc == 0, err
    assert snapshot(out) == snapshot(ref)


def test_extend_keeps_them_and_resume_with_changed_ones_is_refused(project, tmp_path):
    out = tmp_path / "out"
    assert generate(project, out)[0] == 0
    before = snapshot(out)
    ones_before = numbers_of_ones(out)
    rc, _, err = cli("extend", out, "-n", "5", "-q")
    assert rc == 0, err
    after = snapshot(out)
    assert all(after[k] == v for k, v in before.items() if k.startswith("images/"))
    assert numbers_of_ones(out) == ones_before and len(list((out / "images").glob("*.png"))) == 35
    rc, _, err = cli("rerender", out, "-q")  # nothing changed: nothing rewritten, the one-of-ones kept
    assert rc == 0, err
    assert {k: v for k, v in snapshot(out).items() if k.startswith("images/")} == \
        {k: v for k, v in after.items() if k.startswith("images/")}
    _, _, ones = project
    Image.new("RGBA", (64, 64), (1, 2, 3, 255)).save(ones / "Robot.png")
    for command in (("resume", out), ("rerender", out)):
        rc, _, err = cli(*command, "-q")
        assert rc != 0 and "one-of-ones (their images or numbers) changed" in err and "Traceback" not in err


def test_one_of_ones_of_another_size_or_too_many_are_named(project, tmp_path):
    layers, cfg, ones = project
    Image.new("RGBA", (32, 64)).save(ones / "Small.png")
    rc, _, err = generate(project, tmp_path / "out")
    assert rc != 0 and "Small.png: 32x64" in err and "Traceback" not in err
    (ones / "Small.png").unlink()
    rc, _, err = cli("generate", layers, "-o", tmp_path / "o2", "--config", cfg, "-n", "2", "-q")
    assert rc != 0 and "3 images, but the collection has only 2 items" in err and "Traceback" not in err


@pytest.mark.parametrize("shuffle", [False, True])
def test_python_api_and_shuffle_keep_given_numbers(project, tmp_path, shuffle):
    layers, _, ones = project
    out = tmp_path / "out"
    gpucomp.run(layers, out, size=12, seed=2, shuffle=shuffle, workers=1, one_of_ones=str(ones),
                one_of_ones_numbers={"Ghost": 12})
    found = numbers_of_ones(out)
    assert found[12]["name"] == "The Ghost" and len(found) == 3
    assert len({json.loads((out / "metadata" / f"{n}.json").read_text())["dna"] for n in range(1, 13)}) == 12
    manifest = json.loads((out / "gpucomp.json").read_text())
    assert sorted(e[0] for e in manifest["plan"]["one_of_ones"]) == ["Ghost", "Golden King", "Robot"]


@pytest.mark.parametrize("table, message", [
    ('[one_of_ones]\nnumbers = { Robot = 5 }\n', "needs folder"),
    ('[one_of_ones]\nfolder = "ones"\nnumber = { Robot = 5 }\n', "unknown key(s) number"),
    ('[one_of_ones]\nfolder = "ones"\nnumbers = { Robot = "5" }\n', "must map image names to whole numbers"),
    ('[one_of_ones]\nfolder = "ones"\nnumbers = { Nobody = 5 }\n', "no Nobody.png"),
])
def test_bad_one_of_ones_tables_are_named(project, tmp_path, table, message):
    layers, cfg, _ = project
    cfg.write_text(f"[collection]\nsize = 30\n\n{table}", encoding="utf-8")
    rc, _, err = cli("generate", layers, "-o", tmp_path / "out", "--config", cfg, "-q")
    assert rc != 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_with_stacks_the_first_stack_makes_room_and_rarity_counts_them(project, tmp_path):
    layers, cfg, _ = project
    cfg.write_text('[collection]\nseed = 3\n\n[one_of_ones]\nfolder = "ones"\n\n'
                   '[[stacks]]\nsize = 6\nlayers = [{ folder = "01-Background" }, { folder = "02-Body" }]\n\n'
                   '[[stacks]]\nsize = 4\nlayers = [{ folder = "01-Background" }, { folder = "03-Clothes" }]\n',
                   encoding="utf-8")
    out = tmp_path / "out"
    rc, _, err = cli("generate", layers, "-o", out, "--config", cfg, "-q")
    assert rc == 0, err
    meta = {int(p.stem): json.loads(p.read_text(encoding="utf-8")) for p in (out / "metadata").glob("*.json")}
    kinds = [tuple(a["trait_type"] for a in m["attributes"]) for _, m in sorted(meta.items())]
    assert kinds.count(("Background", "Body")) == 3 and kinds.count(("Background", "Clothes")) == 4
    assert sum(1 for k in kinds if "1/1" in k) == 3 and len(meta) == 10
    with open(out / "rarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sum(1 for r in rows if r.get("1/1") not in (None, "", "(none)")) == 3
