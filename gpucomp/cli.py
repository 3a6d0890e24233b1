"""Command line front end: argparse only; all logic lives in the API modules."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path


def _add_run_options(p: argparse.ArgumentParser, default_size: int = 100) -> None:
    from gpucomp.encode.png import PRESETS  # deferred: keeps `gpucomp --help` fast

    p.add_argument("-c", "--config", help="TOML config file (docs/configuration.md); flags below override it")
    p.add_argument("-n", "--size", type=int, help=f"number of items (default {default_size})")
    p.add_argument("--seed", type=int, help="random seed (default 0); same seed + layers + config = same collection")
    p.add_argument("--start", type=int, help="number of the first item (default 1)")
    p.add_argument("--name-prefix", help="item name prefix: '<prefix> #<n>'")
    p.add_argument("--description", help="collection description for metadata")
    p.add_argument("--base-uri", help="image base URI for metadata, e.g. ipfs://<CID>")
    p.add_argument("--shuffle", action="store_true", help="number the items in a seeded random order")
    p.add_argument("--from", dest="from_list", metavar="FILE",
                   help="render exactly these items, in this order: a CSV (one column per layer), a "
                        "_metadata.json (or an output folder holding one) or a list of DNAs; the list decides the size")
    p.add_argument("--preset", choices=list(PRESETS), help="PNG preset (default fast)")
    p.add_argument("--format", dest="formats", metavar="FORMATS",
                   help="output formats, comma-separated, the first the primary image: png, webp, jpeg, avif "
                        "(e.g. png,webp); each keeps its [output] settings table from the config")
    p.add_argument("--rgba", action="store_true", help="always write RGBA, even for fully opaque results")
    p.add_argument("--delimiter", help="trait weight delimiter in file names (default '#')")
    p.add_argument("--animation", metavar="FORMATS",
                   help="animated output, e.g. webp or webp,mp4 (webp, apng, gif, mp4, webm; "
                        "docs/outputs.md: Animated collections)")
    p.add_argument("--force", action="store_true",
                   help="start over: discard an earlier collection in the output folder, or write into a non-empty one")
    p.add_argument("--resume", action="store_true",
                   help="insist on resuming an interrupted collection (re-running the same command resumes anyway)")
    p.add_argument("--gallery", action="store_true",
                   help="also write OUT/gallery/index.html at the end (see `gpucomp gallery`)")
    p.add_argument("--export", choices=["sugar", "erc1155"],
                   help="when the collection is finished, also write an upload layout (see `gpucomp export`)")
    _add_engine_options(p)


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    """How a run renders, never what it renders: every rendering command takes these."""
    p.add_argument("--backend", choices=["auto", "cuda", "cpu"], help="compositing backend (default auto)")
    p.add_argument("--workers", type=int, help="encoder threads (default: one per CPU core)")
    p.add_argument("--batch-size", type=int, help="items per GPU launch (default: from the VRAM budget)")
    p.add_argument("--vram-budget", help="VRAM budget: fraction of free memory (0.8) or size (8GiB)")
    p.add_argument("--cache", choices=["auto", "on", "off"], help="GPU prefix cache (default auto)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="render on Ray: alone, every GPU of this machine; with a cluster's ADDRESS, that cluster "
                        "(the output folder must be on a path every node sees); needs gpucomp[ray]")
    p.add_argument("--ray-workers", type=int, help="Ray workers (default: one per GPU, one per CPU without GPUs)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar or info lines (the closing summary is still printed; --json: as JSON)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _overrides(args) -> dict:
    return {
        "size": args.size, "seed": args.seed, "start": args.start, "name_prefix": args.name_prefix,
        "description": args.description, "base_uri": args.base_uri, "preset": args.preset,
        "opaque_rgb": False if args.rgba else None, "backend": args.backend, "workers": args.workers,
        "batch_size": args.batch_size, "vram_budget": args.vram_budget, "cache": args.cache, "delimiter": args.delimiter,
        "ray": args.ray, "ray_workers": args.ray_workers,
        "force": True if args.force else None, "shuffle": True if args.shuffle else None,
        "from_list": args.from_list, "formats": _formats(args),
        "animation": args.animation.split(",") if getattr(args, "animation", None) else None,
    }


def _formats(args):
    """--format png,webp as OutputFormats (with the config's settings tables), or None."""
    if not getattr(args, "formats", None):
        return None
    from gpucomp.config import format_flag  # deferred: keeps `gpucomp --help` fast

    return format_flag(args.formats, args.config)


def _print_summary(s: dict, out: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps(s, indent=2))
        return
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in s["stage_seconds"].items())
    kept = f" ({s['resumed_from']} were already finished, {s['rendered']} rendered now)" if s["resumed_from"] else ""
    rate = (f"{s['items_per_s']} items/s while rendering, {s['items_per_s_total']} items/s overall" if s["rendered"]
            else "nothing to render")
    print(f"done: {s['items']} items{kept} in {s['seconds']:.1f}s — {rate}")
    if s.get("provenance_hash"):
        print(f"provenance hash: {s['provenance_hash']}")
    print(f"stages (summed over workers): {stages}")
    size = f"avg PNG {s['avg_png_bytes'] / 1e6:.2f} MB" if s["rendered"] else "PNG"  # nothing rendered: no average
    print(f"{size} ({s['preset']}, {s['deflate']}), backend {s['backend']['backend']}")
    for d in s["backend"].get("ray", {}).get("devices", []):
        print(f"ray worker {d['worker']} ({d['device']} on {d['host']}): {d['items']} items, {d['items_per_s']} items/s")
    if "cache" in s["backend"]:
        c = s["backend"]["cache"]
        print(f"prefix cache: {c['hits']} hits / {c['misses']} misses ({c['hit_rate']:.0%}), {c['evictions']} evictions")
    o = _safe(out)
    print(f"output: {o}/images, {o}/metadata, {o}/_metadata.json, {o}/rarity.txt, {o}/provenance.json")


STOP_TIMEOUT = 1.5  # seconds to let items in flight finish after Ctrl-C (the issue allows 2)


def _on_signals(gen):
    """First Ctrl-C / SIGTERM: stop after the items in flight. Second: exit at once. Both are
    safe at any instant: every visible file is complete, partial ones have temporary names."""
    def handler(signum, frame):
        if handler.hits or not gen.rendering:
            if handler.hits:
                os._exit(128 + signum)
            handler.hits += 1
            raise KeyboardInterrupt
        handler.hits += 1
        print("\nstopping after the items in flight (Ctrl-C again to stop at once)...", file=sys.stderr)
        gen.stop()

    handler.hits = 0
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _drive(gen, out: Path, args, resume_hint: str) -> int:
    """Run a Generation with Ctrl-C handling; print the summary, or how to resume."""
    from gpucomp.errors import Interrupted  # deferred: keeps `gpucomp --help` fast

    previous = _on_signals(gen) if threading.current_thread() is threading.main_thread() else {}
    try:
        for _ in gen:
            pass
    except Interrupted as err:
        s = err.summary
        # items still in flight when the run stopped may finish writing before the process ends: a resume
        # can find a few more finished than counted here
        more = " (items in flight may add a few)" if s.get("abandoned_in_flight") else ""
        print(f"interrupted: {s['rendered']} items rendered this run, {s['resumed_from'] + s['rendered']} of "
              f"{s['items']} finished{more}, {s['remaining']} left", file=sys.stderr)
        print(f"to resume: {resume_hint}", file=sys.stderr)
        sys.stderr.flush()
        if s.get("abandoned_in_flight"):
            os._exit(130)  # worker threads still encoding: their temporary files are cleaned up on resume
        return 130
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    _print_summary(gen.summary, out, args.json)
    return 0


def _safe(text, multiline: bool = False) -> str:
    """`text` as it may reach a terminal: names from the layers folder or a config can hold escape
    sequences, so every control character is shown as an escape (safe_text.terminal_safe), and a
    line that echoes a huge value is clipped to its head and tail (safe_text.clip)."""
    from gpucomp._shared.safe_text import clip, terminal_safe  # deferred: keeps `import gpucomp.cli` loading no room

    return "\n".join(clip(line) for line in terminal_safe(text, multiline).split("\n"))


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """How the CLI shows a warning (LayerWarning names files from the layers folder): one
    `warning:` line in the style of `error:`, terminal-safe; recording warnings is left alone."""
    return f"warning: {_safe(message)}\n"


def _log(args):
    return None if args.quiet else (lambda m: print(_safe(m), file=sys.stderr))


def _from_output_options(args) -> dict:
    """Keyword arguments of resume/extend/rerender: where the layers are, logging, run options."""
    run = {k: v for k, v in (("workers", args.workers), ("backend", args.backend), ("batch_size", args.batch_size),
                             ("vram_budget", args.vram_budget), ("cache", args.cache), ("ray", args.ray),
                             ("ray_workers", args.ray_workers)) if v is not None}
    return dict(layers=args.layers, log=_log(args), progress=None if not args.quiet else False,
                stop_timeout=STOP_TIMEOUT, **run)


def cmd_generate(args, layers: Path | None = None, out: Path | None = None) -> int:
    from gpucomp.outdir.pipeline import generate  # deferred: keeps `gpucomp --help` fast

    layers = layers or Path(args.layers)
    out = out or Path(args.out)
    gen = generate(layers, out, args.config, log=_log(args), progress=None if not args.quiet else False,
                   resume=args.resume, stop_timeout=STOP_TIMEOUT, **_overrides(args))
    if args.export:  # before anything renders: the layout must fit the collection
        from gpucomp.publish.export import check_config  # deferred: keeps `gpucomp --help` fast

        check_config(gen.cfg, args.export, args.config or "options")
    again = [a for a in sys.argv[1:] if a != "--force"]  # --force would discard what is finished
    hint = f"run the same command again: {shlex.join(['gpucomp', *again])}"
    rc = _drive(gen, out, args, hint)
    if rc == 0 and args.export:
        from gpucomp.publish.export import export  # deferred: keeps `gpucomp --help` fast

        dest = export(out, args.export, log=_log(args))
        print(f"export: {_safe(dest)}", file=sys.stderr if args.json else sys.stdout)  # --json: stdout is the summary
    if rc == 0 and args.gallery:
        from gpucomp.publish.gallery import make_gallery  # deferred: keeps `gpucomp --help` fast

        page = make_gallery(out, log=_log(args))
        print(f"gallery: {_safe(page)}", file=sys.stderr if args.json else sys.stdout)  # --json: stdout is the summary
    return rc


def cmd_export(args) -> int:
    from gpucomp.publish.export import export  # deferred: keeps `gpucomp --help` fast

    print(f"export: {_safe(export(args.out, args.layout, copy=args.copy, log=_log(args)))}")
    return 0


def cmd_resume(args) -> int:
    from gpucomp.outdir.pipeline import resume  # deferred: keeps `gpucomp --help` fast

    gen = resume(args.out, **_from_output_options(args))
    return _drive(gen, Path(args.out), args, shlex.join(["gpucomp", "resume", args.out]))


def cmd_extend(args) -> int:
    from gpucomp.outdir.pipeline import extend  # deferred: keeps `gpucomp --help` fast

    gen = extend(args.out, args.size, stack=args.stack, **_from_output_options(args))
    return _drive(gen, Path(args.out), args, shlex.join(["gpucomp", "resume", args.out]))


def cmd_rerender(args) -> int:
    from gpucomp.outdir.pipeline import rerender  # deferred: keeps `gpucomp --help` fast

    gen = rerender(args.out, **_from_output_options(args))
    return _drive(gen, Path(args.out), args, shlex.join(["gpucomp", "rerender", args.out]))


def cmd_demo(args) -> int:
    from gpucomp.demo import check_args, make_layers  # deferred: keeps `gpucomp --help` fast

    check_args(args.layers, args.traits, args.image_size, args.layer_seed)  # before an old demo folder is touched
    root = Path(args.out)
    layers = root / "layers"
    key = f"{args.layers}-{args.traits}-{args.image_size}-{args.layer_seed}"
    key += f"-a{args.animated}" if args.animated else ""
    stamp = layers / ".gpucomp-demo"
    if not (stamp.exists() and stamp.read_text() == key):
        if layers.exists() and any(layers.iterdir()) and not stamp.exists():
            print(f"error: {_safe(layers)} exists and was not made by gpucomp demo; choose another -o", file=sys.stderr)
            return 2

        import shutil  # deferred: shutil pulls in bz2 and lzma (3 ms), and only the demo needs it

        shutil.rmtree(layers, ignore_errors=True)
        if not args.quiet:
            print(f"making demo layers: {args.layers} layers, {args.traits} traits, "
                  f"{args.image_size}x{args.image_size} -> {layers}", file=sys.stderr)
        make_layers(layers, args.layers, args.traits, args.image_size, args.layer_seed, animated=args.animated)
        stamp.write_text(key)
    if args.size is None and not args.config:  # a config says its own size (or its stacks' sizes)
        args.size = 50
    if args.animated and not args.animation and not args.config:
        args.animation = "webp"
    # The demo owns its collection folder: other settings start it over; the same ones resume it (an
    # interrupted demo's "run the same command again" keeps what is finished)
    run = root / ".gpucomp-demo-run"
    settings = json.dumps({k: v for k, v in sorted(vars(args).items()) if k not in _HOW_IT_RUNS}, default=str)
    same = run.is_file() and run.read_text(encoding="utf-8") == settings and not args.force
    args.force = not same
    if not same:
        root.mkdir(parents=True, exist_ok=True)
        run.write_text(settings, encoding="utf-8")
    return cmd_generate(args, layers, root / "collection")


# options that change how a run goes, never what it makes (a demo with another of them resumes)
_HOW_IT_RUNS = {"quiet", "json", "workers", "backend", "batch_size", "vram_budget", "cache", "ray", "ray_workers",
                "resume", "force", "gallery", "export"}


def cmd_validate(args) -> int:
    from gpucomp.config import Config, load_config, with_overrides  # deferred: keeps `gpucomp --help` fast
    from gpucomp.outdir.folder import load_stacks, weight_warnings  # deferred: keeps `gpucomp --help` fast
    from gpucomp.plan.collection import metadata_layers, plan_collection  # deferred: keeps `gpucomp --help` fast

    cfg = load_config(args.config) if args.config else Config()
    cfg = with_overrides(cfg, size=args.size, delimiter=args.delimiter, from_list=args.from_list,
                         formats=_formats(args))
    if cfg.from_list:
        from gpucomp.config import with_list_size  # deferred: keeps `gpucomp --help` fast

        cfg = with_list_size(cfg, args.size)
    print(f"reading layers folder {_safe(Path(args.layers).resolve())}", file=sys.stderr)
    ls, stacks = load_stacks(args.layers, cfg)
    for k, (sl, _) in enumerate(stacks):
        if len(stacks) > 1:
            print(f"stack {k + 1}: {cfg.stack_sizes[k]} items")
        for layer in sl.layers:
            print(f"  {_safe(layer.folder)} -> '{_safe(layer.name)}': {len(layer.traits)} trait"
                  f"{'s' * (len(layer.traits) != 1)}")
    print(f"canvas {ls.width}x{ls.height}")
    if not cfg.from_list:
        for line in weight_warnings(stacks, cfg.stack_sizes):
            print(f"warning: {_safe(line)}", file=sys.stderr)
    plan_collection(cfg, stacks)
    from gpucomp.metadata.tokens import check_traits, options_for_config  # deferred: keeps `gpucomp --help` fast

    check_traits(options_for_config(cfg), metadata_layers(stacks), args.config or "options")
    from gpucomp.encode.media import check_fits, output_files  # deferred: keeps `gpucomp --help` fast

    check_fits(output_files(cfg.formats, cfg.sizes, cfg.animation), ls.width, ls.height, args.config or "options")
    from gpucomp.plan.frames import plan_frames  # deferred: keeps `gpucomp --help` fast

    frames = plan_frames(cfg, ls, args.config or "options")
    if cfg.animation is not None:
        print(f"animation: {frames} frames ({cfg.animation.describe()})")
    combos = sum(sl.combinations for sl, _ in stacks)
    print(f"ok: a collection of {cfg.size} unique items can be planned ({combos:,} combinations of the layers"
          f"{' over the stacks' if len(stacks) > 1 else ''})")
    return 0


def cmd_info(args) -> int:
    from gpucomp._version import __version__  # deferred: keeps `gpucomp --help` fast
    from gpucomp.encode.png import PRESETS, deflate_engine  # deferred: keeps `gpucomp --help` fast
    from gpucomp.render.select import cuda_status  # deferred: keeps `gpucomp --help` fast

    print(f"gpucomp {__version__}")
    ok, why = cuda_status()
    print(f"cuda: {'available' if ok else 'unavailable'} — {why}")
    if ok:
        from gpucomp.render.cuda_backend import device_report  # deferred: keeps `gpucomp --help` fast

        for line in device_report():
            print(f"  {line}")
    from gpucomp.render.numpy_backend import kernel_status  # deferred: keeps `gpucomp --help` fast

    print(f"cpu: available ({kernel_status()[1]})")  # the fused numba kernel, or why NumPy composites
    from gpucomp.outdir.writeback import describe  # deferred: keeps `gpucomp --help` fast

    print(f"output files: {describe()}")
    for p in PRESETS.values():
        print(f"png preset {p.name}: {p.help} [deflate: {deflate_engine(p, gpu=ok)}]")
    from gpucomp.encode.formats import availability  # deferred: keeps `gpucomp --help` fast

    have = availability()
    missing = [k for k, v in have.items() if not v]
    print(f"output formats: {', '.join(k for k, v in have.items() if v)}"
          + (f" (this Pillow lacks {', '.join(missing)})" if missing else ""))
    from gpucomp.encode.animated import animated_availability  # deferred: keeps `gpucomp --help` fast

    anim = animated_availability()
    print(f"animated output: {', '.join(k for k, v in anim.items() if v)}"
          + (f" ({', '.join(k for k, v in anim.items() if not v)} need PyAV: pip install 'gpucomp[video]')"
             if not all(anim.values()) else ""))
    return 0


def _add_preview_parser(subparsers):
    """Add the `preview` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("preview", help="contact sheets of a finished collection's images",
                              description="Tile thumbnails of each item's image (OUT/images/<n>.<ext>) into sheets "
                                          "OUT/preview/sheet-0001.png, ... (several sheets for large collections).")
    p.add_argument("out", help="gpucomp output folder (holds images/<n>.<ext>)")
    p.add_argument("--thumb", type=int, default=128, help="thumbnail box side in pixels, 8..1024 (default 128)")
    p.add_argument("--columns", type=int, default=10, help="thumbnails per row (default 10)")
    p.add_argument("--rows", type=int, default=10, help="rows per sheet (default 10)")
    p.add_argument("--no-labels", dest="label", action="store_false", help="no item number under each thumbnail")
    p.add_argument("-o", "--dest", help="folder for the sheets (default OUT/preview)")
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: one per CPU core)")
    p.add_argument("--reel", nargs="?", const=30, type=int, metavar="N",
                   help="also write an animated preview of the first N items (default 30), one after the other: "
                        "OUT/preview/collection.webp")
    p.add_argument("--reel-seconds", type=float, default=1.0, help="each item's time in the reel (default 1)")
    p.add_argument("--reel-size", type=int, default=256, help="reel side in pixels, 16..1024 (default 256)")
    p.add_argument("--reel-format", choices=["webp", "gif"], default="webp", help="reel format (default webp)")
    return p


def cmd_update_metadata(args) -> int:
    from gpucomp.outdir.update import update_metadata  # deferred: keeps `gpucomp --help` fast

    changes = {k: v for k, v in {"base_uri": args.base_uri, "name_prefix": args.name_prefix,
                                 "description": args.description}.items() if v is not None}
    if not changes:
        print("error: nothing to change; pass --base-uri, --name-prefix or --description", file=sys.stderr)
        return 2
    n = update_metadata(args.out, changes, log=lambda m: print(_safe(m), file=sys.stderr))
    print(f"{n} metadata files rewritten")
    return 0


def cmd_import_config(args) -> int:
    from gpucomp._shared.files import atomic_write_bytes, write_failure  # deferred: keeps `gpucomp --help` fast
    from gpucomp.errors import ConfigError  # deferred: keeps `gpucomp --help` fast
    from gpucomp.interop.import_config import import_config  # deferred: keeps `gpucomp --help` fast

    text, notes = import_config(args.config_js, args.layers)
    for note in notes:
        print(f"note: {_safe(note)}", file=sys.stderr)
    if not args.out:
        sys.stdout.write(text)
        return 0
    try:  # complete or absent under its name, even if killed; never replaced without --force
        atomic_write_bytes(args.out, text.encode("utf-8"), fsync=True, exclusive=not args.force)
    except FileExistsError:
        raise ConfigError(f"{args.out}: already exists; pass --force to replace it") from None
    except OSError as err:
        raise write_failure(args.out, err, "convert it again") from None
    print(f"wrote {_safe(args.out)}; use it with: gpucomp generate <layers> -c {shlex.quote(args.out)} -o <out>",
          file=sys.stderr)
    return 0


def cmd_preview(args) -> int:
    """Run `gpucomp preview`: print the path of every sheet written (and of the reel, with --reel)."""
    from gpucomp.publish.preview import make_sheets  # deferred: keeps `gpucomp --help` fast
    from gpucomp.publish.reel import make_reel  # deferred: keeps `gpucomp --help` fast

    paths = make_sheets(args.out, thumb=args.thumb, columns=args.columns, rows=args.rows, dest=args.dest,
                        label=args.label, workers=getattr(args, "workers", None))
    if getattr(args, "reel", None) is not None:
        paths.append(make_reel(args.out, items=args.reel, seconds=args.reel_seconds, size=args.reel_size,
                               fmt=args.reel_format, dest=args.dest, workers=getattr(args, "workers", None)))
    for p in paths:
        print(_safe(p))
    return 0


def _add_gallery_parser(subparsers):
    """Add the `gallery` subcommand to an argparse subparsers object; returns its parser."""
    from gpucomp.publish.limits import THUMB_DEFAULT, THUMB_MAX, THUMB_MIN  # deferred: `import gpucomp.cli` stays minimal

    p = subparsers.add_parser("gallery", help="a static web page of a finished collection: filters, rarity, charts",
                              description="Write OUT/gallery/index.html and its data (thumbnails, trait index, "
                                          "metadata): static files, opened from file:// or any static host, offline.")
    p.add_argument("out", help="gpucomp output folder of a finished collection")
    p.add_argument("--thumb", type=int, default=THUMB_DEFAULT,
                   help=f"thumbnail box side in pixels, {THUMB_MIN}..{THUMB_MAX} (default {THUMB_DEFAULT})")
    p.add_argument("--workers", type=int, default=None, help="thumbnail threads (default: one per CPU core)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    return p


def cmd_gallery(args) -> int:
    from gpucomp.publish.gallery import make_gallery  # deferred: keeps `gpucomp --help` fast

    print(_safe(make_gallery(args.out, thumb=args.thumb, workers=args.workers, log=_log(args))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpucomp", description="Generate image collections from trait layers, fast.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="render a collection from a layers folder")
    g.add_argument("layers", help="folder with one sub-folder per layer: <Layer>/<Trait>#<weight>.png")
    g.add_argument("-o", "--out", required=True, help="output folder (must be empty unless --force)")
    _add_run_options(g)
    d = sub.add_parser("demo", help="make procedural demo layers, then a collection from them")
    d.add_argument("-o", "--out", default="gpucomp-demo", help="folder for layers/ and collection/ (default gpucomp-demo)")
    d.add_argument("--layers", type=int, default=6, help="number of layers (default 6)")
    d.add_argument("--traits", type=int, default=36, help="traits in all layers together (default 36)")
    d.add_argument("--image-size", type=int, default=512, help="canvas side in pixels (default 512)")
    d.add_argument("--layer-seed", type=int, default=7, help="seed of the demo art (default 7)")
    d.add_argument("--animated", nargs="?", type=int, const=8, default=0, metavar="FRAMES",
                   help="animate the top two layers (FRAMES frames, default 8; half as many below) and write "
                        "animated WebP (or --animation FORMATS)")
    _add_run_options(d, default_size=50)
    v = sub.add_parser("validate", help="check a layers folder and config without rendering")
    v.add_argument("layers", help="folder with one sub-folder per layer: <Layer>/<Trait>#<weight>.png")
    v.add_argument("-c", "--config", help="TOML config file, as for generate")
    v.add_argument("-n", "--size", type=int, help="number of items to plan (default 100)")
    v.add_argument("--delimiter", help="trait weight delimiter in file names (default '#')")
    v.add_argument("--from", dest="from_list", metavar="FILE",
                   help="check that these listed items can be rendered, as for generate --from")
    v.add_argument("--format", dest="formats", metavar="FORMATS", help="output formats, as for generate")
    sub.add_parser("info", help="backends, devices and encoders available here")
    for name, text in (("resume", "finish an interrupted collection (or check a finished one) from its manifest"),
                       ("extend", "add new unique items to an existing collection"),
                       ("rerender", "re-render a collection's items after trait art changed (same plan and metadata)")):
        x = sub.add_parser(name, help=text, description=text)
        x.add_argument("out", help="the collection's output folder")
        if name == "extend":
            x.add_argument("-n", "--size", type=int, required=True, help="number of new items")
            x.add_argument("--stack", type=int, default=1, help="stack to draw them from (default 1)")
        x.add_argument("--layers", help="layers folder (default: the one the collection was made from)")
        _add_engine_options(x)
    u = sub.add_parser("update-metadata", help="rewrite a finished collection's metadata (no re-rendering)")
    u.add_argument("out", help="the collection's output folder")
    u.add_argument("--base-uri", help="new image base URI, e.g. ipfs://<CID>")
    u.add_argument("--name-prefix", help="new item name prefix")
    u.add_argument("--description", help="new description")
    e = sub.add_parser("export", help="write an upload layout of a finished collection (Sugar assets/, ERC-1155 ids)",
                       description="sugar: OUT/assets/N.png (or N.jpg: the primary image) + N.json (numbered "
                                   "from 0) and collection.json/.png, as Metaplex's Sugar uploads them; erc1155: "
                                   "OUT/erc1155/<64 hex digits>.json, the names an ERC-1155 {id} URI asks for. "
                                   "Hard links to the finished files (copies with --copy, or where links are "
                                   "refused); run it again after rerender or update-metadata.")
    e.add_argument("out", help="the collection's output folder")
    e.add_argument("--layout", required=True, choices=["sugar", "erc1155"], help="which layout to write")
    e.add_argument("--copy", action="store_true", help="copy the files instead of hard-linking them")
    e.add_argument("--quiet", "-q", action="store_true", help="no info lines")
    _add_preview_parser(sub)
    _add_gallery_parser(sub)
    i = sub.add_parser("import-config", help="convert a HashLips / nftchef config.js into a gpucomp TOML")
    i.add_argument("config_js", help="the engine's src/config.js (read, never run)")
    i.add_argument("-o", "--out", help="TOML file to write (default: print it)")
    i.add_argument("--force", action="store_true", help="replace an existing --out file")
    i.add_argument("--layers", help="layers folder: converts nftchef's incompatible/forcedCombinations to [[rules]]")
    return parser


COMMANDS = {"generate": "cmd_generate", "demo": "cmd_demo", "validate": "cmd_validate", "info": "cmd_info",
            "preview": "cmd_preview", "resume": "cmd_resume", "extend": "cmd_extend", "rerender": "cmd_rerender",
            "update-metadata": "cmd_update_metadata", "gallery": "cmd_gallery", "export": "cmd_export",
            "import-config": "cmd_import_config"}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    saved = sys.stdout, sys.stderr
    from gpucomp._shared.streams import TolerantStream  # deferred: keeps `import gpucomp.cli` loading no room

    out, err = (TolerantStream(s) if s is not None else None for s in saved)
    sys.stdout, sys.stderr = out or saved[0], err or saved[1]
    shown = warnings.formatwarning  # what Python shows a warning as (its display calls this)
    warnings.formatwarning = _format_warning
    try:
        status = _run_command(args)
        if out is not None and out.lost is not None:
            print(f"note: the report could not be printed (standard output: {out.lost.strerror or out.lost}); "
                  f"exit status {status} is the command's own", file=sys.stderr)
        return status
    finally:
        sys.stdout, sys.stderr = saved
        warnings.formatwarning = shown


def _run_command(args) -> int:
    from gpucomp.errors import GpucompError  # deferred: keeps `gpucomp --help` fast

    try:
        return globals()[COMMANDS[args.command]](args)
    except GpucompError as err:
        print(f"error: {_safe(err, multiline=err.multiline)}", file=sys.stderr)  # some list their problems a line each
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished items are kept, and running the same command again resumes", file=sys.stderr)
        return 130
    except RuntimeError as err:
        if "can't start new thread" not in str(err):
            raise
        print("error: cannot start another thread: the process limit (ulimit -u) or memory is reached; lower "
              "--workers or raise the limit (finished items are kept, and the same command resumes)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
