"""Per-replica helpers: batch unpacking, global-batch random draws, gathering, means."""

import numpy as np
import tensorflow as tf

from robust_dae_tf import replicas
from tests.helpers import two_cpu_strategy


def test_images_of_accepts_every_batch_layout():
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for batch in (x, (x,), (x, np.zeros(2)), [x, 1], {"image": x, "label": 0}):
        out = replicas.images_of(batch)
        assert out.dtype == tf.float32
        np.testing.assert_array_equal(out, x.astype(np.float32))


def test_global_random_gives_each_replica_its_rows_of_the_single_device_draw():
    seed = tf.constant([3, 4], tf.int64)
    single = replicas.global_random(tf.random.stateless_normal, tf.constant([8, 2]), seed).numpy()
    strategy = two_cpu_strategy()

    def per_replica():
        draw = replicas.global_random(tf.random.stateless_normal, tf.constant([4, 2]), seed)
        return draw, replicas.gather(draw), replicas.mean(tf.reduce_mean(draw))

    draws, gathered, means = strategy.run(tf.function(per_replica))
    local = [t.numpy() for t in strategy.experimental_local_results(draws)]
    np.testing.assert_array_equal(np.concatenate(local), single)
    for g in strategy.experimental_local_results(gathered):
        np.testing.assert_array_equal(g.numpy(), single)
    for m in strategy.experimental_local_results(means):  # each replica gets the mean over both
        np.testing.assert_allclose(m.numpy(), single.mean(), rtol=1e-6)
    assert replicas.num_replicas() == 1 and replicas.gather(tf.ones([3])).shape == (3,)
    assert float(replicas.mean(tf.constant(2.5))) == 2.5
