#!/usr/bin/env python
"""Train a GMM-regularized deterministic autoencoder (or a baseline) and export it as a SavedModel.

Runs the pipeline ExampleGen -> Trainer -> Exporter:

    python bin/train.py                                   # robust model on the embedded digits
    python bin/train.py --dataset=mnist --data_dir=/path/with/mnist/gz/files
    python bin/train.py --dataset=celeb_a --model=gmm_dae --config.train.epochs=5
    python bin/train.py --config=configs/mnist.py --config.loss.coupling=0.9
    python bin/train.py --dataset=mnist --model=beta_tcvae --config.beta_tcvae.beta=6

Artifacts: <workdir>/examples (preprocessed data), <workdir>/trainer (config.json,
checkpoints/, logs/ for TensorBoard, history.json) and the SavedModel in
<export_dir> (default saved_models/<run_name>). Rerunning the same command resumes
from the newest checkpoint. On several machines, run the same command on each with
TF_CONFIG set, or with --worker_hosts=h0:port,h1:port --task_index=N (README,
"Training on several machines"). Watch training with `tensorboard --logdir <workdir>`.
"""

import os

from absl import flags
from ml_collections import config_flags

from robust_dae_tf import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (default: configs/<dataset>.py).", lock_config=True)
flags.DEFINE_string("dataset", cli.DEFAULT_DATASET, "mnist | fashion_mnist | svhn_cropped | celeb_a | digits (embedded).")
flags.DEFINE_string(
    "model", None,
    "Model: gmm_dae | augmented | robust (ours) or a baseline: vae | beta_vae | beta_tcvae | lipschitz_vae | se | avae "
    "(default: the config's model.variant).",
)
flags.DEFINE_string("data_dir", None, "Local data: a directory of MNIST-format IDX .gz files, an .npz file or an image folder.")
flags.DEFINE_string("tfds_data_dir", None, "TensorFlow Datasets data_dir (default: ~/tensorflow_datasets).")
flags.DEFINE_string("run_name", None, "Run name (default: <dataset>_<model>).")
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<run_name>).")
flags.DEFINE_string("export_dir", None, "SavedModel directory (default: saved_models/<run_name>).")
flags.DEFINE_bool("overwrite", False, "Replace an existing SavedModel at --export_dir.")
flags.DEFINE_bool("export", True, "Export a SavedModel after training.")
flags.DEFINE_integer("epochs", None, "Shortcut for --config.train.epochs.")
flags.DEFINE_integer("num_cpu_devices", None, "Shortcut for --config.train.num_cpu_devices (MirroredStrategy on CPU).")
flags.DEFINE_string("worker_hosts", None, "Multi-worker training: host:port of every worker, comma-separated, the same "
                    "on every worker (builds TF_CONFIG; or set TF_CONFIG yourself). Worker 0 is the chief.")
flags.DEFINE_integer("task_index", None, "Multi-worker training: this worker's position in --worker_hosts (0 = chief).")
flags.DEFINE_float("worker_timeout", 600.0, "Multi-worker training: seconds to wait for every worker to start before "
                   "giving up with an error.")


def main(argv):
    from robust_dae_tf import multiworker, pipeline
    from robust_dae_tf.errors import ConfigError, UserError

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags are written --name=value (see --help).")

    if FLAGS.worker_hosts is not None or FLAGS.task_index is not None:
        if FLAGS.worker_hosts is None or FLAGS.task_index is None:
            raise ConfigError("multi-worker training needs both --worker_hosts=host:port,host:port and --task_index=N.")
        if os.environ.get("TF_CONFIG", "").strip():
            raise ConfigError("TF_CONFIG is set and --worker_hosts/--task_index are given; use one of them.")
        os.environ["TF_CONFIG"] = multiworker.tf_config_for(FLAGS.worker_hosts, FLAGS.task_index)
    multiworker.cluster_from_env()  # a malformed TF_CONFIG is one error line, before any work
    if not FLAGS.worker_timeout > 0:
        raise ConfigError(f"--worker_timeout={FLAGS.worker_timeout:g} must be > 0 (seconds).")

    config = cli.apply_run_flags(FLAGS.config, model=FLAGS.model, data_dir=FLAGS.data_dir,
                                 tfds_data_dir=FLAGS.tfds_data_dir, epochs=FLAGS.epochs,
                                 num_cpu_devices=FLAGS.num_cpu_devices)
    run_name = FLAGS.run_name or f"{config.dataset}_{config.model.variant}"
    workdir = FLAGS.workdir or os.path.join("runs", run_name)
    export_dir = (FLAGS.export_dir or os.path.join("saved_models", run_name)) if FLAGS.export else None
    result = pipeline.run_training_pipeline(config, workdir, export_dir, overwrite=FLAGS.overwrite,
                                            worker_timeout=FLAGS.worker_timeout)
    print(pipeline.summary(result))


if __name__ == "__main__":
    cli.run_main(main, saved_on_interrupt="the prepared data and checkpoints written so far are kept in --workdir")
