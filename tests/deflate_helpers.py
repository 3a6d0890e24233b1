"""kernels/deflate.cu built as host C++ for the tests (skipped without a C++ compiler)."""
import pytest

from gpucomp import gpu_deflate as gd

host_stream = gd.host_stream
segment_outputs = gd.host_segments


def build_host_deflate(tmp_path_factory):
    lib = gd.build_host_library(tmp_path_factory.mktemp("hostdeflate"))
    if lib is None:
        pytest.skip("no C++ compiler")
    return lib
