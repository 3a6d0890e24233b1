"""An item's files ([output] formats and [[output.sizes]]): their paths, their bytes from one composite,
the config that asks for them, and the metadata that names them on each chain."""
import io

import numpy as np
import pytest
from PIL import Image

from gpucomp.config import Config, from_dict, load_config, to_dict, with_overrides
from gpucomp.encode.media import media_entries, output_files, render_files
from gpucomp.errors import ConfigError
from gpucomp.metadata.tokens import MetadataOptions, item_metadata, options_for_config


def config(tmp_path, text: str) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path)


PIXEL_ART = '''
[output]
format = ["png", "webp"]
webp = { lossless = true }
[[output.sizes]]
name = "x4"
scale = 4
format = "png"
[[output.sizes]]
name = "thumbnail"
width = 4
'''


def test_files_are_primary_first_then_each_size_in_its_formats(tmp_path):
    cfg = config(tmp_path, PIXEL_ART)
    files = output_files(cfg.formats, cfg.sizes)
    assert [f.path for f in files] == ["{n}.png", "{n}.webp", "x4/{n}.png", "thumbnail/{n}.png", "thumbnail/{n}.webp"]
    assert files[3].name(17) == "thumbnail/17.png"
    assert media_entries(files)[1] == ("{n}.webp", "image/webp", "")
    assert media_entries(output_files(Config().formats, ())) == ()  # the default: metadata reads as before


def test_every_file_decodes_to_its_copy_of_the_one_composite(tmp_path):
    cfg = config(tmp_path, PIXEL_ART)
    files = output_files(cfg.formats, cfg.sizes)
    px = np.random.default_rng(3).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    blobs = render_files(px, files, "fast", True)
    decoded = [np.asarray(Image.open(io.BytesIO(b))) for b in blobs]
    assert np.array_equal(decoded[0], px) and np.array_equal(decoded[1], px)  # PNG and lossless WebP
    assert np.array_equal(decoded[2], np.repeat(np.repeat(px, 4, 0), 4, 1))  # nearest x4: exact
    assert decoded[3].shape == (4, 4, 4) and np.array_equal(decoded[3], decoded[4])  # one resize, two formats


def test_copies_a_backend_made_are_encoded_as_given_not_resized_again(tmp_path, monkeypatch):
    """SizedPixels (nearest copies made on the GPU): those sizes are encoded from the copy handed in;
    sizes it lacks are resized here; anything but pixels or SizedPixels is a TypeError."""
    from gpucomp.encode import media
    from gpucomp.encode.rendered import Filtered, SizedPixels

    cfg = config(tmp_path, PIXEL_ART)
    files = output_files(cfg.formats, cfg.sizes)
    px = np.random.default_rng(3).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    mark = np.zeros((32, 32, 4), np.uint8)  # not px x4: shows which pixels the x4 file was made from
    resized = []
    real = media.resize
    monkeypatch.setattr(media, "resize", lambda p, size: resized.append(size.name) or real(p, size))
    blobs = render_files(SizedPixels(px, {"x4": mark}), files, "fast", False)
    assert resized == ["thumbnail"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(blobs[2]))), mark)
    plain = render_files(px, files, "fast", False)
    assert blobs[:2] + blobs[3:] == plain[:2] + plain[3:]
    with pytest.raises(TypeError, match="Filtered"):
        render_files(Filtered(np.zeros((8, 33), np.uint8), 8, 8, 4), files, "fast", False)


def test_config_round_trips_through_the_manifest_form(tmp_path):
    cfg = config(tmp_path, PIXEL_ART)
    back = from_dict(to_dict(cfg))
    assert back.formats == cfg.formats and back.sizes == cfg.sizes
    assert "formats" not in to_dict(Config())  # a default config's stored form is unchanged
    old = to_dict(Config())
    assert from_dict(old).formats == Config().formats  # earlier manifests: one PNG


def test_python_callers_may_name_formats_and_give_size_tables():
    cfg = with_overrides(Config(), formats=["webp", "png"], sizes=[{"name": "t", "width": 8}])
    assert [f.name for f in cfg.formats] == ["webp", "png"] and cfg.formats[0].settings["quality"] == 90
    assert cfg.sizes[0].width == 8
    with pytest.raises(ConfigError, match="unknown format 'tiff'"):
        with_overrides(Config(), formats="tiff")


@pytest.mark.parametrize("text, message", [
    ('[output]\nformat = "gif"', "output.format: unknown format 'gif'"),
    ('[output]\nformat = "png"\n[output.jpeg]\nquality = 200', "output.jpeg.quality: must be between 1 and 95"),
    ('[output]\nsizes = 3', "output.sizes: expected [[output.sizes]] tables"),
    ('[output]\nformats = "png"', "unknown key output.formats; known: preset, opaque_rgb, format, sizes"),
])
def test_bad_output_tables_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        config(tmp_path, text)
    assert message in str(err.value)


def meta(cfg: Config, fmt: str, number: int = 7, base_uri: str = "ipfs://CID") -> dict:
    cfg = with_overrides(cfg, base_uri=base_uri, metadata={"format": fmt})
    return item_metadata(number, [("Hat", "Cap")], "d", options_for_config(cfg))


def test_image_names_the_first_format_on_every_chain():
    cfg = with_overrides(Config(), formats=["webp", "png"])
    for fmt in ("erc721", "erc1155"):
        assert meta(cfg, fmt)["image"] == "ipfs://CID/7.webp"
    sol = meta(cfg, "solana", base_uri="")
    assert sol["image"] == "7.webp"
    assert sol["properties"]["files"] == [{"uri": "7.webp", "type": "image/webp"}, {"uri": "7.png", "type": "image/png"}]
    tz = meta(cfg, "tezos")
    assert tz["artifactUri"] == tz["displayUri"] == tz["thumbnailUri"] == "ipfs://CID/7.webp"
    assert tz["formats"][1] == {"uri": "ipfs://CID/7.png", "mimeType": "image/png"}


def test_tezos_display_and_thumbnail_are_the_sizes_named_so(tmp_path):
    cfg = config(tmp_path, PIXEL_ART + '[[output.sizes]]\nname = "display"\nwidth = 6\nformat = "webp"\n')
    tz = meta(cfg, "tezos")
    assert tz["artifactUri"] == "ipfs://CID/7.png"
    assert tz["displayUri"] == "ipfs://CID/display/7.webp"
    assert tz["thumbnailUri"] == "ipfs://CID/thumbnail/7.png"
    assert len(tz["formats"]) == 6


def test_default_output_metadata_is_unchanged():
    opts = options_for_config(with_overrides(Config(), base_uri="ipfs://CID"))
    assert opts.media == () and "media" not in opts.to_dict()
    assert item_metadata(3, [], "d", opts)["image"] == "ipfs://CID/3.png"
    stored = MetadataOptions.from_dict(options_for_config(with_overrides(Config(), formats="webp")).to_dict())
    assert stored.media == (("{n}.webp", "image/webp", ""),)  # update-metadata keeps the files


def test_the_writer_helpers(tmp_path):
    from gpucomp.encode.media import is_default, size_folders, write_others

    cfg = config(tmp_path, PIXEL_ART)
    files = output_files(cfg.formats, cfg.sizes)
    assert is_default(output_files(Config().formats, ())) and not is_default(files)
    assert not is_default(output_files(with_overrides(Config(), formats="webp").formats, ()))
    assert size_folders(files) == ("x4", "thumbnail")
    images = tmp_path / "images"
    for name in ("", *size_folders(files)):
        (images / name).mkdir(parents=True, exist_ok=True)
    blobs = [b"primary", b"w", b"x4", b"tp", b"tw"]
    assert write_others(images, 9, files, blobs) == 7
    assert not (images / "9.png").exists()  # the primary is the caller's, written last
    assert (images / "9.webp").read_bytes() == b"w" and (images / "thumbnail" / "9.webp").read_bytes() == b"tw"


def test_a_file_too_large_for_its_format_is_refused_before_rendering():
    from gpucomp.encode.media import check_fits

    cfg = with_overrides(Config(), formats=["png", "webp"], sizes=[{"name": "x32", "scale": 32, "format": "png"},
                                                                   {"name": "w", "scale": 30, "format": "webp"}])
    files = output_files(cfg.formats, cfg.sizes)
    check_fits(files, 24, 24)
    with pytest.raises(ConfigError, match=r"size 'w' makes 18000x30 from the 600x1 layers; webp holds at most 16383"):
        check_fits(files, 600, 1)  # the PNG at x32, 19200 wide, is fine
    with pytest.raises(ConfigError, match=r"size 'x32' makes 65536x65536 .* png holds at most 65535"):
        check_fits(files, 2048, 2048)
