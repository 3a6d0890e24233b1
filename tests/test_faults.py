"""Fault tests: kills, Ctrl-C, a full disk and damaged files never lose finished work, and a
resumed collection is byte-identical to one made in a single run."""
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.errors import OutputError
from gpucomp.outdir.lock import OutputLock

ARGS = ["-n", "120", "--seed", "9", "--workers", "2"]


def run_cli(layers, out, *extra, env=None, wait=True):
    cmd = [sys.executable, "-m", "gpucomp", "generate", str(layers), "-o", str(out), *ARGS, *extra]
    full_env = dict(os.environ, PYTHONPATH=str(Path(gpucomp.__file__).parents[1]), **(env or {}))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, text=True)
    if not wait:
        return p
    out_, err = p.communicate(timeout=120)
    return p.returncode, out_, err


def snapshot(out: Path) -> dict:
    """Every file of a collection (the per-run report summary.json aside) -> bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


def assert_consistent(out: Path) -> None:
    """Crash safety: whatever is visible under a final name is complete and valid."""
    for p in (out / "images").glob("*.png") if (out / "images").exists() else []:
        with Image.open(p) as im:
            im.load()
    for p in [*(out / "metadata").glob("*.json"), *out.glob("*.json")] if out.exists() else []:
        json.loads(p.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def reference(demo_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    rc, _, err = run_cli(demo_layers, out, "-q")
    assert rc == 0, err
    return snapshot(out)


def wait_for_images(p, out: Path, count: int, timeout=60) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        d = out / "images"
        if d.exists() and sum(1 for q in d.iterdir() if q.suffix == ".png") >= count:
            return
        if p.poll() is not None:
            return
        time.sleep(0.005)


@pytest.mark.parametrize("kill_at", [1, 30, 90])
def test_kill_9_mid_run_then_resume_is_byte_identical(demo_layers, tmp_path, reference, kill_at):
    out = tmp_path / "out"
    p = run_cli(demo_layers, out, "-q", wait=False, env={"GPUCOMP_TEST_SLOW": "0.01"})
    wait_for_images(p, out, kill_at)
    p.kill()
    p.communicate()
    assert_consistent(out)
    rc, _, err = run_cli(demo_layers, out, "-q")
    assert rc == 0, err
    assert snapshot(out) == reference


@pytest.mark.parametrize("point", ["manifest", "image:7", "image:120", "finish"])
def test_kill_9_at_exact_points_then_resume(demo_layers, tmp_path, reference, point):
    out = tmp_path / "out"
    rc, _, _ = run_cli(demo_layers, out, "-q", env={"GPUCOMP_TEST_KILL": point})
    assert rc == -signal.SIGKILL
    assert_consistent(out)
    assert (out / ".gpucomp.lock").exists()  # left behind by the killed run: must count as stale
    rc, _, err = run_cli(demo_layers, out)
    assert rc == 0, err
    assert "ended without finishing" in err
    assert snapshot(out) == reference
    assert not (out / ".gpucomp.lock").exists() and not list(out.rglob(".gpucomp-tmp-*"))


def test_ctrl_c_stops_fast_prints_how_to_resume_then_resumes(demo_layers, tmp_path, reference):
    out = tmp_path / "out"
    p = run_cli(demo_layers, out, wait=False, env={"GPUCOMP_TEST_SLOW": "0.01"})
    wait_for_images(p, out, 10)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert p.returncode == 130, err
    assert "interrupted:" in err and "to resume: run the same command again" in err
    assert_consistent(out)
    done = len(list((out / "images").glob("*.png")))
    assert 10 <= done < 120
    rc, _, err = run_cli(demo_layers, out)
    assert rc == 0, err
    assert f"{done} were already finished" in err or f"resuming: {done} of 120" in err
    assert snapshot(out) == reference


def test_second_ctrl_c_stops_at_once_without_damage(demo_layers, tmp_path, reference):
    out = tmp_path / "out"
    p = run_cli(demo_layers, out, wait=False, env={"GPUCOMP_TEST_SLOW": "0.01"})
    wait_for_images(p, out, 5)
    p.send_signal(signal.SIGINT)
    time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    assert p.returncode in (130, -signal.SIGINT)
    assert_consistent(out)
    rc, _, err = run_cli(demo_layers, out, "-q")
    assert rc == 0, err
    assert snapshot(out) == reference


def test_full_disk_keeps_finished_items_and_resumes(demo_layers, tmp_path, reference, monkeypatch):
    import gpucomp.outdir.shard as shard

    out = tmp_path / "out"
    real = shard.atomic_write_bytes
    calls = [0]

    def full_after_some(path, data, *a, **k):
        calls[0] += 1
        if calls[0] > 40 and Path(path).suffix == ".png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, *a, **k)

    monkeypatch.setattr(shard, "atomic_write_bytes", full_after_some)
    with pytest.raises(OutputError) as info:
        gpucomp.run(demo_layers, out, size=120, seed=9, workers=2)
    msg = str(info.value)
    assert "no space left" in msg and "re-run the same command" in msg
    assert re.search(r"about \d[\d.]* (KB|MB) more needed", msg), msg  # ~80 items of ~5 KB: a unit that fits
    assert str(out / "images") in msg
    kept = len(list((out / "images").glob("*.png")))
    assert kept >= 15
    assert_consistent(out)
    assert not (out / ".gpucomp.lock").exists()  # released on error
    monkeypatch.setattr(shard, "atomic_write_bytes", real)
    summary = gpucomp.run(demo_layers, out, size=120, seed=9, workers=2)
    assert summary["resumed_from"] == kept and summary["rendered"] == 120 - kept
    assert snapshot(out) == reference


def test_damaged_items_are_re_rendered_and_nothing_else(demo_layers, tmp_path, reference):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=120, seed=9)
    (out / "images" / "3.png").write_bytes((out / "images" / "3.png").read_bytes()[:100])  # truncated
    data = bytearray((out / "images" / "50.png").read_bytes())
    data[len(data) // 2] ^= 0xFF  # corrupt, same size
    (out / "images" / "50.png").write_bytes(bytes(data))
    (out / "images" / "77.png").unlink()  # missing
    (out / "metadata" / "5.json").unlink()  # metadata only: rewritten, image kept
    (out / "metadata" / "6.json").write_text("{")
    (out / ".gpucomp-tmp-x").write_bytes(b"partial")  # what a killed write leaves
    (out / "images" / ".gpucomp-tmp-y").write_bytes(b"partial")
    summary = gpucomp.run(demo_layers, out, size=120, seed=9, workers=2)
    assert summary["rendered"] == 3 and summary["resumed_from"] == 117
    assert snapshot(out) == reference


def test_resume_refuses_changed_inputs(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=20, seed=1)
    before = snapshot(out)
    for change, why in [({"seed": 2}, "seed was 1, now 2"), ({"size": 21}, "size was 20, now 21"),
                        ({"preset": "balanced"}, "PNG preset was 'fast', now 'balanced'"),
                        ({"opaque_rgb": False}, "opaque_rgb was True, now False")]:
        with pytest.raises(OutputError) as info:
            gpucomp.run(demo_layers, out, **{"size": 20, "seed": 1, **change})
        assert why in str(info.value) and "--force" in str(info.value)
        assert snapshot(out) == before  # refused before writing anything
    summary = gpucomp.run(demo_layers, out, size=20, seed=3, force=True)  # --force starts over
    assert summary["rendered"] == 20


def test_resume_refuses_changed_art_and_weights(demo_layers, tmp_path):
    import shutil

    layers = tmp_path / "layers"
    shutil.copytree(demo_layers, layers)
    out = tmp_path / "out"
    gpucomp.run(layers, out, size=10, seed=1)
    trait = sorted((layers / sorted(os.listdir(layers))[1]).glob("*.png"))[0]
    with Image.open(trait) as im:
        arr = np.array(im.convert("RGBA"))
    arr[0, 0] = (1, 2, 3, 255)
    Image.fromarray(arr).save(trait)
    with pytest.raises(OutputError, match="trait art changed"):
        gpucomp.run(layers, out, size=10, seed=1)
    trait.rename(trait.with_name(trait.stem.split("#")[0] + "#77.png"))
    with pytest.raises(OutputError, match="traits or weights of layer"):
        gpucomp.run(layers, out, size=10, seed=1)


def test_resume_with_new_metadata_text_rewrites_only_metadata(demo_layers, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    gpucomp.run(demo_layers, out, size=15, seed=4)
    images = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    summary = gpucomp.run(demo_layers, out, size=15, seed=4, base_uri="ipfs://NEW", name_prefix="Z")
    assert summary["rendered"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == images
    gpucomp.run(demo_layers, fresh, size=15, seed=4, base_uri="ipfs://NEW", name_prefix="Z")
    assert snapshot(out) == snapshot(fresh)


def test_resume_flag_needs_a_collection(demo_layers, tmp_path):
    with pytest.raises(OutputError, match="nothing to resume"):
        gpucomp.run(demo_layers, tmp_path / "none", size=5, resume=True)
    assert not (tmp_path / "none").exists()


def test_a_second_concurrent_run_is_refused(demo_layers, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):
        with pytest.raises(OutputError, match=f"another gpucomp run is writing to this folder \\(pid {os.getpid()}"):
            gpucomp.run(demo_layers, out, size=5)
    gpucomp.run(demo_layers, out, size=5)  # free again once released


def test_a_stale_lock_file_is_recognised(demo_layers, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".gpucomp.lock").write_text('{"pid": 999999, "host": "gone", "started": "yesterday"}')
    logs = []
    gpucomp.run(demo_layers, out, size=5, log=logs.append)
    assert any("pid 999999" in m and "ended without finishing" in m for m in logs)
    assert len(list((out / "images").glob("*.png"))) == 5


def test_output_files_get_the_usual_permissions(demo_layers, tmp_path):
    old = os.umask(0o022)
    try:
        gpucomp.run(demo_layers, tmp_path / "out", size=2)
    finally:
        os.umask(old)
    for p in [tmp_path / "out" / "images" / "1.png", tmp_path / "out" / "metadata" / "1.json",
              tmp_path / "out" / "_metadata.json", tmp_path / "out" / "provenance.json"]:
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_ctrl_c_stops_within_2s_even_while_slow_items_are_in_flight(demo_layers, tmp_path, reference):
    out = tmp_path / "out"
    p = run_cli(demo_layers, out, wait=False, env={"GPUCOMP_TEST_SLOW": "3"})
    time.sleep(1.5)  # items are in flight, none finished yet
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0, err
    assert p.returncode == 130
    assert_consistent(out)
    rc, _, err = run_cli(demo_layers, out, "-q")
    assert rc == 0, err
    assert snapshot(out) == reference


def test_resume_hint_never_repeats_force(demo_layers, tmp_path):
    out = tmp_path / "out"
    p = run_cli(demo_layers, out, "--force", wait=False, env={"GPUCOMP_TEST_SLOW": "0.01"})
    wait_for_images(p, out, 10)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    hint = next(line for line in err.splitlines() if line.startswith("to resume:"))
    assert "--force" not in hint and "generate" in hint


def test_write_errors_in_the_final_files_are_clean_and_resumable(demo_layers, tmp_path, reference, monkeypatch):
    import gpucomp.outdir.folder as folder

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "provenance.json"))

    out = tmp_path / "out"
    monkeypatch.setattr(folder, "write_provenance", full)
    with pytest.raises(OutputError, match="provenance.json: no space left on the device; free space, then re-run the "
                                          "same command to resume; finished items are kept"):
        gpucomp.run(demo_layers, out, size=120, seed=9, workers=2)
    assert not (out / ".gpucomp.lock").exists()
    monkeypatch.undo()
    summary = gpucomp.run(demo_layers, out, size=120, seed=9, workers=2)
    assert summary["rendered"] == 0 and snapshot(out) == reference


# --- The output folder's own odd objects: links, FIFOs and damaged files where gpucomp writes ---

def cli(*argv):
    """Run the CLI in a child process: (status, stdout, stderr); never hangs a test run."""
    env = dict(os.environ, PYTHONPATH=str(Path(gpucomp.__file__).parents[1]))
    p = subprocess.run([sys.executable, "-m", "gpucomp", *map(str, argv)], capture_output=True, text=True,
                       env=env, timeout=60)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def finished(demo_layers, tmp_path_factory):
    """A finished 30-item collection to copy (each test damages its own copy)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    gpucomp.run(demo_layers, out, size=30, seed=4, workers=2)
    return out


@pytest.fixture
def copy(finished, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


@pytest.fixture
def outside(tmp_path):
    p = tmp_path / "outside.txt"
    p.write_bytes(b"precious")
    return p


def assert_clean_error(rc, err, *words):
    assert rc == 2, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("name", [".gpucomp.lock", "gpucomp.journal"])
def test_a_linked_lock_or_journal_is_never_written_through(demo_layers, tmp_path, outside, name):
    out = tmp_path / "out"
    rc, _, err = run_cli(demo_layers, out, "-q", env={"GPUCOMP_TEST_KILL": "manifest"})  # manifest, empty journal
    assert rc == -signal.SIGKILL
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(outside)
    rc, _, err = run_cli(demo_layers, out, "-q")
    assert_clean_error(rc, err, name, "symbolic link")
    assert outside.read_bytes() == b"precious"


def test_a_dangling_lock_link_creates_nothing_elsewhere(copy, tmp_path):
    target = tmp_path / "created-elsewhere"
    (copy / ".gpucomp.lock").symlink_to(target)
    rc, _, err = cli("resume", copy, "-q")
    assert_clean_error(rc, err, ".gpucomp.lock")
    assert not target.exists()


def test_a_hard_linked_journal_is_refused(demo_layers, tmp_path, outside):
    out = tmp_path / "out"
    run_cli(demo_layers, out, "-q", env={"GPUCOMP_TEST_KILL": "manifest"})
    (out / "gpucomp.journal").unlink()  # the killed run's (empty) journal, opened before its manifest
    os.link(outside, out / "gpucomp.journal")
    rc, _, err = run_cli(demo_layers, out, "-q")
    assert_clean_error(rc, err, "gpucomp.journal", "hard links")
    assert outside.read_bytes() == b"precious"


@pytest.mark.parametrize("sub", ["images", "metadata"])
def test_a_linked_item_folder_is_refused_and_nothing_lands_outside(copy, tmp_path, sub):
    import shutil

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(copy / sub, elsewhere)
    before = {p.name: p.read_bytes() for p in elsewhere.iterdir()}
    shutil.rmtree(copy / sub)
    (copy / sub).symlink_to(elsewhere)
    (elsewhere / "3.png").unlink(missing_ok=True)  # something to render, were the link followed
    rc, _, err = cli("resume", copy, "-q")
    assert_clean_error(rc, err, f"{sub}: is a symbolic link")
    assert {p.name for p in elsewhere.iterdir()} <= set(before)


def test_force_removes_a_linked_item_folder_not_what_it_points_to(copy, demo_layers, tmp_path):
    import shutil

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(copy / "images", elsewhere)
    shutil.rmtree(copy / "images")
    (copy / "images").symlink_to(elsewhere)
    gpucomp.run(demo_layers, copy, size=5, seed=1, force=True)
    assert len(list(elsewhere.glob("*.png"))) == 30
    assert (copy / "images").is_dir() and not (copy / "images").is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_fifo_or_link_in_place_of_a_finished_image_is_re_rendered_without_hanging(copy, finished, outside, kind):
    img = copy / "images" / "7.png"
    img.unlink()
    os.mkfifo(img) if kind == "fifo" else img.symlink_to(outside)
    rc, _, err = cli("resume", copy, "-q")
    assert rc == 0, err
    assert img.is_file() and not img.is_symlink()
    assert img.read_bytes() == (finished / "images" / "7.png").read_bytes()
    assert outside.read_bytes() == b"precious"


def test_a_fifo_in_place_of_metadata_or_manifest_never_blocks(copy):
    meta = copy / "metadata" / "4.json"
    meta.unlink()
    os.mkfifo(meta)
    rc, _, err = cli("resume", copy, "-q")
    assert rc == 0, err
    assert json.loads(meta.read_text())["edition"] == 4
    (copy / "gpucomp.json").unlink()
    os.mkfifo(copy / "gpucomp.json")
    for argv in (("resume", copy), ("extend", copy, "-n", "2"), ("update-metadata", copy, "--base-uri", "x://")):
        rc, _, err = cli(*argv)
        assert_clean_error(rc, err, "gpucomp.json", "FIFO", "--force")


def damage(out, edit):
    m = json.loads((out / "gpucomp.json").read_text())
    m = edit(m)
    (out / "gpucomp.json").write_text(json.dumps(m))


@pytest.mark.parametrize("edit, field", [
    (lambda m: [m], "the file should be an object"),
    (lambda m: {**m, "plan": None}, "plan should be an object"),
    (lambda m: {**m, "plan": {k: v for k, v in m["plan"].items() if k != "stacks"}}, "plan.stacks is missing"),
    (lambda m: {**m, "plan": {**m["plan"], "size": "30"}}, "plan.size should be a whole number"),
    (lambda m: {**m, "plan": {**m["plan"], "seed": True}}, "plan.seed should be a whole number"),
    (lambda m: {**m, "plan": {**m["plan"], "extensions": [{"stack": 3, "size": 5, "seed": 1}]}},
     "plan.extensions[0].stack is 3"),
    (lambda m: {**m, "plan": {**m["plan"], "stacks": []}}, "plan.stacks is empty"),
    (lambda m: {**m, "art": {**m["art"], "traits": {"01-Background": ["x"]}}}, "art.traits['01-Background']"),
    (lambda m: {**m, "source": {**m["source"], "config": {**m["source"]["config"], "size": "many"}}}, "source.config"),
    (lambda m: {**m, "metadata": "erc721"}, "metadata should be an object"),
])
def test_a_damaged_manifest_is_named_by_every_command(copy, demo_layers, edit, field):
    damage(copy, edit)
    for argv in (("resume", copy), ("extend", copy, "-n", "2"), ("rerender", copy),
                 ("update-metadata", copy, "--base-uri", "x://"),
                 ("generate", demo_layers, "-o", copy, "-n", "30", "--seed", "4")):
        rc, _, err = cli(*argv, "-q") if argv[0] != "update-metadata" else cli(*argv)
        assert_clean_error(rc, err, "gpucomp.json", field, "--force")


def test_a_manifest_of_another_format_is_named_with_its_version(copy, demo_layers):
    damage(copy, lambda m: {**m, "format": 99, "gpucomp": "9.9"})
    rc, _, err = cli("generate", demo_layers, "-o", copy, "-n", "30", "--seed", "4", "-q")
    assert_clean_error(rc, err, "another format", "9.9")


def test_update_metadata_and_preview_clean_what_a_killed_run_left(copy):
    from gpucomp._shared.files import TMP_PREFIX

    (copy / "preview").mkdir()
    litter = [copy / f"{TMP_PREFIX}a", copy / "metadata" / f"{TMP_PREFIX}b", copy / "preview" / f"{TMP_PREFIX}c"]
    for p in litter:
        p.write_bytes(b"partial")
    assert cli("update-metadata", copy, "--base-uri", "ipfs://new")[0] == 0
    assert cli("preview", copy)[0] == 0
    assert not any(p.exists() for p in litter)


def test_preview_refuses_a_linked_preview_folder(copy, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (copy / "preview").symlink_to(tmp_path / "elsewhere")
    rc, _, err = cli("preview", copy)
    assert_clean_error(rc, err, "preview: is a symbolic link")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_update_metadata_on_a_full_disk_is_a_clean_error_and_changes_nothing(copy, monkeypatch, capsys):
    import gpucomp._shared.files
    import gpucomp.outdir.lock
    from gpucomp.cli import main

    before = snapshot(copy)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gpucomp.outdir.lock.os, "pwrite", full)
    monkeypatch.setattr(gpucomp._shared.files, "create_temporary", full)
    assert main(["update-metadata", str(copy), "--base-uri", "ipfs://new"]) == 2
    err = capsys.readouterr().err
    assert "No space left" in err and "run update-metadata again" in err
    assert snapshot(copy) == before
    assert not (copy / ".gpucomp.lock").exists()


def test_a_full_or_closed_stdout_does_not_fail_a_finished_run(demo_layers, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(gpucomp.__file__).parents[1]))
    base = [sys.executable, "-m", "gpucomp", "generate", str(demo_layers), "-n", "10", "-q"]
    with open("/dev/full", "w") as full:
        p = subprocess.run([*base, "-o", str(tmp_path / "a")], stdout=full, stderr=subprocess.PIPE, text=True,
                           env=env, timeout=60)
    assert p.returncode == 0 and "Traceback" not in p.stderr
    assert "could not be printed" in p.stderr
    p = subprocess.run(["bash", "-c", 'exec "$@" >&-', "_", *base, "-o", str(tmp_path / "b")],
                       stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    with subprocess.Popen([*base, "-o", str(tmp_path / "c"), "--json"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env) as p:
        p.stdout.close()  # nobody reads the report: EPIPE
        err = p.stderr.read()
        assert p.wait(timeout=60) == 0 and b"Traceback" not in err
    for d in "abc":
        assert (tmp_path / d / "provenance.json").is_file()


@pytest.mark.parametrize("point", ["update-metadata:manifest", "update-metadata:12"])
def test_update_metadata_killed_then_run_again_finishes_the_job(copy, finished, tmp_path, point):
    import shutil

    want = tmp_path / "want"
    shutil.copytree(finished, want)
    assert cli("update-metadata", want, "--base-uri", "ipfs://NEW")[0] == 0
    env = dict(os.environ, PYTHONPATH=str(Path(gpucomp.__file__).parents[1]), GPUCOMP_TEST_KILL=point)
    p = subprocess.run([sys.executable, "-m", "gpucomp", "update-metadata", str(copy), "--base-uri", "ipfs://NEW"],
                       env=env, capture_output=True, timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert_consistent(copy)
    assert cli("update-metadata", copy, "--base-uri", "ipfs://NEW")[0] == 0
    assert snapshot(copy) == snapshot(want)


def test_preview_killed_then_run_again_makes_the_same_sheets(copy, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(gpucomp.__file__).parents[1]), GPUCOMP_TEST_KILL="preview:2")
    p = subprocess.run([sys.executable, "-m", "gpucomp", "preview", str(copy), "--columns", "4", "--rows", "2"],
                       env=env, capture_output=True, timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert sorted(q.name for q in (copy / "preview").iterdir()) == ["sheet-0001.png", "sheet-0002.png"]
    assert cli("preview", copy, "--columns", "4", "--rows", "2")[0] == 0
    again = {q.name: q.read_bytes() for q in (copy / "preview").iterdir()}
    assert len(again) == 4 and not any(n.startswith(".gpucomp-tmp-") for n in again)
    assert cli("preview", copy, "--columns", "4", "--rows", "2", "-o", tmp_path / "fresh")[0] == 0
    assert again == {q.name: q.read_bytes() for q in (tmp_path / "fresh").iterdir()}


@pytest.mark.parametrize("argv", [
    ["resume", "{out}"], ["extend", "{out}", "-n", "3"], ["rerender", "{out}"],
    ["update-metadata", "{out}", "--base-uri", "ipfs://x"], ["gallery", "{out}"],
    ["generate", "{layers}", "-o", "{out}", *ARGS],
])
def test_every_command_that_changes_a_collection_waits_its_turn(demo_layers, tmp_path, reference, argv):
    out = tmp_path / "out"
    p = run_cli(demo_layers, out, "-q", wait=False, env={"GPUCOMP_TEST_SLOW": "0.05"})
    try:
        wait_for_images(p, out, 3)
        assert p.poll() is None, "the first run ended before the second could race it"
        rc, _, err = cli(*[a.format(out=out, layers=demo_layers) for a in argv])
        assert_clean_error(rc, err, "another gpucomp run is writing to this folder", f"pid {p.pid}")
    finally:
        p.kill()
        p.communicate()
    rc, _, err = run_cli(demo_layers, out, "-q")
    assert rc == 0, err
    assert snapshot(out) == reference
