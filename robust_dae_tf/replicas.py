"""Per-replica helpers shared by every model's `train_step` under tf.distribute.

* `images_of(batch)`: the image tensor of a batch given as `x`, `(x,)`, `(x, y)` or
  `{"image": x, ...}`, as float32.
* `global_random(sampler, local_shape, seed)`: draws `sampler(global_shape, seed)` for the
  GLOBAL batch (local batch x number of replicas) and returns this replica's rows, so
  one device and N devices see the same random numbers per example (stateless seeds).
* `gather(tensor)`: the global batch of a per-replica tensor (differentiable
  `all_gather` along axis 0; the tensor itself with one replica).
* `mean(value)`: the mean of a per-replica value across replicas (`all_reduce`; the
  value itself with one replica).
* `step_outputs(results)`: a step's {name: scalar} as Keras can return it: under
  MultiWorkerMirroredStrategy Keras reduces a step's outputs with
  `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars, so there they get
  a leading axis of 1 (the reduced values are the same scalars).
"""

from __future__ import annotations

import tensorflow as tf


def images_of(batch) -> tf.Tensor:
    if isinstance(batch, dict):
        batch = batch["image"]
    elif isinstance(batch, (tuple, list)):
        batch = batch[0]
    return tf.convert_to_tensor(batch, tf.float32)


def num_replicas() -> int:
    return tf.distribute.get_replica_context().num_replicas_in_sync


def global_random(sampler, local_shape, seed) -> tf.Tensor:
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync
    if replicas == 1:
        return sampler(local_shape, seed)
    local = local_shape[0]
    global_shape = tf.concat([[local * replicas], local_shape[1:]], axis=0)
    start = local * tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    return sampler(global_shape, seed)[start : start + local]


def gather(tensor) -> tf.Tensor:
    ctx = tf.distribute.get_replica_context()
    if ctx.num_replicas_in_sync == 1:
        return tensor
    return ctx.all_gather(tensor, axis=0)


def mean(value) -> tf.Tensor:
    ctx = tf.distribute.get_replica_context()
    if ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce("mean", value)


def step_outputs(results: dict) -> dict:
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode():
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results
