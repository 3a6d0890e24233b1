"""Rendering on Ray (gpucomp/outdir/ray_run.py) with a local Ray instance (2 CPUs, NumPy backend): the
same bytes as one process; a worker SIGKILLed mid-shard is restarted and its shard retried; a
killed driver's run is resumed; a worker that cannot see the output folder fails clearly.
One Ray instance serves the whole module (starting one takes seconds)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gpucomp
from gpucomp.cli import build_parser
from gpucomp.config import load_config
from gpucomp.errors import ConfigError, OutputError
from gpucomp.outdir.pipeline import resume as api_resume

try:
    import ray
except ImportError:  # the cluster tests skip; the option tests below still run
    ray = None

ARGS = dict(size=60, seed=9)
ROOT = Path(gpucomp.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance; its workers see GPUCOMP_TEST_* hooks: items slowed a little (so a
    kill lands mid-shard) and an output folder named `unseen-out` hidden from them."""
    if ray is None:
        pytest.skip("ray is not installed (pip install 'gpucomp[ray]')")
    env = {"PYTHONPATH": str(ROOT), "GPUCOMP_TEST_SLOW": "0.02", "GPUCOMP_TEST_UNSEEN": "unseen-out"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(demo_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    gpucomp.run(demo_layers, out, workers=2, **ARGS)
    return snapshot(out)


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


def shard_worker_pids() -> list[int]:
    """Processes Ray titles `ray::ShardWorker...` (a worker process of ours)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::ShardWorker"):
                pids.append(int(d.name))
    return pids


def wait_until_no_workers(timeout: float = 30) -> None:
    t0 = time.monotonic()
    while shard_worker_pids() and time.monotonic() - t0 < timeout:
        time.sleep(0.1)


def test_ray_renders_the_bytes_of_one_process(cluster, demo_layers, tmp_path, reference):
    out = tmp_path / "out"
    gen = gpucomp.generate(demo_layers, out, ray=True, **ARGS)
    items = list(gen)
    assert sorted(i.number for i in items) == list(range(1, 61))
    assert snapshot(out) == reference
    devices = gen.summary["backend"]["ray"]["devices"]
    assert len(devices) == 2 and sum(d["items"] for d in devices) == 60  # both workers took shards
    assert not list(out.glob("gpucomp.shard-*")) and not (out / "gpucomp.journal").exists()


def test_worker_and_thread_counts_past_the_cluster_are_capped(cluster, demo_layers, tmp_path, reference):
    """`ray_workers = 500` on 2 CPUs starts 2 processes (more only wait, each holding a backend), and
    `workers = 100000` encoder threads become what each node's cores can use: the same bytes."""
    out, logged = tmp_path / "out", []
    gen = gpucomp.generate(demo_layers, out, ray=True, ray_workers=500, workers=100_000, log=logged.append, **ARGS)
    assert len(list(gen)) == 60 and snapshot(out) == reference
    assert len(gen.summary["backend"]["ray"]["devices"]) == 2
    assert any("500 workers asked, 2 started" in line for line in logged)


def test_an_animated_collection_on_ray_is_the_bytes_of_one_process(cluster, tmp_path):
    """Frames, stills and animated files (APNG, GIF) from the Ray workers equal one process's."""
    from gpucomp.demo import make_layers

    layers = make_layers(tmp_path / "layers", layers=3, traits=9, size=32, seed=5, animated=4)
    args = dict(size=6, seed=2, backend="cpu", animation=["apng", "gif"])
    gpucomp.run(layers, tmp_path / "one", workers=2, **args)
    list(gpucomp.generate(layers, tmp_path / "ray", ray=True, **args))
    one, on_ray = snapshot(tmp_path / "one"), snapshot(tmp_path / "ray")
    assert any(k.startswith("images/animation/") for k in one) and on_ray == one


def test_a_worker_killed_mid_shard_is_restarted_and_its_shard_retried(cluster, demo_layers, tmp_path, reference):
    out = tmp_path / "out"
    gen = gpucomp.generate(demo_layers, out, ray=True, **ARGS)
    killed = None
    for n, _ in enumerate(gen, 1):
        if n == 8:
            killed = shard_worker_pids()[0]
            os.kill(killed, signal.SIGKILL)
    assert killed is not None
    assert snapshot(out) == reference
    pids = {d["pid"] for d in gen.summary["backend"]["ray"]["devices"]}
    assert killed not in pids  # the worker that finished the run is the restarted one


def test_a_killed_driver_is_resumed_to_the_same_bytes(cluster, demo_layers, tmp_path, reference):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPUCOMP_TEST_KILL="shard-taken:3")
    p = subprocess.run([sys.executable, "-m", "gpucomp", "generate", str(demo_layers), "-o", str(out), "-n", "60",
                        "--seed", "9", "--ray", cluster, "-q"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert (out / "gpucomp.journal").exists()
    wait_until_no_workers()  # the dead driver's workers go with it
    gen = api_resume(out, ray=True)
    list(gen)
    assert 0 < gen.summary["resumed_from"] < 60
    assert snapshot(out) == reference


def test_a_worker_that_cannot_see_the_output_folder_fails_clearly(cluster, demo_layers, tmp_path):
    out = tmp_path / "unseen-out"
    with pytest.raises(OutputError, match="cannot see the output folder .*shared filesystem") as info:
        gpucomp.run(demo_layers, out, ray=True, **ARGS)
    assert "Traceback" not in str(info.value)
    assert not (out / ".gpucomp.lock").exists()
    assert json.loads((out / "gpucomp.json").read_text())["plan"]["size"] == 60  # resumable once it is shared


# ---------------------------------------------------------------- options (no cluster needed)

def test_ray_is_a_run_option_of_the_cli_the_api_and_the_config(tmp_path):
    p = build_parser()
    assert p.parse_args(["generate", "l", "-o", "o", "--ray"]).ray == "local"
    assert p.parse_args(["resume", "o", "--ray", "10.0.0.1:6379", "--ray-workers", "3"]).ray == "10.0.0.1:6379"
    for cmd in (["extend", "o", "-n", "1"], ["rerender", "o"]):
        assert p.parse_args([*cmd, "--ray"]).ray == "local"
    (tmp_path / "c.toml").write_text('[run]\nray = "ray://head:10001"\nray_workers = 8\n')
    cfg = load_config(tmp_path / "c.toml")
    assert (cfg.ray, cfg.ray_workers) == ("ray://head:10001", 8)
    from gpucomp.config import Config, with_overrides

    assert with_overrides(Config(), ray=True).ray == "local" and with_overrides(Config(), ray=False).ray == ""
    with pytest.raises(ConfigError, match="ray_workers must be 0"):
        with_overrides(Config(), ray_workers=-1)


def test_ray_options_never_reach_the_manifest(demo_layers, tmp_path):
    """A collection made with and without Ray is one collection: resumable either way."""
    gpucomp.run(demo_layers, tmp_path / "out", size=3, seed=1)
    source = json.loads((tmp_path / "out" / "gpucomp.json").read_text())["source"]["config"]
    assert "ray" not in source and "ray_workers" not in source


def test_without_ray_installed_the_error_says_what_to_install(demo_layers, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'gpucomp\[ray\]'"):
        gpucomp.run(demo_layers, tmp_path / "out", size=3, ray=True)
    assert not (tmp_path / "out" / ".gpucomp.lock").exists()


def test_the_cli_summary_lists_every_ray_worker(capsys, tmp_path):
    from gpucomp.cli import _print_summary

    devices = [{"worker": 1, "host": "a", "pid": 1, "device": "GPU 0", "items": 600, "seconds": 6.0, "items_per_s": 100.0},
               {"worker": 2, "host": "b", "pid": 2, "device": "GPU 1", "items": 400, "seconds": 5.0, "items_per_s": 80.0}]
    s = {"items": 1000, "rendered": 1000, "resumed_from": 0, "seconds": 7.0, "items_per_s": 160.0,
         "items_per_s_total": 142.9, "stage_seconds": {"encode": 1.0}, "avg_png_bytes": 4_000_000, "preset": "fast",
         "deflate": "isal", "backend": {"backend": "cuda", "ray": {"workers": 2, "shards": 8, "devices": devices}}}
    _print_summary(s, tmp_path, as_json=False)
    out = capsys.readouterr().out
    assert "ray worker 1 (GPU 0 on a): 600 items, 100.0 items/s" in out
    assert "ray worker 2 (GPU 1 on b): 400 items, 80.0 items/s" in out
