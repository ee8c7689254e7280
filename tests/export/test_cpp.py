"""Python-free execution: the C++ program built against the wheel's libtorch scores like Python."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.utils

from export.calibration import calibration_ads, cycled_batch

CPP_DIR = Path(__file__).resolve().parents[2] / "export" / "cpp"


@pytest.fixture(scope="session")
def adpolicy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C++ program, configured and built once per test session."""
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("cmake and a C++ compiler are needed to build export/cpp")
    build = tmp_path_factory.mktemp("cpp-build")
    abi = "ON" if torch.compiled_with_cxx11_abi() else "OFF"
    subprocess.run(
        [
            "cmake",
            "-S",
            str(CPP_DIR),
            "-B",
            str(build),
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            f"-DTORCH_CXX11_ABI={abi}",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cmake", "--build", str(build), "-j", "2"], check=True, capture_output=True)
    return build / "adpolicy_run"


def _run(program: Path, *args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def _parse_scores(stdout: str) -> torch.Tensor:
    lines = stdout.strip().splitlines()
    header = lines[0].split()
    assert header[0] == "scores"
    rows = [[float(v) for v in line.split()] for line in lines[1:]]
    scores = torch.tensor(rows)
    assert list(scores.shape) == [int(header[1]), int(header[2])]
    return scores


def test_cpp_scores_real_ads_like_python(
    adpolicy_run, small_artifact, small_artifact_dir, tmp_path
) -> None:
    preparer = small_artifact.preparer(allow_paths=False)
    batch = cycled_batch(preparer, calibration_ads(preparer), 9)
    torch.save(list(batch), tmp_path / "inputs.pt")
    with torch.no_grad():
        want = small_artifact.graph(*batch)
    done = _run(
        adpolicy_run, small_artifact_dir / "model.pt", tmp_path / "inputs.pt", tmp_path / "out.pt"
    )
    assert done.returncode == 0, done.stderr
    torch.testing.assert_close(_parse_scores(done.stdout), want[0], atol=2e-6, rtol=0)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert len(got) == 3
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_cpp_reports_bad_inputs(adpolicy_run, small_artifact_dir, tmp_path) -> None:
    torch.save([torch.zeros(2, 3)], tmp_path / "wrong.pt")
    done = _run(adpolicy_run, small_artifact_dir / "model.pt", tmp_path / "wrong.pt")
    assert done.returncode == 1
    assert "adpolicy_run:" in done.stderr
    usage = _run(adpolicy_run)
    assert usage.returncode == 2
    assert "usage" in usage.stderr
