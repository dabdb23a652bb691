"""``train.compile``: ``torch.compile`` of the online network (inductor's C++ kernels on a CPU).

One test, as compiling costs tens of seconds: the tiny run at full width only (one graph), 4
steps compiled and 4 eager from the same seed. The compiled run must follow the eager one (its
kernels sum in another order, so within float32 rounding, not bitwise), keep the state-dict
keys of the eager model (checkpoints stay interchangeable; ``nn.Module.compile`` compiles in
place instead of wrapping in ``_orig_mod``), and its checkpoint must resume an eager trainer.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from slimssl.engine.checkpoint import list_checkpoints
from slimssl.engine.trainer import Callback, Trainer
from tinyrun import tiny_config, write_image_folder


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, trainer: Trainer, logs: dict) -> None:
        self.losses.append(logs["loss"])


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_run_follows_eager_and_resumes_eager(tmp_path):
    from torch._dynamo.utils import counters

    data = write_image_folder(tmp_path / "data")
    torch._dynamo.reset()
    counters.clear()
    runs = {}
    for compiled in (False, True):
        out = tmp_path / f"compile_{compiled}"
        rec = LossRecorder()
        cfg = tiny_config(data, out, "model.widths=[1.0]", "train.epochs=1",
                          f"train.compile={compiled}")
        trainer = Trainer(cfg, out, progress="off", callbacks=[rec])
        trainer.fit()
        runs[compiled] = (trainer, rec.losses, out)
        # dynamo really captured the network's graph (and only in the compiled run)
        assert (counters["stats"]["unique_graphs"] > 0) is compiled
    (eager, eager_losses, _), (comp, comp_losses, comp_out) = runs[False], runs[True]
    assert len(eager_losses) == len(comp_losses) == 4
    # the same data, views and initial weights: the losses agree to float32 rounding drift
    assert comp_losses == pytest.approx(eager_losses, rel=1e-3)
    se, sc = eager.method.state_dict(), comp.method.state_dict()
    assert se.keys() == sc.keys()
    assert not any("_orig_mod" in k for k in sc)
    for key in se:
        if se[key].is_floating_point():
            torch.testing.assert_close(sc[key], se[key], rtol=1e-3, atol=1e-4, msg=key)
    # the compiled run's checkpoint resumes an eager trainer with the same weights
    ckpt = list_checkpoints(comp_out / "checkpoints")[-1]
    resumed = Trainer(tiny_config(data, comp_out, "model.widths=[1.0]", "train.epochs=1"),
                      comp_out, resume=str(ckpt), progress="off")
    for key, value in resumed.method.state_dict().items():
        assert torch.equal(value, sc[key]), key
