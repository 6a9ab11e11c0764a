"""The training pipeline: ExampleGen -> Trainer -> Exporter, as `bin/train.py` runs it.

    <workdir>/examples/   Examples artifact (preprocessed train/test splits)
    <workdir>/trainer/    Model artifact (config.json, checkpoints/, logs/, history.json)
    <export_dir>/         SavedModel artifact (+ robust_dae_tf.json metadata)

Before any work the pipeline checks that both directories can be written and takes
their locks (`locking.lock_directory`: `<workdir>.lock`, `<export_dir>.lock`), so a
second run on the same workdir or export target stops at once with the first one named
instead of replacing its files.
"""

from __future__ import annotations

import contextlib
import os

from robust_dae_tf import components, config_lib, data, fileio, locking, training
from robust_dae_tf.errors import ConfigError


def canonical_dataset(name: str) -> str:
    return data.get_spec(name).name


def _nested(inner: str, outer: str) -> bool:
    inner, outer = os.path.realpath(inner), os.path.realpath(outer)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def run_training_pipeline(config, workdir: str, export_dir: str | None, overwrite: bool = False, strategy=None) -> dict:
    """Runs the three components; returns the trainer result plus artifact locations."""
    with config.unlocked():
        config.dataset = canonical_dataset(config.dataset)
    config_lib.validate(config)
    if export_dir and (_nested(export_dir, workdir) or _nested(workdir, export_dir)):
        raise ConfigError(f"--export_dir={export_dir} and --workdir={workdir} overlap; the export would replace "
                          "run files (or the reverse): give them separate directories.")
    fileio.check_writable_directory(workdir, "--workdir")
    if export_dir:
        fileio.check_writable_directory(os.path.dirname(os.path.abspath(export_dir)), "--export_dir")
    with contextlib.ExitStack() as locks:
        locks.enter_context(locking.lock_directory(workdir, "--workdir"))
        if export_dir:
            locks.enter_context(locking.lock_directory(export_dir, "--export_dir"))
            if os.path.exists(export_dir) and not overwrite:
                raise ConfigError(f"export path {export_dir} exists; choose another --export_dir or pass --overwrite.")
        # Logical CPU devices must be configured before TensorFlow runs any op.
        training.configure_cpu_devices(config.train.num_cpu_devices)

        examples = components.ExampleGen(
            config.dataset, config.data.data_dir, config.data.tfds_data_dir, config.data.download
        )({"examples": os.path.join(workdir, "examples")})["examples"]
        trainer = components.Trainer(config, strategy)
        model = trainer({"model": os.path.join(workdir, "trainer")}, examples=examples)["model"]
        result = dict(trainer.result)
        result.update(workdir=workdir, model_dir=model.uri, export_dir=None)
        if export_dir:
            saved = components.Exporter(overwrite)({"saved_model": export_dir}, model=model)["saved_model"]
            result["export_dir"] = saved.uri
    return result


def summary(result: dict) -> str:
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result["final_metrics"].items()))
    lines = [
        f"Trained {result['steps']} steps ({result['num_train_examples']} training images).",
        f"Validation: {metrics}",
        f"Run directory: {result['model_dir']}  (tensorboard --logdir {result['model_dir']}/logs)",
    ]
    if result.get("export_dir"):
        lines.append(f"SavedModel: {result['export_dir']}")
    return "\n".join(lines)
