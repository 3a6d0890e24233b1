"""The collection folder (gpucomp/outdir/folder.py): every command that changes a collection takes the
lock before it reads the manifest; an extension in progress is known from the moment the
manifest names it; layouts that feed back into themselves and impossible sizes are refused up
front, before anything is written."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gpucomp
from gpucomp.cli import main
from gpucomp.errors import ConfigError, OutputError
from gpucomp.outdir.pipeline import resume as api_resume
from gpucomp.outdir.update import update_metadata


def cli(*args, env=None, wait=True):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCOMP_TEST_")}
    full_env.update(PYTHONPATH=str(Path(gpucomp.__file__).parents[1]), **(env or {}))
    p = subprocess.Popen([sys.executable, "-m", "gpucomp", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=full_env)
    if not wait:
        return p
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


def manifest(out: Path) -> dict:
    return json.loads((out / "gpucomp.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def extended_reference(demo_layers, tmp_path_factory):
    """generate 20 + extend 7, uninterrupted."""
    out = tmp_path_factory.mktemp("ref") / "out"
    gpucomp.run(demo_layers, out, size=20, seed=5)
    list(gpucomp.extend(out, 7))
    return snapshot(out)


# ---------------------------------------------------------------- the lock comes first

@pytest.mark.parametrize("command", ["extend", "resume", "rerender"])
def test_a_metadata_update_made_before_the_run_starts_is_kept(demo_layers, tmp_path, command):
    """The command reads the collection's config when it runs, under the lock, not when it was
    called: an update-metadata in between is not silently written back to the old text."""
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=10, seed=2)
    gen = {"extend": lambda: gpucomp.extend(out, 3), "resume": lambda: api_resume(out),
           "rerender": lambda: gpucomp.rerender(out)}[command]()
    update_metadata(out, {"base_uri": "ipfs://NEW"})
    list(gen)
    assert manifest(out)["metadata"]["base_uri"] == "ipfs://NEW"
    for p in (out / "metadata").glob("*.json"):
        assert json.loads(p.read_text(encoding="utf-8"))["image"].startswith("ipfs://NEW/"), p.name


def test_an_extend_killed_right_after_its_manifest_is_finished_by_resume_only(demo_layers, tmp_path,
                                                                             extended_reference):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=20, seed=5)
    rc, _, err = cli("extend", out, "-n", "7", "-q", env={"GPUCOMP_TEST_KILL": "manifest"})
    assert rc == -signal.SIGKILL, err
    assert [e["size"] for e in manifest(out)["plan"]["extensions"]] == [7]
    rc, _, err = cli("extend", out, "-n", "7", "-q")
    assert rc == 2 and f"gpucomp resume {out}" in err and "Traceback" not in err, err
    assert [e["size"] for e in manifest(out)["plan"]["extensions"]] == [7]  # no second extension
    rc, _, err = cli("resume", out, "-q")
    assert rc == 0, err
    assert snapshot(out) == extended_reference


def test_the_loser_of_two_concurrent_extends_is_told_another_run_holds_the_lock(demo_layers, tmp_path, capsys):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=20, seed=5)
    first = cli("extend", out, "-n", "10", "-q", env={"GPUCOMP_TEST_SLOW": "0.2"}, wait=False)
    try:
        t0 = time.monotonic()
        while not (out / "images" / "21.png").exists() and first.poll() is None and time.monotonic() - t0 < 60:
            time.sleep(0.01)
        assert first.poll() is None, first.communicate()
        assert main(["extend", str(out), "-n", "5", "-q"]) == 2
        err = capsys.readouterr().err
        assert "another gpucomp run is writing to this folder" in err and "did not finish" not in err, err
    finally:
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert len(list((out / "images").glob("*.png"))) == 30


# ---------------------------------------------------------------- layouts that feed back

def test_an_output_folder_inside_the_layers_folder_is_refused(demo_layers, tmp_path, monkeypatch):
    layers = tmp_path / "layers"
    shutil.copytree(demo_layers, layers)
    before = sorted(str(p) for p in layers.rglob("*"))
    for out in (layers / "out", layers, layers / "01-Background" / "x"):
        rc, _, err = cli("generate", layers, "-o", out, "-n", "5", "-q")
        assert rc == 2 and "inside the layers folder" in err and "Traceback" not in err, err
    assert sorted(str(p) for p in layers.rglob("*")) == before  # nothing written
    with pytest.raises(OutputError, match="inside the layers folder"):
        gpucomp.run(layers, layers / "out", size=5)
    monkeypatch.chdir(layers)  # `cd layers && gpucomp generate . -o out`
    assert main(["generate", ".", "-o", "out", "-n", "5", "-q"]) == 2
    assert not (layers / "out").exists()


def test_a_layers_folder_inside_the_output_folder_is_refused(demo_layers, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_layers, out / "layers")
    before = sorted(str(p) for p in out.rglob("*"))
    rc, _, err = cli("generate", out / "layers", "-o", out, "-n", "5", "--force", "-q")
    assert rc == 2 and "layers folder is inside the output folder" in err and "Traceback" not in err, err
    assert sorted(str(p) for p in out.rglob("*")) == before


def test_resume_with_layers_moved_into_the_output_folder_is_refused(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=5, seed=1)
    shutil.copytree(demo_layers, out / "art")
    before = snapshot(out)
    with pytest.raises(OutputError, match="layers folder is inside the output folder"):
        list(api_resume(out, layers=out / "art"))
    assert snapshot(out) == before


# ---------------------------------------------------------------- sizes

def test_extend_is_capped_like_generate(demo_layers, tmp_path, monkeypatch):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=20, seed=5)
    before = snapshot(out)
    with pytest.raises(ConfigError, match="at most 10000000"):
        gpucomp.extend(out, 10**12)  # refused at the call: nothing is planned or allocated
    rc, _, err = cli("extend", out, "-n", str(10**12), "-q")
    assert rc == 2 and "at most 10000000" in err and "Traceback" not in err, err
    from gpucomp import config
    from gpucomp.outdir import folder

    monkeypatch.setattr(config, "MAX_SIZE", 25)  # the collection's total counts too
    monkeypatch.setattr(folder, "MAX_SIZE", 25)
    with pytest.raises(ConfigError, match="would make 27, more than gpucomp supports"):
        list(gpucomp.extend(out, 7))
    assert snapshot(out) == before


def test_force_clears_only_the_items_gpucomp_names_with_ascii_numbers(demo_layers, tmp_path):
    """`--force` removes images/<n>.<ext> it wrote; a file whose name only looks numeric to Python
    (`²`, `٣`: str.isdigit is true for them) is somebody else's and stays."""
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=3, seed=1)
    for name in ("².png", "٣.png"):
        (out / "images" / name).write_bytes(b"not ours")
    gpucomp.run(demo_layers, out, size=2, seed=2, force=True)
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == sorted(["1.png", "2.png", "².png", "٣.png"])


def test_a_run_refused_after_planning_leaves_no_folder_it_made(demo_layers, tmp_path):
    """`--backend cuda` without CUDA is refused once the plan is known, after the folder was made and
    locked: the folder goes again, as if the command had never run; one the user made stays."""
    from gpucomp.errors import GpucompError

    out = tmp_path / "new" / "out"
    with pytest.raises(GpucompError, match="--backend cuda"):
        gpucomp.run(demo_layers, out, size=3, seed=1, backend="cuda")
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(GpucompError, match="--backend cuda"):
        gpucomp.run(demo_layers, mine, size=3, seed=1, backend="cuda")
    assert mine.is_dir()
    rc, _, err = cli("generate", demo_layers, "-o", tmp_path / "cli", "-n", "3", "--backend", "cuda", "-q")
    assert rc == 2 and "--backend cuda" in err and not (tmp_path / "cli").exists()


@pytest.mark.parametrize("content", [b"[1, 2]", b'"pid"', b"[" * 5000, b"\xff\xfe", b"7"])
def test_a_lock_file_that_holds_no_note_of_a_run_is_no_traceback(demo_layers, tmp_path, content):
    """The lock file is only a note (pid, host): whatever else it holds says nothing, and the run goes on."""
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=3, seed=1)
    (out / ".gpucomp.lock").write_bytes(content)
    assert list(gpucomp.extend(out, 2))


def test_resume_and_extend_from_a_working_directory_deeper_than_path_max(demo_layers, tmp_path, monkeypatch):
    """The manifest records the layers folder as an absolute path; made in a working directory whose
    absolute path is past PATH_MAX (4096), that path cannot be opened as written, but the same
    folder relative to the working directory can."""
    monkeypatch.chdir(tmp_path)  # restored afterwards; the steps below go deeper one by one
    for _ in range(25):  # 25 x 201 bytes: past PATH_MAX
        os.mkdir("d" * 200)
        os.chdir("d" * 200)
    shutil.copytree(demo_layers, "layers")
    assert len(os.getcwd()) > 4096
    gpucomp.run("layers", "out", size=3, seed=1)
    assert main(["resume", "out", "-q"]) == 0
    assert main(["extend", "out", "-n", "2", "-q"]) == 0
    assert len(os.listdir("out/images")) == 5
