"""Test configuration: quiet TensorFlow and two logical CPU devices.

The CPU is split into two logical devices before TensorFlow initialises, so the
MirroredStrategy tests can run on one machine; everything else runs on /cpu:0.
"""

import robust_dae_tf  # noqa: F401 - first: hides TensorFlow's start-up lines (robust_dae_tf.tf_startup)
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # already initialised by another conftest import
    pass
