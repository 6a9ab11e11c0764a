"""Multi-worker training (robust_dae_tf/multiworker.py): TF_CONFIG parsing, and two
worker processes on 127.0.0.1 that train, stop and resume exactly like one process
with two logical CPU devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import multiworker
from robust_dae_tf.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tf_config_for_builds_the_standard_json():
    spec = json.loads(multiworker.tf_config_for("10.0.0.1:2222,10.0.0.2:2222", 1))
    assert spec == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}}
    cluster = multiworker.parse_tf_config(json.dumps(spec))
    assert (cluster.num_workers, cluster.is_chief, cluster.name) == (2, False, "worker 1")
    assert multiworker.parse_tf_config(multiworker.tf_config_for("a:1,b:2", 0)).is_chief


def test_a_chief_task_is_the_chief_and_worker_0_is_not():
    spec = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 0}}
    assert not multiworker.parse_tf_config(json.dumps(spec)).is_chief
    spec["task"] = {"type": "chief", "index": 0}
    cluster = multiworker.parse_tf_config(json.dumps(spec))
    assert cluster.is_chief and cluster.num_workers == 3


@pytest.mark.parametrize("text", ["", "  ", '{"cluster": {}, "task": {}}'])
def test_an_empty_tf_config_means_one_process(text):
    assert multiworker.parse_tf_config(text) is None


@pytest.mark.parametrize("text,words", [
    ("{not json", ["TF_CONFIG", "not valid JSON"]),
    ("[1, 2]", ["JSON object"]),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}', ["'b'", "host:port"]),
    ('{"cluster": {"worker": ["a:1", "b:99999"]}, "task": {"type": "worker", "index": 0}}', ["b:99999", "1..65535"]),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', ["task.index=2", "0..1"]),
    ('{"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "worker", "index": 0}}', ["ps", "chief"]),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', ["task.type", "evaluator"]),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', ["cluster.worker", "non-empty"]),
])
def test_a_malformed_tf_config_is_one_clear_error(text, words):
    with pytest.raises(ConfigError) as err:
        multiworker.parse_tf_config(text)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize("hosts,index,words", [
    ("a:1,b:2", 2, ["--task_index=2", "0..1"]),
    ("a:1,b:2", -1, ["--task_index=-1"]),
    ("a:1,,b:2", 0, ["--worker_hosts", "empty"]),
    ("a", 0, ["--worker_hosts", "'a'", "host:port"]),
    ("a:1,a:1", 0, ["twice"]),
])
def test_bad_worker_flags_are_one_clear_error(hosts, index, words):
    with pytest.raises(ConfigError) as err:
        multiworker.tf_config_for(hosts, index)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


# ---------------------------------------------------------------- two worker processes

TINY = ["--dataset=digits", "--config.data.max_train_examples=200", "--config.model.hidden_units=(32,)",
        "--config.loss.weight_estimation_batches=5", "--config.train.validation_examples=100",
        "--config.train.verbose=0", "--config.train.images_every_epochs=100", "--noexport"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers(workdir, tmpdir, epochs, timeout=300):
    """Runs bin/train.py as worker 0 (chief) and worker 1 on 127.0.0.1; returns their stderr."""
    hosts = f"127.0.0.1:{_free_port()},127.0.0.1:{_free_port()}"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmpdir))
    env.pop("TF_CONFIG", None)
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "bin", "train.py"), f"--worker_hosts={hosts}",
                               f"--task_index={i}", f"--workdir={workdir}", f"--epochs={epochs}", *TINY],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmpdir))
             for i in range(2)]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout))
    finally:  # a hang fails the test instead of hanging it
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    return [err for _, err in outputs]


def _checkpoint_values(path) -> dict:
    # Model and optimizer state; not "metrics/" (the epoch's metric sums, which single-process
    # runs checkpoint and multi-worker runs do not).
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", "metrics/"))}


def _assert_same_checkpoint(observed, expected):
    a, b = _checkpoint_values(observed), _checkpoint_values(expected)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_two_workers_train_stop_and_resume_like_one_process_with_two_devices(tmp_path):
    from ml_collections import config_flags  # noqa: F401 - the config file is loaded as bin/train.py does

    from robust_dae_tf import pipeline
    from tests.helpers import two_cpu_strategy
    import importlib.util

    # One process, MirroredStrategy over two logical CPUs, two uninterrupted epochs.
    spec = importlib.util.spec_from_file_location("digits_config", os.path.join(ROOT, "configs", "digits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.max_train_examples = 200
    config.model.hidden_units = (32,)
    config.loss.weight_estimation_batches = 5
    config.train.validation_examples = 100
    config.train.verbose = 0
    config.train.images_every_epochs = 100
    config.train.epochs = 2
    config.train.num_cpu_devices = 2
    reference = tmp_path / "reference"
    pipeline.run_training_pipeline(config, str(reference), None, strategy=two_cpu_strategy())
    ref_ckpt = reference / "trainer" / "checkpoints"

    # Two workers: one epoch (the job stops), then the same job restarted for two.
    workdir, tmpdir = tmp_path / "run", tmp_path / "tmp"
    tmpdir.mkdir()
    _run_workers(workdir, tmpdir, epochs=1)
    ckpt = workdir / "trainer" / "checkpoints"
    assert [n for n in os.listdir(ckpt) if n.endswith(".index")] == ["ckpt-2.index"]
    _assert_same_checkpoint(str(ckpt / "ckpt-2"), str(ref_ckpt / "ckpt-2"))
    assert not os.listdir(tmpdir)  # worker 1 wrote only to its temporary directory, and removed it

    chief_err, worker_err = _run_workers(workdir, tmpdir, epochs=2)
    assert "Resuming from" in chief_err and "(step 2," in chief_err
    _assert_same_checkpoint(str(ckpt / "ckpt-4"), str(ref_ckpt / "ckpt-4"))
    # The weights moved in the resumed epoch (the comparison is not vacuous).
    before, after = _checkpoint_values(str(ckpt / "ckpt-2")), _checkpoint_values(str(ckpt / "ckpt-4"))
    assert any(not np.allclose(before[n], after[n]) for n in before if "_trainable_variables" in n)
    # The chief owns the run directory: history of both epochs, TensorBoard logs, no lock left.
    assert json.load(open(workdir / "trainer" / "history.json"))["epoch"] == [1, 2]
    assert os.listdir(workdir / "trainer" / "logs")
    assert not os.path.exists(f"{workdir}.lock") and not os.listdir(tmpdir)
    assert "worker 1 of 2 workers" in worker_err
