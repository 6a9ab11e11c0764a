"""Trainer callbacks: the step arithmetic of `crossed_multiple` and the epoch history file."""

import json
import logging
import math

import pytest

from robust_dae_tf import callbacks


def test_crossed_multiple_counts_multiples_in_the_half_open_interval():
    brute = lambda prev, step, every: any(k % every == 0 for k in range(prev + 1, step + 1))  # noqa: E731
    for prev in range(0, 12):
        for step in range(prev + 1, prev + 12):
            for every in (1, 3, 4, 10):
                assert callbacks.crossed_multiple(prev, step, every) == brute(prev, step, every), (prev, step, every)


def _load(path):
    with open(path) as f:
        return json.load(f)


def test_epoch_history_is_written_every_epoch_and_keyed_by_epoch(tmp_path):
    path = str(tmp_path / "history.json")
    history = callbacks.EpochHistory(path)
    history.on_epoch_end(0, {"loss": 3.0, "val_loss": 3.5})
    assert _load(path) == {"epoch": [1], "loss": [3.0], "val_loss": [3.5]}  # on disk after ONE epoch
    history.on_epoch_end(1, {"loss": 2.0, "val_loss": 2.5})
    history.on_epoch_end(2, {"loss": 1.0, "val_loss": 1.5})
    # A new session (resumed run) that finishes epoch 2 again replaces epochs >= 2 ...
    resumed = callbacks.EpochHistory(path)
    resumed.on_epoch_end(1, {"loss": 2.25, "val_loss": 2.75})
    assert _load(path) == {"epoch": [1, 2], "loss": [3.0, 2.25], "val_loss": [3.5, 2.75]}
    # ... and a session that starts after a lost entry leaves a gap instead of a shift.
    later = callbacks.EpochHistory(path)
    later.on_epoch_end(3, {"loss": 0.5, "val_loss": 1.0})
    assert _load(path) == {"epoch": [1, 2, 4], "loss": [3.0, 2.25, 0.5], "val_loss": [3.5, 2.75, 1.0]}
    assert later.history == _load(path)


def test_epoch_history_reads_old_files_and_pads_missing_metrics_with_nan(tmp_path):
    path = str(tmp_path / "history.json")
    with open(path, "w") as f:
        json.dump({"loss": [4.0, 3.0], "val_loss": [5.0]}, f)  # an earlier version's file, no "epoch"
    history = callbacks.EpochHistory(path)
    history.on_epoch_end(2, {"loss": 2.0, "ks": 0.1})  # no val_loss this epoch; ks is new
    saved = _load(path)
    assert saved["epoch"] == [1, 2, 3] and saved["loss"] == [4.0, 3.0, 2.0]
    assert saved["val_loss"][0] == 5.0 and all(math.isnan(v) for v in saved["val_loss"][1:])
    assert all(math.isnan(v) for v in saved["ks"][:2]) and saved["ks"][2] == 0.1
    assert {len(v) for v in saved.values()} == {3}


@pytest.mark.parametrize("content", ['{"loss": [1.0, 2', '[1, 2, 3]', '{"epoch": [1, 2], "loss": [1.0]}'])
def test_unreadable_history_is_moved_aside_and_training_goes_on(tmp_path, caplog, content):
    path = tmp_path / "history.json"
    (tmp_path / "history.json.unreadable").write_text("an earlier one")
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        history = callbacks.EpochHistory(str(path))
    assert history.history == {}
    assert (tmp_path / "history.json.unreadable.1").read_text() == content  # kept, not lost
    assert (tmp_path / "history.json.unreadable").read_text() == "an earlier one"
    assert "unreadable" in caplog.text and "history.json.unreadable.1" in caplog.text
    history.on_epoch_end(4, {"loss": 0.5})
    assert _load(str(path)) == {"epoch": [5], "loss": [0.5]}


def test_nonfinite_variables_names_float_variables_with_nan_or_inf():
    import keras
    import numpy as np

    good = keras.Variable(np.ones(3, np.float32), name="good")
    nan = keras.Variable(np.array([1.0, np.nan], np.float32), name="nan")
    inf = keras.Variable(np.array([[np.inf]], np.float32), name="inf")
    steps = keras.Variable(7, dtype="int64", name="steps")
    assert callbacks.nonfinite_variables([good, nan, steps, inf]) == ["nan", "inf"]
    assert callbacks.nonfinite_variables([good, steps]) == []
