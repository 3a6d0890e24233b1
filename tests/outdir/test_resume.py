"""Resume and the output settings: the manifest records formats and sizes (absent = one PNG, as every
earlier manifest means), a change is refused by name, and an item counts as finished only with every
file of it in place."""
import numpy as np
import pytest

from gpucomp.config import Config, with_overrides
from gpucomp.errors import OutputError
from gpucomp.outdir.resume import DEFAULT_OUTPUT, differences, find_finished, output_of, output_settings, read_manifest


def manifest(cfg: Config) -> dict:
    """The parts of a manifest `differences` reads, as make_manifest builds them."""
    m = {"format": 3, "plan": {"seed": 0, "size": 1, "start": 1, "shuffle": False, "stacks": [], "rules": [],
                               "extensions": []}, "plan_sha256": "x",
         "art": {"width": 8, "height": 8, "preset": "fast", "opaque_rgb": True, "blend": [], "traits": {}}}
    if output_settings(cfg) != DEFAULT_OUTPUT:
        m["art"]["output"] = output_settings(cfg)
    return m


def test_a_manifest_without_output_settings_means_one_png():
    old = manifest(Config())
    assert "output" not in old["art"] and output_of(old) == DEFAULT_OUTPUT
    assert differences(old, manifest(Config())) == []


def test_changed_formats_or_sizes_are_refused_by_name():
    old = manifest(Config())
    webp = manifest(with_overrides(Config(), formats=["png", "webp"]))
    assert differences(old, webp) == ["the output formats or sizes changed (png -> png+webp)"]
    sized = manifest(with_overrides(Config(), sizes=[{"name": "t", "width": 4}]))
    assert differences(old, sized) == ["the output formats or sizes changed (png -> png, sizes t)"]
    q = manifest(with_overrides(Config(), formats="webp"))
    assert differences(q, manifest(with_overrides(Config(), formats="webp"))) == []
    assert differences(old, q, art=False) == []  # extend/rerender compare the plan only there


def test_finished_needs_the_primary_hash_and_every_other_file(tmp_path):
    import hashlib

    images = tmp_path / "images"
    (images / "t").mkdir(parents=True)
    (tmp_path / "metadata").mkdir()
    shas = np.zeros((3, 32), np.uint8)
    for i, n in enumerate((1, 2, 3)):
        data = f"primary {n}".encode()
        (images / f"{n}.webp").write_bytes(data)
        shas[i] = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)
        (tmp_path / "metadata" / f"{n}.json").write_bytes(b"{}")
    (images / "1.png").write_bytes(b"x")
    (images / "t" / "1.png").write_bytes(b"x")
    (images / "2.png").write_bytes(b"x")  # item 2 lacks its thumbnail
    (images / "3.png").write_bytes(b"")  # item 3's PNG is empty
    (images / "t" / "3.png").write_bytes(b"x")
    files = ("{n}.webp", "{n}.png", "t/{n}.png")
    done = find_finished(tmp_path, [1, 2, 3], shas, lambda i: b"{}", 1, files)
    assert done.tolist() == [True, False, False]
    (images / "1.webp").write_bytes(b"changed")
    assert find_finished(tmp_path, [1, 2, 3], shas, lambda i: b"{}", 1, files).tolist() == [False, False, False]


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"format": NaN}', '{"format": 3, "x": "\\ud800"}'])
def test_a_manifest_json_cannot_hold_is_unreadable_not_a_traceback(tmp_path, text):
    (tmp_path / "gpucomp.json").write_text(text)
    with pytest.raises(OutputError, match="gpucomp.json: unreadable .*pass --force"):
        read_manifest(tmp_path)


def test_a_dna_list_planned_by_the_older_reading_says_why_its_plan_changed():
    """Before HashLips' own DNA was read by the engine's rule (a piece's place is its layer), gpucomp took
    a piece's first number for the layer: such a collection's plan now differs, and resume says why."""
    old, new = manifest(Config()), manifest(Config())
    for m in (old, new):
        m["plan"]["from"] = {"kind": "dna", "sha256": "0" * 64, "items": 4}
    old["plan_sha256"] = "1" * 64
    assert [d for d in differences(old, new) if "DNA list now reads as HashLips writes it" in d]
    old["plan"]["from"]["kind"] = new["plan"]["from"]["kind"] = "csv"
    assert differences(old, new) == ["the same inputs now give another plan (was NumPy upgraded?)"]
