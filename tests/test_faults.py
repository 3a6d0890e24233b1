"""Fault tests: kills, Ctrl-C, a full disk and damaged files never lose finished work, and a
resumed collection is byte-identical to one made in a single run."""
import errno
import json
import os
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
from gpucomp.lock import OutputLock

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
    import gpucomp.pipeline as pipeline

    out = tmp_path / "out"
    real = pipeline.atomic_write_bytes
    calls = [0]

    def full_after_some(path, data, *a, **k):
        calls[0] += 1
        if calls[0] > 40 and Path(path).suffix == ".png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, *a, **k)

    monkeypatch.setattr(pipeline, "atomic_write_bytes", full_after_some)
    with pytest.raises(OutputError) as info:
        gpucomp.run(demo_layers, out, size=120, seed=9, workers=2)
    msg = str(info.value)
    assert "no space left" in msg and "GB more needed" in msg and "re-run the same command" in msg
    assert str(out / "images") in msg
    kept = len(list((out / "images").glob("*.png")))
    assert kept >= 15
    assert_consistent(out)
    assert not (out / ".gpucomp.lock").exists()  # released on error
    monkeypatch.setattr(pipeline, "atomic_write_bytes", real)
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
    import gpucomp.pipeline as pipeline

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "provenance.json"))

    out = tmp_path / "out"
    monkeypatch.setattr(pipeline, "write_provenance", full)
    with pytest.raises(OutputError, match="provenance.json: no space left on the device; finished items are kept"):
        gpucomp.run(demo_layers, out, size=120, seed=9, workers=2)
    assert not (out / ".gpucomp.lock").exists()
    monkeypatch.undo()
    summary = gpucomp.run(demo_layers, out, size=120, seed=9, workers=2)
    assert summary["rendered"] == 0 and snapshot(out) == reference
