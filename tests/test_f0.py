"""zoo.f0.yaapt_f0 against speech-resynthesis' own ``get_yaapt_f0`` (tests/fixtures/f0, amfm_decompy YAAPT)."""
import pytest
import torch

from zoo.f0 import yaapt_f0


@pytest.mark.cases("f0/*")
def test_yaapt_f0_equals_speech_resynthesis(case):
    """Every call of case.json: the voiced frames exactly, the F0 in Hz within the case's tolerance."""
    for call in case.meta["calls"]:
        got = yaapt_f0(case.io[call["input"]], call["sample_rate"], interpolate=call["interpolate"])
        want = case.io[call["output"]]
        assert got.shape == want.shape and got.dtype == torch.float32
        assert torch.equal(got > 0, want > 0), f"{call['output']}: voicing differs"
        case.assert_close(call["output"], got)
