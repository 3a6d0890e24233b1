"""Animated collections end to end: every item's animated files hold the frames the pixel contract
gives (frame f: each trait at its frame f mod n), the still is the chosen frame, metadata names
both, and resume, changed settings and missing files behave as for still outputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.compositing import composite_dense, finalize
from gpucomp.demo import make_layers
from gpucomp.errors import ConfigError, LayerError, OutputError
from gpucomp.layers.layerset import load_layers

FRAMES = 4  # the demo's top layer: folders of 4 frames; the layer below: animated PNGs of 2


@pytest.fixture(scope="module")
def anim_layers(tmp_path_factory):
    return make_layers(tmp_path_factory.mktemp("anim") / "layers", layers=3, traits=9, size=64, seed=5, animated=FRAMES)


def rgba(px: np.ndarray) -> np.ndarray:
    if px.shape[2] == 4:
        return px
    return np.concatenate([px, np.full(px.shape[:2] + (1,), 255, np.uint8)], 2)


def expected_frames(layers, meta: dict) -> list[np.ndarray]:
    """The item's frames from the spec (compositing.composite_dense), trait by trait from its metadata."""
    ls = load_layers(layers, animated=True)
    chosen = {a["trait_type"]: a["value"] for a in meta["attributes"]}
    traits = [next(t for t in layer.traits if t.name == chosen[layer.name]) for layer in ls.layers]
    out = []
    for f in range(FRAMES):
        drawn = [t if t.frames is None else t.frames[f % len(t.frames)] for t in traits]
        out.append(rgba(finalize(composite_dense((ls.height, ls.width), drawn))))
    return out


def decoded(path: Path) -> list[np.ndarray]:
    """Frames of an animated image, a stored frame counted as often as its duration says."""
    out = []
    with Image.open(path) as im:
        for i in range(im.n_frames):
            im.seek(i)
            frame = np.array(im.convert("RGBA"))  # loads the frame: WebP's duration is known only then
            out += [frame] * round(im.info.get("duration", 100) / 100)
    return out


def still(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return rgba(np.array(im))


def run(layers, out, **options):
    settings = dict(size=5, seed=2, workers=2, backend="cpu", animation=["apng", "webp", "gif"],
                    formats=["png", "webp"])
    settings.update(options)
    return gpucomp.run(layers, out, **settings)


def test_every_animated_file_holds_the_items_frames(anim_layers, tmp_path):
    """APNG and lossless WebP equal the spec's frames, GIF within its bound (the demo's backgrounds have
    more than 256 colours: tests/encode/test_animated.py has GIF's exact case); the still files are frame 0."""
    from gpucomp.config import Config
    from gpucomp.encode.animated import parse_animation
    from gpucomp.encode.formats import parse_formats

    from tolerances import GIF_QUANTIZED_MAX_MEAN_ERROR

    formats = parse_formats(["png", "webp"], {"webp": {"lossless": True}}, "test")
    cfg = Config(formats=formats, animation=parse_animation(["apng", "webp", "gif"], {}, formats[1].settings, "test"))
    gpucomp.run(anim_layers, tmp_path / "out", cfg, size=5, seed=2, workers=2, backend="cpu")
    images = tmp_path / "out" / "images"
    for n in range(1, 6):
        meta = json.loads((tmp_path / "out" / "metadata" / f"{n}.json").read_text())
        want = expected_frames(anim_layers, meta)
        assert np.array_equal(still(images / f"{n}.png"), want[0])
        for name in (f"animation/{n}.png", f"animation/{n}.webp", f"animation/{n}.gif"):
            got = decoded(images / name)
            assert len(got) == FRAMES, name
            for f, (g, w) in enumerate(zip(got, want, strict=True)):
                if "gif" in name:
                    assert np.abs(g.astype(int) - w).mean() <= GIF_QUANTIZED_MAX_MEAN_ERROR, (name, f)
                else:
                    assert np.array_equal(g, w), (name, f)


def test_video_files_have_every_frame(anim_layers, tmp_path):
    av = pytest.importorskip("av")
    run(anim_layers, tmp_path / "out", size=2, animation=["mp4", "webm"])
    for name in ("1.mp4", "2.webm"):
        with av.open(str(tmp_path / "out" / "images" / "animation" / name)) as c:
            assert len(list(c.decode(video=0))) == FRAMES


def test_the_still_is_the_chosen_frame(anim_layers, tmp_path):
    from gpucomp.config import Config, with_overrides
    from gpucomp.encode.animated import parse_animation

    anim = parse_animation(["apng"], {"still_frame": 3}, {}, "test")
    gpucomp.run(anim_layers, tmp_path / "out", with_overrides(Config(), animation=anim), size=2, backend="cpu")
    frames = decoded(tmp_path / "out" / "images" / "animation" / "1.png")
    assert np.array_equal(still(tmp_path / "out" / "images" / "1.png"), frames[3])


def test_metadata_names_the_animation_and_the_still(anim_layers, tmp_path):
    run(anim_layers, tmp_path / "erc", size=1, base_uri="ipfs://CID")
    meta = json.loads((tmp_path / "erc" / "metadata" / "1.json").read_text())
    assert meta["image"] == "ipfs://CID/1.png" and meta["animation_url"] == "ipfs://CID/animation/1.png"
    assert list(meta)[:4] == ["name", "description", "image", "animation_url"]
    run(anim_layers, tmp_path / "sol", size=1, metadata={"format": "solana"}, base_uri="", animation=["mp4", "gif"]
        if _has_av() else ["gif"])
    meta = json.loads((tmp_path / "sol" / "metadata" / "0.json").read_text())
    anim = "animation/0.mp4" if _has_av() else "animation/0.gif"
    assert meta["image"] == "0.png" and meta["animation_url"] == anim
    files = {f["uri"]: f["type"] for f in meta["properties"]["files"]}
    assert files["0.png"] == "image/png" and files["animation/0.gif"] == "image/gif"
    assert meta["properties"]["category"] == ("video" if _has_av() else "image")
    run(anim_layers, tmp_path / "tez", size=1, metadata={"format": "tezos"}, base_uri="ipfs://CID",
        sizes=[{"name": "display", "width": 32}])
    meta = json.loads((tmp_path / "tez" / "metadata" / "1.json").read_text())
    assert meta["artifactUri"] == "ipfs://CID/animation/1.png"
    assert meta["displayUri"] == "ipfs://CID/display/1.png" and meta["thumbnailUri"] == "ipfs://CID/1.png"
    assert {"uri": "ipfs://CID/animation/1.gif", "mimeType": "image/gif"} in meta["formats"]


def _has_av() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None


def test_animated_traits_without_animated_output_are_refused_saying_how(anim_layers, tmp_path):
    with pytest.raises(LayerError, match=r"animated PNG with 2 frames; animated traits are read when"):
        gpucomp.run(anim_layers, tmp_path / "out", size=2, backend="cpu")


def test_max_frames_and_still_frame_are_checked_against_the_layers(anim_layers, tmp_path):
    from gpucomp.config import Config, with_overrides
    from gpucomp.encode.animated import parse_animation

    for table, message in (({"max_frames": 3}, r"animation of at least 4 frames .* more than max_frames = 3"),
                           ({"still_frame": 4}, r"still_frame = 4, but the animation has 4 frames")):
        cfg = with_overrides(Config(), animation=parse_animation("gif", table, {}, "test"))
        with pytest.raises((ConfigError, LayerError), match=message):
            gpucomp.run(anim_layers, tmp_path / "out", cfg, size=2, backend="cpu")
    assert not (tmp_path / "out" / "images").exists()


def test_resuming_with_other_animation_settings_is_refused_naming_the_change(anim_layers, tmp_path):
    from gpucomp.config import Config, with_overrides
    from gpucomp.encode.animated import parse_animation

    run(anim_layers, tmp_path / "out", size=2)
    cfg = with_overrides(Config(), formats=["png", "webp"],
                         animation=parse_animation(["apng", "webp", "gif"], {"fps": 12},
                                                   {"quality": 90, "method": 4, "lossless": False}, "test"))
    with pytest.raises(OutputError, match=r"the animation settings changed \(fps 10 -> 12\)"):
        gpucomp.run(anim_layers, tmp_path / "out", cfg, size=2, seed=2, backend="cpu")
    with pytest.raises(OutputError, match=r"holds a collection .*: the animation settings changed "
                                          r"\(formats \['apng', 'webp', 'gif'\] -> \['gif'\], .*\)\. Resuming"):
        gpucomp.run(anim_layers, tmp_path / "out", size=2, seed=2, backend="cpu", formats=["png", "webp"],
                    animation="gif")


def test_config_file_reads_the_animation_settings(anim_layers, tmp_path):
    toml = tmp_path / "gpucomp.toml"
    toml.write_text('[collection]\nsize = 2\n[output]\nformat = "png"\nanimation = ["gif"]\n'
                    '[output.animated]\nframe_ms = 40\nloop = 2\n')
    gpucomp.run(anim_layers, tmp_path / "out", str(toml), backend="cpu")
    with Image.open(tmp_path / "out" / "images" / "animation" / "1.gif") as im:
        im.seek(1)
        im.load()
        assert im.info["duration"] == 40 and im.info["loop"] == 2
    manifest = json.loads((tmp_path / "out" / "gpucomp.json").read_text())
    assert manifest["art"]["output"]["animation"]["frames"] == FRAMES
    assert manifest["art"]["output"]["animation"]["frame_ms"] == 40
    (tmp_path / "out" / "images" / "animation" / "2.gif").unlink()  # a missing animated file: re-rendered
    from gpucomp.outdir.pipeline import resume

    list(resume(tmp_path / "out"))
    assert (tmp_path / "out" / "images" / "animation" / "2.gif").stat().st_size > 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[output]\n[output.animated]\nfps = 12\n')
    with pytest.raises(ConfigError, match=r"animation names no format"):
        gpucomp.run(anim_layers, tmp_path / "bad", str(bad), backend="cpu")


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


@pytest.mark.parametrize("point", ["others:3", "image:3"])
def test_a_run_killed_mid_item_resumes_to_the_same_files(anim_layers, tmp_path, point):
    """Killed once item 3's animated files are written but not its still (others:3), or its still but not
    its metadata (image:3): the same command again finishes a collection identical to one made at once."""
    cmd = [sys.executable, "-m", "gpucomp", "generate", str(anim_layers), "-n", "5", "--seed", "2", "--workers", "1",
           "--backend", "cpu", "--animation", "apng,gif", "-q"]
    env = dict(os.environ, PYTHONPATH=str(Path(gpucomp.__file__).parents[1]))
    ref = subprocess.run([*cmd, "-o", str(tmp_path / "ref")], env=env, capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "out"
    killed = subprocess.run([*cmd, "-o", str(out)], env={**env, "GPUCOMP_TEST_KILL": point}, capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -9
    assert (out / "images" / "animation" / "3.gif").exists() and not (out / "metadata" / "3.json").exists()
    again = subprocess.run([*cmd, "-o", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert snapshot(out) == snapshot(tmp_path / "ref")


def test_demo_animated_makes_an_animated_collection(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(gpucomp.__file__).parents[1]))
    r = subprocess.run([sys.executable, "-m", "gpucomp", "demo", "-o", str(tmp_path / "demo"), "--animated", "4",
                        "--layers", "3", "--traits", "6", "--image-size", "32", "-n", "3", "--backend", "cpu", "-q"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    layers = tmp_path / "demo" / "layers"
    assert all(p.is_dir() for p in (layers / "03-Clothes").iterdir())  # the top layer: folders of frames
    assert len(decoded(tmp_path / "demo" / "collection" / "images" / "animation" / "1.webp")) == 4


def test_demo_layers_are_deterministic(tmp_path):
    a = make_layers(tmp_path / "a", layers=3, traits=6, size=32, seed=1, animated=4)
    b = make_layers(tmp_path / "b", layers=3, traits=6, size=32, seed=1, animated=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and len(files) > 6
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_static_items_repeat_one_frame(tmp_path):
    """An item drawing no animated trait is its still in every frame: its frames are all alike, so the
    encoders store that one frame (a one-frame file), as the README says."""
    root = tmp_path / "layers"
    (root / "1-Bg").mkdir(parents=True)
    (root / "2-Fx").mkdir()
    Image.fromarray(np.full((16, 16, 4), (5, 6, 7, 255), np.uint8)).save(root / "1-Bg" / "Bg#1.png")
    dot = np.zeros((16, 16, 4), np.uint8)
    dot[4:8, 4:8] = (250, 0, 0, 255)
    Image.fromarray(dot).save(root / "2-Fx" / "Dot#1.png")
    ims = [Image.fromarray(np.roll(dot, k, 1)) for k in range(3)]
    ims[0].save(root / "2-Fx" / "Run#1.png", save_all=True, append_images=ims[1:], duration=100)
    gpucomp.run(root, tmp_path / "out", size=2, backend="cpu", animation=["apng", "webp", "gif"])
    metas = [json.loads((tmp_path / "out" / "metadata" / f"{n}.json").read_text()) for n in (1, 2)]
    n_dot, n_run = (1, 2) if metas[0]["attributes"][1]["value"] == "Dot" else (2, 1)
    for ext in ("png", "webp", "gif"):
        with Image.open(tmp_path / "out" / "images" / "animation" / f"{n_dot}.{ext}") as im:
            assert im.n_frames == 1
            if ext != "webp":  # lossy WebP by default
                want = still(tmp_path / "out" / "images" / f"{n_dot}.png")
                assert np.array_equal(rgba(np.array(im.convert("RGBA"))), want)
        assert len(decoded(tmp_path / "out" / "images" / "animation" / f"{n_run}.{ext}")) == 3


def test_the_cuda_backend_composites_frames_in_its_batches_to_the_cpu_files(fake_gpu, anim_layers, tmp_path,
                                                                              monkeypatch):
    """Frames of several items share a CUDA batch (batch 6 across items of 4 frames, two render calls);
    every file equals the CPU run's byte for byte."""
    from gpucomp.config import Config, with_overrides
    from gpucomp.outdir import shard
    from gpucomp.outdir.pipeline import Generation
    from gpucomp.render.cuda_backend import CudaBackend

    monkeypatch.setattr(shard, "ANIM_GROUP_FRAMES", 12)  # 3 items a call
    options = dict(size=5, seed=2, animation=["apng", "gif"], formats=["png", "webp"])
    backend = CudaBackend(batch_size=6)
    fake_gpu.watch(backend)
    cfg = with_overrides(Config(), force=True, **options)
    for _ in Generation(anim_layers, tmp_path / "cuda", cfg, backend=backend):
        pass
    assert fake_gpu.calls["composite_batch"] == 4  # 12 + 8 frames in batches of 6
    gpucomp.run(anim_layers, tmp_path / "cpu", backend="cpu", **options)
    assert snapshot(tmp_path / "cuda") == snapshot(tmp_path / "cpu") | {
        "gpucomp.json": (tmp_path / "cuda" / "gpucomp.json").read_bytes()}


def test_extend_and_rerender_cover_the_animated_files(anim_layers, tmp_path):
    """extend makes the new items' animated files; a changed frame of a folder trait re-renders
    (rerender) exactly the items that draw it, animated files included."""
    import shutil

    from gpucomp.outdir.pipeline import extend, rerender

    layers = tmp_path / "layers"
    shutil.copytree(anim_layers, layers)
    out = tmp_path / "out"
    run(layers, out, size=4, animation=["apng"], formats=["png"])
    list(extend(out, 2))
    assert all((out / "images" / "animation" / f"{n}.png").stat().st_size for n in range(1, 7))
    metas = {n: json.loads((out / "metadata" / f"{n}.json").read_text()) for n in range(1, 7)}
    top = {n: next(a["value"] for a in m["attributes"] if a["trait_type"] == "Clothes") for n, m in metas.items()}
    changed = top[1]
    folder = next(p for p in (layers / "03-Clothes").iterdir() if p.name.startswith(changed + "#"))
    before = {n: (out / "images" / "animation" / f"{n}.png").read_bytes() for n in range(1, 7)}
    with Image.open(folder / "002.png") as im:
        frame = np.array(im.convert("RGBA"))
    frame[0:8, 0:8] = (255, 0, 255, 255)
    Image.fromarray(frame).save(folder / "002.png")
    list(rerender(out))
    for n in range(1, 7):
        now = (out / "images" / "animation" / f"{n}.png").read_bytes()
        assert (now != before[n]) == (top[n] == changed), n
    assert (decoded(out / "images" / "animation" / "1.png")[2][0:8, 0:8] == (255, 0, 255, 255)).all()  # the top layer


@pytest.mark.parametrize("animation,shipped", [(["gif", "mp4"], "mp4"), (["gif"], None)])
def test_sugar_export_uploads_a_video_animation_beside_the_image(anim_layers, tmp_path, animation, shipped):
    """Sugar takes an animation_url file as <n>.mp4 or <n>.webm beside <n>.png; an animation Sugar
    does not upload (GIF) leaves animation_url out rather than a broken relative path."""
    if shipped:
        pytest.importorskip("av")
    from gpucomp.publish.export import export

    out = tmp_path / "out"
    run(anim_layers, out, size=2, formats=["png"], animation=animation, metadata={"format": "solana"}, base_uri="")
    notes = []
    dest = export(out, "sugar", log=notes.append)
    meta = json.loads((dest / "0.json").read_text())
    uris = [f["uri"] for f in meta["properties"]["files"]]
    if shipped:
        assert meta["animation_url"] == "0.mp4" and uris == ["0.png", "0.mp4"]
        assert (dest / "0.mp4").read_bytes() == (out / "images" / "animation" / "0.mp4").read_bytes()
    else:
        assert "animation_url" not in meta and uris == ["0.png"]
        assert any("animation_url is left out" in n for n in notes)
    assert not (dest / "animation").exists()
