"""The gallery page in headless Chromium (Debian's `chromium`, driven by Playwright for Python
pointed at that executable; Playwright's own browser downloads are never used).

A 2,000-item collection of 64x64 demo layers: two filters give the count computed from the
metadata, an item opens with its attributes and metadata, sorting by rank puts rank 1 first,
search finds an item, the charts mark what rarity.json marks. A synthetic 100,000-item index
measures how long the page takes to open and to filter (printed, not asserted).

Skips, with the reason, where Playwright or a Chromium cannot be started; with
GPUCOMP_REQUIRE_BROWSER=1 (set by .ci/run) that fails instead, so CI really runs these.
Screenshots are kept under pytest's temporary folder (the path is printed; GPUCOMP_GALLERY_ARTIFACTS
chooses another folder); with
GPUCOMP_GALLERY_SCREENSHOT=PATH the filtered-grid screenshot is also written to PATH, as a
small palette PNG (how the README's picture is made).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.demo import make_layers
from gpucomp.metadata import rarity
from gpucomp.publish import gallery

ITEMS = 2000
VIEWPORT = {"width": 1200, "height": 720}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
REQUIRED = os.environ.get("GPUCOMP_REQUIRE_BROWSER") == "1"


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (GPUCOMP_REQUIRE_BROWSER=1: the browser tests must run here)")
    pytest.skip(reason)


def chromium_path() -> str | None:
    for name in (os.environ.get("GPUCOMP_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One Chromium for the module (a fresh profile folder), closed at the end."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -e '.[gallery-test]')")
    exe = chromium_path()
    if exe is None:
        unavailable("no Chromium executable (apt-get install chromium, or set GPUCOMP_CHROMIUM)")
    pw = sync_playwright().start()
    try:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("chromium-profile")),
                                                    executable_path=exe, headless=True, args=FLAGS,
                                                    viewport=VIEWPORT)
    except Error as err:
        pw.stop()
        unavailable(f"Chromium at {exe} did not start: {str(err).splitlines()[0]}")
    yield ctx
    ctx.close()
    pw.stop()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots go: GPUCOMP_GALLERY_ARTIFACTS if set (e.g. a CI artifact folder), else a
    temporary folder (pytest keeps the last few)."""
    if dest := os.environ.get("GPUCOMP_GALLERY_ARTIFACTS"):
        Path(dest).mkdir(parents=True, exist_ok=True)
        return Path(dest)
    return tmp_path_factory.mktemp("gallery-artifacts")


@pytest.fixture(scope="module")
def collection(tmp_path_factory, browser):
    """A finished 2,000-item collection with its gallery (made only once a browser started)."""
    root = tmp_path_factory.mktemp("gallery-coll")
    layers = make_layers(root / "layers", layers=6, traits=36, size=64, seed=7)
    out = root / "collection"
    for _ in gpucomp.generate(layers, out, size=ITEMS, seed=11, name_prefix="Demo"):
        pass
    gallery.make_gallery(out, thumb=64)
    return out


@pytest.fixture
def page(browser):
    """A new tab; fails the test on any uncaught script error."""
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    yield pg
    pg.close()
    assert errors == []


def open_gallery(page, out: Path) -> None:
    page.goto((out / "gallery" / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)


def check_trait(page, layer: int, trait: int) -> None:
    page.evaluate(f"document.querySelectorAll('#filters details')[{layer}].open = true")
    page.check(f"#filters input[data-layer='{layer}'][data-trait='{trait}']")


def facet(page, layer: int, trait: int) -> int:
    text = page.inner_text(f"#filters input[data-layer='{layer}'][data-trait='{trait}'] ~ .n")
    return int(text.replace(",", ""))


def attributes(out: Path) -> list[dict]:
    """Item number order: {trait_type: value} of every item, from its metadata file."""
    return [{a["trait_type"]: a["value"] for a in json.loads((out / "metadata" / f"{n}.json").read_text())["attributes"]}
            for n in range(1, ITEMS + 1)]


def report(out: Path) -> dict:
    return json.loads((out / "rarity.json").read_text(encoding="utf-8"))


def shown_numbers(page) -> list[int]:
    """Numbers of the grid's cells, in reading order."""
    cells = page.eval_on_selector_all(".cell", "cs => cs.map(c => [c.getBoundingClientRect().top, "
                                               "c.getBoundingClientRect().left, +c.dataset.number])")
    return [n for _, _, n in sorted(cells)]


def save_readme_screenshot(png: Path) -> None:
    dest = os.environ.get("GPUCOMP_GALLERY_SCREENSHOT")
    if dest:
        with Image.open(png) as im:
            im.convert("RGB").quantize(128, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
        print(f"README screenshot: {dest} ({os.path.getsize(dest) / 1024:.0f} KiB)")


def test_two_filters_count_what_the_metadata_says(page, collection, artifacts):
    open_gallery(page, collection)
    assert page.inner_text("#count") == f"{ITEMS:,} items"
    layers = report(collection)["layers"]
    # the most common trait of the first two layers, so the intersection is not empty
    picks = [(li, max(range(len(layers[li]["traits"])), key=lambda t: layers[li]["traits"][t]["count"])) for li in (0, 1)]
    for li, t in picks:
        check_trait(page, li, t)
    want = {layers[li]["name"]: layers[li]["traits"][t]["name"] for li, t in picks}
    items = attributes(collection)
    hits = [n for n, a in enumerate(items, 1) if all(a[k] == v for k, v in want.items())]
    assert 0 < len(hits) < ITEMS
    assert page.inner_text("#count") == f"{len(hits):,} of {ITEMS:,} items"
    # the counts beside the other traits: items that pass both filters and have that trait
    third = layers[2]
    for t, trait in enumerate(third["traits"]):
        assert facet(page, 2, t) == sum(items[n - 1][third["name"]] == trait["name"] for n in hits)
    # ... and beside a trait of a filtered layer: as if it were chosen instead
    other = next(t for t in range(len(layers[1]["traits"])) if t != picks[1][1])
    assert facet(page, 1, other) == sum(a[layers[0]["name"]] == want[layers[0]["name"]]
                                        and a[layers[1]["name"]] == layers[1]["traits"][other]["name"] for a in items)
    assert shown_numbers(page)[:10] == hits[:10]
    png = artifacts / "gallery-filtered.png"
    page.screenshot(path=str(png))
    print(f"screenshot: {png}")
    save_readme_screenshot(png)
    page.click("#clear")
    assert page.inner_text("#count") == f"{ITEMS:,} items"


def test_an_item_opens_with_its_attributes_and_metadata(page, collection, artifacts):
    open_gallery(page, collection)
    page.click(".cell[data-number='1']")
    page.wait_for_function("document.getElementById('item-json').textContent.startsWith('{')")
    meta = json.loads((collection / "metadata" / "1.json").read_text(encoding="utf-8"))
    assert page.inner_text("#item-title") == meta["name"]
    rows = page.eval_on_selector_all("#item-attrs tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    layers = report(collection)["layers"]
    shares = {(layer["name"], t["name"]): t for layer in layers for t in layer["traits"]}
    assert [(r[0], r[1]) for r in rows] == [(a["trait_type"], a["value"]) for a in meta["attributes"]]
    for layer, value, share, count in rows:
        assert share == f"{shares[(layer, value)]['percent']:.2f}%" and int(count) == shares[(layer, value)]["count"]
    assert json.loads(page.inner_text("#item-json")) == meta
    with open(collection / "rarity.csv", encoding="utf-8", newline="") as f:
        rank = next(csv.DictReader(f))["rank"]
    assert page.inner_text("#item-rank").startswith(f"Rarity rank {int(rank):,} of {ITEMS:,}")
    assert page.eval_on_selector("#item-image", "i => i.complete && i.naturalWidth") == 64
    page.screenshot(path=str(artifacts / "gallery-item.png"))
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.getElementById('item-json').textContent.includes('\"edition\": 2')")
    assert page.evaluate("location.hash") == "#2"  # a link to the item shown
    page.keyboard.press("Escape")
    assert page.is_hidden("#item-view")
    page.goto((collection / "gallery" / "index.html").as_uri() + "#1500")
    page.wait_for_function("document.getElementById('item-json').textContent.startsWith('{')")
    assert json.loads(page.inner_text("#item-json"))["edition"] == 1500


def test_sort_by_rank_puts_rank_one_first_and_search_finds_an_item(page, collection):
    open_gallery(page, collection)
    with open(collection / "rarity.csv", encoding="utf-8", newline="") as f:
        by_rank = sorted(csv.DictReader(f), key=lambda r: int(r["rank"]))
    page.select_option("#sort", "rank")
    assert shown_numbers(page)[:5] == [int(r["number"]) for r in by_rank[:5]]
    # the report has OpenRarity's rank (rarity.csv's openrarity_rank column): the page offers it too
    assert page.eval_on_selector("#sort", "s => [...s.options].map(o => o.value)") == ["number", "rank", "openrarity"]
    page.select_option("#sort", "openrarity")
    with open(collection / "rarity.csv", encoding="utf-8", newline="") as f:
        by_openrarity = sorted(csv.DictReader(f), key=lambda r: (int(r["openrarity_rank"]), int(r["number"])))
    assert shown_numbers(page)[0] in [int(r["number"]) for r in by_openrarity
                                      if r["openrarity_rank"] == by_openrarity[0]["openrarity_rank"]]
    page.fill("#search", "1234")
    page.press("#search", "Enter")
    page.wait_for_function("document.getElementById('item-json').textContent.startsWith('{')")
    assert json.loads(page.inner_text("#item-json"))["edition"] == 1234
    assert page.locator(".cell[data-number='1234']").is_visible()  # the grid scrolled to it
    page.keyboard.press("Escape")
    page.fill("#search", "99999")
    page.press("#search", "Enter")
    assert page.inner_text("#search-msg") == "no item #99999"


def test_charts_show_every_trait(page, collection):
    open_gallery(page, collection)
    page.click("#charts-toggle")
    layers = report(collection)["layers"]
    assert page.locator(".chart").count() == len(layers)
    assert page.locator(".chart-row").count() == sum(len(layer["traits"]) for layer in layers)
    assert page.locator(".chart-row.off").count() == sum(t["off"] for layer in layers for t in layer["traits"])
    assert page.locator(".bar.ask").count() == sum(len(layer["traits"]) for layer in layers)
    assert page.is_hidden("#grid")
    page.click("#charts-toggle")
    assert page.is_visible("#grid")


def synthetic_index(n: int, seed: int = 1) -> tuple[gallery.Index, np.ndarray]:
    """n items over 8 layers (6 to 12 traits); drawn by the weights except two traits asked for
    at twice the share they get (so the charts must mark them). Returns the index and combos."""
    rng = np.random.default_rng(seed)
    sizes = [6, 8, 10, 12, 7, 9, 11, 12]
    weights = [rng.integers(1, 50, k).astype(float) for k in sizes]
    combos = np.stack([rng.choice(k, n, p=w / w.sum()) for k, w in zip(sizes, weights, strict=True)], axis=1)
    asked = [w.copy() for w in weights]
    asked[1][0] *= 2
    asked[5][3] *= 2
    names = [f"Layer {li}" for li in range(len(sizes))]
    traits = [[f"Trait {li}.{t}" for t in range(k)] for li, k in enumerate(sizes)]
    rep, scores, ranks, logr = rarity.build_report(names, traits, asked, combos)
    index = gallery.Index(rep, numbers=list(range(1, n + 1)), ranks=ranks.tolist(), scores=scores.tolist(),
                          log_rarity=logr.tolist(), traits=[combos[:, li].tolist() for li in range(len(sizes))],
                          openrarity=(n + 1 - ranks).tolist())
    return index, combos


def test_a_100k_index_opens_and_filters(page, tmp_path):
    n = 100_000
    index, combos = synthetic_index(n)
    gdir = tmp_path / "out" / "gallery"
    gdir.mkdir(parents=True)
    gallery.write_index(gdir, gallery.index_data(index, "synthetic 100k", {"size": 64, "format": "webp", "image": None}))
    gallery.write_assets(gdir)
    t0 = time.perf_counter()
    page.goto((gdir / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    open_s = time.perf_counter() - t0
    ready_ms = page.evaluate("GALLERY.stats.readyMs")
    assert page.inner_text("#count") == f"{n:,} items"
    assert page.locator(".cell").count() < 200  # virtualised: only the visible rows exist
    t1 = time.perf_counter()
    check_trait(page, 2, 3)
    page.wait_for_function("document.getElementById('count').textContent.includes(' of ')")
    filter_s = time.perf_counter() - t1
    filter_ms = page.evaluate("GALLERY.stats.lastFilterMs")
    check_trait(page, 4, 1)
    want = int(((combos[:, 2] == 3) & (combos[:, 4] == 1)).sum())
    assert page.inner_text("#count") == f"{want:,} of {n:,} items"
    page.select_option("#sort", "openrarity")
    hits = np.flatnonzero((combos[:, 2] == 3) & (combos[:, 4] == 1))
    assert shown_numbers(page)[0] == index.numbers[hits[np.argmin(np.array(index.openrarity)[hits])]]
    page.click("#charts-toggle")
    off = [t["name"] for layer in index.report["layers"] for t in layer["traits"] if t["off"]]
    assert {"Trait 1.0", "Trait 5.3"} <= set(off)
    assert page.locator(".chart-row.off .name").all_inner_texts() == off
    print(f"\n100k synthetic index: page open {open_s * 1000:.0f} ms (script ready at {ready_ms:.0f} ms after "
          f"navigation start), one filter {filter_s * 1000:.0f} ms round trip ({filter_ms:.1f} ms in the page); "
          f"data/index.js {(gdir / 'data' / 'index.js').stat().st_size / 1e6:.1f} MB")


def test_a_page_without_its_data_says_what_to_do(page, tmp_path):
    gallery.write_assets(tmp_path)
    page.goto((tmp_path / "index.html").as_uri())
    page.wait_for_function("document.body.classList.contains('failed')")
    assert "data/index.js is missing" in page.inner_text("#count")


def test_the_item_view_shows_a_webp_primary_image(page, tmp_path):
    """A collection written as WebP only: the item view loads images/<n>.webp (the manifest's
    primary image), not a <n>.png that is not there."""
    layers = make_layers(tmp_path / "layers", layers=4, traits=14, size=64, seed=3)
    out = tmp_path / "collection"
    for _ in gpucomp.generate(layers, out, size=5, seed=1, formats=["webp"]):
        pass
    gallery.make_gallery(out, thumb=32)
    open_gallery(page, out)
    page.click(".cell[data-number='3']")
    page.wait_for_function("document.getElementById('item-image').complete")
    assert page.eval_on_selector("#item-image", "i => i.src").endswith("/images/3.webp")
    assert page.eval_on_selector("#item-image", "i => i.naturalWidth") == 64
