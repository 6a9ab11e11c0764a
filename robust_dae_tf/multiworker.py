"""Training on several machines: the `TF_CONFIG` cluster, the chief, and state sync.

A multi-worker run is configured the standard TensorFlow way, by the environment
variable `TF_CONFIG` of every process (or `bin/train.py --worker_hosts=... --task_index=N`,
which builds it, `tf_config_for`):

    {"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}

`cluster_from_env()` reads and checks it (one `ConfigError` naming the problem: not
JSON, no cluster, a malformed `host:port`, an index out of range, a task type other
than "chief" / "worker"). The chief is the task of type "chief", or worker 0 when the
cluster has none (TensorFlow's rule); it alone writes the run directory (checkpoints,
TensorBoard, history, export). Every other worker trains in a temporary directory of its
own that is removed afterwards (`pipeline.training.run_training_pipeline`).

`broadcast_from_chief(strategy, variables)` copies the chief's values of `variables`
to every replica of every worker with one collective (an all-reduce in which only
replica 0, on the chief, contributes): after the chief restores its newest checkpoint,
all workers continue from it, with no file system shared between the hosts.
`shard_by_data(ds)` makes each worker take its rows of every global batch (tf.data's
DATA auto-shard), so N workers see the batches one process sees.

Creating the strategy waits, inside TensorFlow's C++ code, until every worker of the
cluster has started (no Python exception, signal handler or TensorFlow timeout gets
through). `awaiting_workers(cluster, timeout)` says which workers are awaited and, when
they have not all joined after `timeout` seconds (`bin/train.py --worker_timeout`,
default `DEFAULT_WORKER_TIMEOUT`), ends the process with one `error:` line (exit 137).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys

from robust_dae_tf.errors import ConfigError

TASK_TYPES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The validated `TF_CONFIG` of this process."""

    hosts: dict  # {"chief": [...], "worker": [...]} (types present only)
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        return sum(len(v) for v in self.hosts.values())

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or ("chief" not in self.hosts and self.task_index == 0)

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_index}"


def _check_host(address, where: str) -> str:
    if not isinstance(address, str):
        raise ConfigError(f"{where}: {address!r} is not a 'host:port' string.")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {address!r} is not 'host:port' with a port in 1..65535.")
    return address


def parse_worker_hosts(text: str, flag: str = "--worker_hosts") -> list[str]:
    """'h0:p0,h1:p1' -> ['h0:p0', 'h1:p1'], each checked; ConfigError names `flag`."""
    hosts = [h.strip() for h in text.split(",")]
    if not text.strip() or any(not h for h in hosts):
        raise ConfigError(f"{flag}={text!r}: give a comma-separated list host:port,host:port (no empty entries).")
    for host in hosts:
        _check_host(host, flag)
    if len(set(hosts)) != len(hosts):
        raise ConfigError(f"{flag}={text!r} lists an address twice; every worker needs its own host:port.")
    return hosts


def tf_config_for(worker_hosts: str, task_index: int) -> str:
    """The TF_CONFIG JSON of worker `task_index` in the cluster `worker_hosts` ('h:p,h:p')."""
    hosts = parse_worker_hosts(worker_hosts)
    if not 0 <= task_index < len(hosts):
        raise ConfigError(f"--task_index={task_index} is out of range: --worker_hosts lists {len(hosts)} worker(s), "
                          f"so it must be 0..{len(hosts) - 1}.")
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": task_index}})


def parse_tf_config(text: str, source: str = "TF_CONFIG") -> Cluster | None:
    """The `Cluster` of a TF_CONFIG value; None for an empty value or an empty cluster."""
    if not text or not text.strip():
        return None
    try:
        spec = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{source} is not valid JSON ({err}); expected e.g. "
                          '{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}.'
                          ) from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{source} must be a JSON object with 'cluster' and 'task', got {type(spec).__name__}.")
    cluster, task = spec.get("cluster") or {}, spec.get("task") or {}
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(f"{source}: 'cluster' and 'task' must be JSON objects.")
    if not cluster:
        return None
    unknown = sorted(set(cluster) - set(TASK_TYPES))
    if unknown:
        raise ConfigError(f"{source}: task type(s) {', '.join(unknown)} are not supported; MultiWorkerMirroredStrategy "
                          "runs a cluster of 'chief' and 'worker' tasks only.")
    hosts = {}
    for kind in TASK_TYPES:
        if kind in cluster:
            if not isinstance(cluster[kind], list) or not cluster[kind]:
                raise ConfigError(f"{source}: cluster.{kind} must be a non-empty list of 'host:port' strings.")
            hosts[kind] = [_check_host(h, f"{source} cluster.{kind}") for h in cluster[kind]]
    if len(hosts.get("chief", [])) > 1:
        raise ConfigError(f"{source}: a cluster has at most one chief, got {len(hosts['chief'])}.")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in hosts:
        raise ConfigError(f"{source}: task.type must be one of the cluster's task types ({', '.join(hosts)}), got {kind!r}.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(hosts[kind]):
        raise ConfigError(f"{source}: task.index={index!r} is out of range: cluster.{kind} lists {len(hosts[kind])} "
                          f"task(s), so it must be 0..{len(hosts[kind]) - 1}.")
    return Cluster(hosts, kind, index)


def cluster_from_env() -> Cluster | None:
    """This process's validated TF_CONFIG cluster, or None when TF_CONFIG is unset or empty."""
    return parse_tf_config(os.environ.get("TF_CONFIG", ""))


def check_cpu_devices(cluster: Cluster | None, num_cpu_devices: int) -> None:
    """ConfigError for `train.num_cpu_devices` > 1 in a multi-worker run (each worker uses its
    GPUs or one CPU device): checked by `fit.make_strategy`, and by the training pipeline
    before it imports TensorFlow."""
    if cluster is not None and num_cpu_devices > 1:
        raise ConfigError(
            f"train.num_cpu_devices={num_cpu_devices} splits one machine's CPU; with TF_CONFIG "
            f"({cluster.num_workers} workers) each worker uses its GPUs or one CPU device: leave it at 1."
        )


DEFAULT_WORKER_TIMEOUT = 600.0  # seconds a worker waits for the others (bin/train.py --worker_timeout)


def _address(cluster: Cluster, kind: str, index: int) -> str:
    return f"{kind} {index} ({cluster.hosts[kind][index]})"


# The watchdog of `awaiting_workers`: a separate process, because the waiting main thread
# holds the GIL inside TensorFlow (no Python thread or signal handler of this process runs)
# and TensorFlow handles SIGTERM itself. It exits quietly when its stdin closes (the workers
# joined, or this process ended); after the timeout it writes the error line and kills us.
_WATCHDOG = (
    "import os, select, signal, sys\n"
    "ready, _, _ = select.select([sys.stdin], [], [], float(sys.argv[2]))\n"
    "if not ready:\n"
    "    sys.stderr.write(sys.argv[3] + '\\n')\n"
    "    sys.stderr.flush()\n"
    "    os.kill(int(sys.argv[1]), signal.SIGKILL)\n"
)


@contextlib.contextmanager
def awaiting_workers(cluster: Cluster, timeout: float = DEFAULT_WORKER_TIMEOUT):
    """Runs the block (creating the MultiWorkerMirroredStrategy, which waits for every
    worker) after printing which workers this one waits for; if the block has not ended
    after `timeout` seconds, a watchdog process prints one `error:` line naming them and
    ends this process (SIGKILL, exit status 137: its main thread is blocked in
    TensorFlow's C++ code, and nothing has been written yet)."""
    import subprocess  # pylint: disable=import-outside-toplevel

    others = [_address(cluster, kind, i) for kind, hosts in cluster.hosts.items() for i in range(len(hosts))
              if (kind, i) != (cluster.task_type, cluster.task_index)]
    me = _address(cluster, cluster.task_type, cluster.task_index)
    print(f"[multi-worker] {me}: waiting up to {timeout:g} s (--worker_timeout) for {', '.join(others)} to start",
          file=sys.stderr, flush=True)
    message = (f"error: {me} waited {timeout:g} s for {', '.join(others)} to start, in vain; start the same command "
               "on every worker (each with its own --task_index or TF_CONFIG task), check that the host:port addresses "
               "are reachable from each other, or raise --worker_timeout.")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout), message],
                                stdin=subprocess.PIPE)
    try:
        yield
    finally:
        watchdog.stdin.close()
        watchdog.wait()


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def broadcast_from_chief(strategy, variables) -> None:
    """Sets every replica's copy of `variables` to the value of replica 0 (on the chief)."""
    import tensorflow as tf

    variables = list(variables)

    @tf.function
    def chief_values():
        def replica_fn():
            ctx = tf.distribute.get_replica_context()
            first = tf.equal(ctx.replica_id_in_sync_group, 0)
            return [ctx.all_reduce("sum", tf.where(first, tf.convert_to_tensor(v), tf.zeros_like(v)))
                    for v in variables]

        return strategy.run(replica_fn)

    values = chief_values()
    for variable, value in zip(variables, values):
        variable.assign(strategy.experimental_local_results(value)[0])


def shard_by_data(dataset):
    """`dataset` with tf.data's DATA auto-shard policy: every worker takes its rows of each
    global batch (not whole files, which would give the workers different examples)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
