"""One-of-ones (oneofones.py): the folder is checked by name before anything is written, and
every one-of-one gets a number of its own, given or seeded, that no generated item takes."""
import json

import numpy as np
import pytest
from PIL import Image

from gpucomp.errors import ConfigError
from gpucomp.oneofones import generated_numbers, manifest_entry, place, read_one_of_ones


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
