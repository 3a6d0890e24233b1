import json

import numpy as np
from PIL import Image

import gpucomp
from gpucomp.compositing import composite_dense, finalize
from gpucomp.layers.layerset import load_layers


def test_generate_writes_exact_pixels(demo_layers, tmp_path):
    out = tmp_path / "out"
    items = list(gpucomp.generate(demo_layers, out, size=20, seed=5, backend="cpu"))
    assert sorted(i.number for i in items) == list(range(1, 21))
    ls = load_layers(demo_layers)
    meta = json.loads((out / "_metadata.json").read_text())
    for entry in meta:
        names = [a["value"] for a in entry["attributes"]]
        traits = [next(t for t in layer.traits if t.name == name) for layer, name in zip(ls.layers, names, strict=True)]
        want = finalize(composite_dense((ls.height, ls.width), traits))
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png"))
        assert got.shape == want.shape and np.array_equal(got, want)
    assert [m["edition"] for m in meta] == list(range(1, 21))
