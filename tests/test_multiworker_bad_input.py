"""User faults of multi-worker training, end to end through `bin/train.py`: TF_CONFIG,
--worker_hosts / --task_index, a worker whose peer never starts. Each ends in one clear
`error:` line, no traceback, no hang, nothing written (shared helpers: tests/scripts.py).
"""

import pytest

from tests.scripts import QUICK_TRAINING, assert_one_error_line, run_script

# (arguments, TF_CONFIG or None, words of the error line); refused before any work.
_TWO_WORKERS = '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": %s}}'
MULTIWORKER_CASES = [
    (["--worker_hosts=127.0.0.1", "--task_index=0"], None, ["--worker_hosts", "'127.0.0.1'", "host:port"]),
    (["--worker_hosts=127.0.0.1:1,127.0.0.1:2", "--task_index=2"], None, ["--task_index=2", "out of range", "0..1"]),
    (["--task_index=0"], None, ["--worker_hosts", "--task_index", "both"]),
    (["--worker_hosts=127.0.0.1:1,127.0.0.1:2", "--task_index=0"], _TWO_WORKERS % 0, ["TF_CONFIG", "use one"]),
    ([], "{not json", ["TF_CONFIG", "not valid JSON"]),
    ([], _TWO_WORKERS % 5, ["TF_CONFIG", "task.index=5", "0..1"]),
    (["--num_cpu_devices=2"], _TWO_WORKERS % 0, ["train.num_cpu_devices=2", "TF_CONFIG", "leave it at 1"]),
]


@pytest.mark.parametrize("args,tf_config,words", MULTIWORKER_CASES,
                         ids=[" ".join(a) + (f" TF_CONFIG={c}" if c else "") for a, c, _ in MULTIWORKER_CASES])
def test_multiworker_bad_input(tmp_path, args, tf_config, words):
    workdir, export_dir = tmp_path / "run", tmp_path / "saved"
    env = {"TF_CONFIG": tf_config} if tf_config else {"TF_CONFIG": ""}
    done = run_script("train.py", f"--workdir={workdir}", f"--export_dir={export_dir}", *QUICK_TRAINING, *args,
                      env=env, timeout=120)
    assert_one_error_line(done, *words)
    assert not (workdir / "examples").exists() and not export_dir.exists()


def test_a_worker_whose_peer_never_starts_says_whom_it_awaits_and_gives_up(tmp_path):
    """Worker 0 of two, worker 1 never started: the awaited worker is named at once, and after
    --worker_timeout one error line ends the run (TensorFlow would wait forever, silently)."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
    workdir = tmp_path / "run"
    done = run_script("train.py", f"--workdir={workdir}", "--noexport", *QUICK_TRAINING, f"--worker_hosts={hosts}",
                      "--task_index=0", "--worker_timeout=3", env={"TF_CONFIG": ""}, timeout=180)
    assert f"waiting up to 3 s (--worker_timeout) for worker 1 (127.0.0.1:{ports[1]}) to start" in done.stderr, \
        done.stderr[-3000:]
    # Killed by the watchdog (TensorFlow blocks the process): exit status 137, the error line last.
    assert done.returncode == -9 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-3000:])
    last = done.stderr.strip().splitlines()[-1]
    for words in (f"error: worker 0 (127.0.0.1:{ports[0]}) waited 3 s", f"worker 1 (127.0.0.1:{ports[1]})",
                  "--worker_timeout"):
        assert words in last, last
    assert not (workdir / "trainer").exists()
    done = run_script("train.py", f"--workdir={workdir}", *QUICK_TRAINING, "--worker_timeout=0", env={"TF_CONFIG": ""})
    assert_one_error_line(done, "--worker_timeout=0", "> 0")
