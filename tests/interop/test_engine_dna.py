"""engine_dna.py: the dna HashLips v1 writes for an item, from the files it draws (checked against the
DNA strings the engine itself made from our layers: tests/fixtures/engines/hashlips/)."""
import hashlib
import json
from pathlib import Path

from gpucomp.interop.engine_dna import HashLipsDna

FIXTURES = Path(__file__).parents[1] / "fixtures" / "engines"


def test_the_dna_of_each_item_is_the_one_hashlips_made():
    layers = FIXTURES / "layers" / "shared"
    dna = HashLipsDna()
    for made in json.loads((FIXTURES / "hashlips" / "a_shared" / "_raw_dna.json").read_text()):
        pieces = zip(("Back", "Front"), made["dna"].split("-"), strict=True)
        files = [(layers / folder / piece.split(":", 1)[1], True) for folder, piece in pieces]
        assert dna.string(files) == made["dna"] and dna.sha1(files) == made["sha1"]


def test_ids_are_byte_ordered_without_dotfiles_and_bypassed_layers_are_marked(tmp_path):
    for name in ("b.png", "B.png", "_x.png", ".DS_Store", "a.png"):
        (tmp_path / name).write_bytes(b"")
    dna = HashLipsDna()
    assert [dna.element_id(tmp_path / n) for n in ("B.png", "_x.png", "a.png", "b.png")] == [0, 1, 2, 3]
    text = dna.string([(tmp_path / "a.png", True), (tmp_path / "b.png", False)])
    assert text == "2:a.png-3:b.png?bypassDNA=true"
    assert dna.sha1([(tmp_path / "a.png", True)]) == hashlib.sha1(b"2:a.png").hexdigest()
