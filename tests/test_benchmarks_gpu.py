"""benchmarks/gpu.py runs: ``--device cpu --quick`` (tiny configs, float32 and bfloat16) prints a row with a
number for every model, dtype and batch size (no GPU is needed for this check; the GPU run is the script's job)."""
from __future__ import annotations

import re

import pytest

from benchmarks import gpu


@pytest.mark.slow
def test_gpu_benchmark_quick_on_cpu_has_every_model_row(capsys):
    lines = gpu.main(["--device", "cpu", "--quick"])
    assert lines == capsys.readouterr().out.splitlines()
    assert "tiny configs (--quick)" in lines[0] and "CPU capability" in lines[0]
    rows = {}
    for line in lines[3:]:
        name, dtype, batch, throughput, unit, seconds, peak = [c.strip() for c in line.strip("|").split("|")]
        rows[name, dtype, int(batch)] = (throughput, unit, seconds, peak)
    assert set(rows) == {(c.name, d, 2) for c in gpu.CASES for d in ("float32", "bfloat16")}
    for (name, _, _), (throughput, unit, seconds, peak) in rows.items():
        assert re.fullmatch(r"[\d,]+\.\d", throughput) and float(throughput.replace(",", "")) > 0, (name, throughput)
        assert unit == ("tokens/s" if "generation" in name else "× real time") and float(seconds) > 0
        assert peak == "—"  # peak memory is CUDA's allocator statistic


def test_gpu_benchmark_refuses_cuda_without_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        gpu.main(["--models", "hubert"])
    assert "no CUDA device here" in capsys.readouterr().err
