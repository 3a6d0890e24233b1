"""Which files a finished collection holds (gpucomp.publish.itemfiles): the primary image read back from the
manifest, and the file a thumbnail is made from."""
import gpucomp
from gpucomp.config import Config, with_overrides
from gpucomp.encode.media import DEFAULT_FILES, output_files
from gpucomp.publish.itemfiles import collection_files, thumbnail_source


def files(sizes, formats=("png", "webp")):
    cfg = with_overrides(Config(), formats=list(formats), sizes=sizes)
    return output_files(cfg.formats, cfg.sizes)


def test_a_folder_without_a_manifest_holds_one_png(tmp_path):
    assert collection_files(tmp_path) == DEFAULT_FILES


def test_the_manifest_names_the_primary_image_and_the_sizes(demo_layers, tmp_path):
    sizes = [{"name": "thumb", "width": 16, "format": "png"}]
    gpucomp.run(demo_layers, tmp_path / "out", size=2, seed=1, formats=["jpeg", "png"], sizes=sizes)
    got = collection_files(tmp_path / "out")
    assert [f.path for f in got] == ["{n}.jpg", "{n}.png", "thumb/{n}.png"]
    assert got[0].format.settings["quality"] == 90


def test_thumbnails_come_from_the_smallest_file_that_is_large_enough():
    fs = files([{"name": "display", "width": 1024}, {"name": "thumb", "width": 256}, {"name": "x4", "scale": 4},
                {"name": "squashed", "width": 300, "height": 100}])
    assert thumbnail_source(fs, 2048, 2048, 160).path == "thumb/{n}.png"  # first format of the size
    assert thumbnail_source(fs, 2048, 2048, 512).path == "display/{n}.png"
    assert thumbnail_source(fs, 2048, 2048, 2000).path == "{n}.png"  # no copy reaches 2000 pixels
    assert thumbnail_source(fs, 24, 24, 160).path == "{n}.png"  # pixel art: the 24-pixel primary, not x4
    wide = files([{"name": "half", "scale": 0.5}])
    assert thumbnail_source(wide, 301, 99, 100).path == "half/{n}.png"  # 150x50: within a pixel of the aspect
    squashed = files([{"name": "squashed", "width": 300, "height": 100}])
    assert thumbnail_source(squashed, 2048, 2048, 100).path == "{n}.png"  # another aspect ratio
