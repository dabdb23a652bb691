"""train.amp: bf16 autocast on a CPU only where the CPU has native bf16 (issue 18.2)."""

import torch

from slimssl.engine.amp import autocast_dtype

CPU = torch.device("cpu")


def test_bf16_on_cpu_needs_native_bf16_flags():
    assert autocast_dtype("bf16", CPU, {"avx2", "avx512f", "avx512_bf16"}) is torch.bfloat16
    assert autocast_dtype("bf16", CPU, {"avx2", "amx_bf16", "amx_tile"}) is torch.bfloat16
    # AVX2-only (e.g. AMD Zen 3) and AVX-512 without BF16 (Skylake-SP): emulated -> float32
    assert autocast_dtype("bf16", CPU, {"avx2", "fma"}) is None
    assert autocast_dtype("bf16", CPU, {"avx2", "avx512f", "avx512bw"}) is None


def test_cpu_never_uses_fp16_and_none_is_none():
    assert autocast_dtype("fp16", CPU, {"avx512_bf16"}) is None
    assert autocast_dtype("none", CPU, {"avx512_bf16"}) is None


def test_cuda_takes_what_is_asked():
    cuda = torch.device("cuda")
    assert autocast_dtype("bf16", cuda) is torch.bfloat16
    assert autocast_dtype("fp16", cuda) is torch.float16
