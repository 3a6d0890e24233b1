"""pipeline.py: the Python API's loop. Plain iteration yields what this run renders;
`every_item()` yields the whole collection in number order, found or rendered, so an upload loop
that is interrupted and run again sees every item once."""
import pytest

import gpucomp
from gpucomp.errors import Interrupted


def test_an_interrupted_upload_loop_run_again_sees_every_item_once(demo_layers, tmp_path):
    out, uploaded = tmp_path / "out", []
    gen = gpucomp.generate(demo_layers, out, size=24, seed=2, workers=1)
    with pytest.raises(Interrupted):
        for item in gen.every_item():
            uploaded.append(item.number)
            if len(uploaded) == 5:
                gen.stop()
    first_run = list(uploaded)
    assert first_run == list(range(1, len(first_run) + 1))  # in number order, none skipped
    again = gpucomp.generate(demo_layers, out, size=24, seed=2, workers=1)
    items = list(again.every_item())
    assert [i.number for i in items] == list(range(1, 25))  # all of them, the earlier ones too
    found = [i.number for i in items if not i.rendered]  # what the first run finished (a little past the stop)
    assert found == list(range(1, again.finished_before + 1)) and set(first_run) <= set(found)
    assert again.summary["items"] == 24 and again.summary["provenance_hash"]
    meta = items[0].read_metadata()
    assert meta["edition"] == 1 and [a["value"] for a in meta["attributes"]] == list(items[0].traits.values())


def test_a_finished_collection_yields_every_item_as_found(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=6, seed=1)
    assert list(gpucomp.generate(demo_layers, out, size=6, seed=1)) == []  # plain iteration: nothing rendered now
    items = list(gpucomp.generate(demo_layers, out, size=6, seed=1).every_item())
    assert [(i.number, i.rendered) for i in items] == [(n, False) for n in range(1, 7)]
    assert all(i.image.is_file() and i.metadata.is_file() for i in items)
