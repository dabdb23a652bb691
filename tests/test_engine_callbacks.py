"""Callback (monitor) states travel in checkpoints keyed by name, not by list position."""

from __future__ import annotations

import warnings

import pytest

from slimssl.engine.checkpoint import list_checkpoints, load_checkpoint
from slimssl.engine.trainer import Callback, Trainer, callback_states, restore_callback_states
from tinyrun import Crash, CrashAfter, tiny_config, write_image_folder


class StepTally(Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, trainer, logs) -> None:
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]


class EpochTally(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch_end(self, trainer, epoch: int) -> None:
        self.epochs.append(epoch)

    def state_dict(self) -> dict:
        return {"epochs": list(self.epochs)}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state["epochs"])


def test_two_monitors_swapped_in_order_each_get_their_own_state(tmp_path):
    data = write_image_folder(tmp_path / "images")
    out = tmp_path / "run"
    cfg = tiny_config(data, out)
    # 4 steps per epoch; the epoch-1 checkpoint is written after step 4, the crash is at step 5
    crashed = Trainer(cfg, out, progress="off",
                      callbacks=[StepTally(), EpochTally(), CrashAfter(5)])
    with pytest.raises(Crash):
        crashed.fit()
    crashed.logger.close()
    saved = load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["callbacks"]
    assert saved == {"StepTally": {"steps": 4}, "EpochTally": {"epochs": [1]}, "CrashAfter": {}}

    epochs, steps = EpochTally(), StepTally()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same set of callbacks (stateless CrashAfter gone): silent
        resumed = Trainer(cfg, out, resume="auto", progress="off", callbacks=[epochs, steps])
    assert steps.steps == 4 and epochs.epochs == [1]
    resumed.fit()
    assert steps.steps == 8 and epochs.epochs == [1, 2]


def test_resume_with_another_set_of_monitors_warns_naming_them():
    class Other(StepTally):
        pass

    first, second = StepTally(), EpochTally()
    first.steps, second.epochs = 7, [1, 2]
    saved = callback_states([first, second])
    assert saved == {"StepTally": {"steps": 7}, "EpochTally": {"epochs": [1, 2]}}

    kept, new = StepTally(), Other()
    with pytest.warns(UserWarning) as record:
        restore_callback_states([new, kept], saved)
    message = str(record[0].message)
    assert "no saved state for Other (starts afresh)" in message
    assert "saved state of EpochTally not used" in message
    assert kept.steps == 7 and new.steps == 0


def test_two_instances_of_one_class_are_told_apart_by_order():
    a, b = StepTally(), StepTally()
    a.steps, b.steps = 3, 5
    saved = callback_states([a, b])
    assert saved == {"StepTally": {"steps": 3}, "StepTally#2": {"steps": 5}}
    c, d = StepTally(), StepTally()
    restore_callback_states([c, d], saved)
    assert (c.steps, d.steps) == (3, 5)


def test_position_keyed_checkpoints_of_older_runs_still_restore_with_a_warning():
    a, b = StepTally(), EpochTally()
    with pytest.warns(UserWarning, match="by position"):
        restore_callback_states([a, b], [{"steps": 2}, {"epochs": [1]}])
    assert a.steps == 2 and b.epochs == [1]
