"""Shared command-line plumbing for the scripts in `bin/`.

* `select_config_file(argv)`: `--dataset=NAME` picks `configs/NAME.py` unless
  `--config=FILE` is given, so `python bin/train.py --dataset=celeb_a
  --config.train.epochs=5` works (ml_collections applies `--config.*` overrides to
  the file chosen here).
* `check_config_flags(argv)`: loads the `--config` file and checks every
  `--config.<field>` override before absl parses the flags, so a missing file, a
  syntax error, a file without `get_config()` or an unknown field is one `error:` line.
* `run_main(main)`: runs an absl main and turns every `UserError` into one line on
  stderr and exit status 1, instead of a stack trace; Ctrl-C / SIGTERM into one line
  saying what was saved (exit 130 / 143).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import signal
import sys

from absl import app

from robust_dae_tf import quiet_tensorflow  # noqa: F401  (moved to the package; also cli.quiet_tensorflow)
from robust_dae_tf.errors import UserError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
DEFAULT_DATASET = "digits"


def _flag_value(argv, name):
    prefix = f"--{name}="
    for i, arg in enumerate(argv):
        if arg.startswith(prefix):
            return arg[len(prefix) :]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def define_model_data_flags() -> None:
    """--model, --trust_model, --dataset, --data_dir, --tfds_data_dir: the flags of every script that
    reads an exported model and its test data (evaluate, check_attacks, benchmark_attacks)."""
    from absl import flags

    flags.DEFINE_string("model", None, "SavedModel directory (written by bin/train.py, or with encode/decode "
                        "signatures); bin/evaluate.py also takes a Keras .keras autoencoder.")
    flags.DEFINE_bool("trust_model", False, "Load --model even if its graphs hold TensorFlow ops an encoder/decoder "
                      "does not need (file I/O, Python callbacks, ...), which are refused by default: a trusted "
                      "model can run any TensorFlow op with your permissions. Only for models from a trusted source.")
    flags.DEFINE_string("dataset", None, "Dataset of the test images (default: the one in the model's metadata).")
    flags.DEFINE_string("data_dir", None, "Local data files (see bin/train.py --data_dir).")
    flags.DEFINE_string("tfds_data_dir", None, "TensorFlow Datasets data_dir.")


def check_model_data_flags() -> None:
    """The checks of the `define_model_data_flags` values that need no TensorFlow (a script
    calls this before its expensive imports; `load_model_and_test_images` calls it too): --model
    is given and is a SavedModel directory, and --dataset, when given, is a known dataset."""
    from absl import flags

    from robust_dae_tf.data import catalog
    from robust_dae_tf.errors import ConfigError
    from robust_dae_tf.pipeline import evaluation_inputs

    flag_values = flags.FLAGS
    if not flag_values.model:
        raise ConfigError("pass --model=<SavedModel directory> (written by bin/train.py --export_dir).")
    evaluation_inputs.saved_model_artifact(flag_values.model)
    if flag_values.dataset:
        catalog.get_spec(flag_values.dataset)


def load_model_and_test_images():
    """The --model SavedModel and its dataset's test split from the flags of
    `define_model_data_flags`: (model, dataset name, images float32 in [0, 1], labels).

    One clear error for a missing, corrupt or incomplete model (metadata JSON, protos,
    variables: any failure while loading names the file or the model directory), a
    missing dataset or a model whose image shape differs."""
    import numpy as np
    import tensorflow as tf
    from absl import flags

    from robust_dae_tf import data, export
    from robust_dae_tf.errors import ConfigError, DataError, ExportError
    from robust_dae_tf.pipeline import evaluation

    flag_values = flags.FLAGS
    check_model_data_flags()
    try:
        export.admit_saved_model(flag_values.model, trust=flag_values.trust_model)  # refuses unsafe ops first
        model = evaluation.load_model(evaluation.saved_model_artifact(flag_values.model))
    except UserError:
        raise
    except Exception as err:  # pylint: disable=broad-except  # whatever loading a damaged model raises
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise ExportError(f"cannot load the SavedModel --model={flag_values.model} ({first}); re-export it "
                          "(bin/train.py --export_dir).") from err
    metadata = model.metadata if isinstance(model.metadata, dict) else {}
    dataset = flag_values.dataset or metadata.get("dataset")
    if not dataset:
        raise ConfigError(f"{flag_values.model} has no dataset in its metadata; pass --dataset.")
    splits = data.load_splits(dataset, data_dir=flag_values.data_dir, tfds_data_dir=flag_values.tfds_data_dir)
    try:
        images, labels = data.take_arrays(splits["test"])
    except tf.errors.OpError:  # a corrupt or wrong-size image file: name it
        raise data.failing_element_error(data.get_spec(dataset), splits["test"], "test", flag_values.data_dir) from None
    images = images.astype(np.float32) / 255.0
    shape = metadata.get("image_shape")
    if shape and tuple(shape) != images.shape[1:]:
        raise DataError(f"the model expects images of shape {tuple(shape)}, --dataset={dataset} has {images.shape[1:]}.")
    return model, dataset, images, labels


def available_configs(config_dir: str = CONFIG_DIR) -> list[str]:
    if not os.path.isdir(config_dir):
        return []
    return sorted(f[:-3] for f in os.listdir(config_dir) if f.endswith(".py") and not f.startswith("_"))


def select_config_file(argv: list[str], config_dir: str = CONFIG_DIR) -> list[str]:
    """Returns argv with `--config=<config_dir>/<dataset>.py` added when no --config is given."""
    if _flag_value(argv, "config") is not None:
        return argv
    from robust_dae_tf import data  # its get_spec imports no TensorFlow (data.catalog)

    dataset = _flag_value(argv, "dataset") or DEFAULT_DATASET
    try:
        name = data.get_spec(dataset).name
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    path = os.path.join(config_dir, f"{name}.py")
    if not os.path.exists(path):
        raise SystemExit(
            f"error: no config file {path} for --dataset={dataset}; available: "
            f"{', '.join(available_configs(config_dir)) or 'none'}; or pass --config=FILE."
        )
    return [argv[0], f"--config={path}", *argv[1:]]


_OVERRIDE = re.compile(r"-{1,2}(?:no)?config\.([^=]+)(?:=.*)?", re.DOTALL)


def _config_error(message: str) -> SystemExit:
    return SystemExit(f"error: {' '.join(message.split())}")


def check_config_flags(argv: list[str]) -> None:
    """Loads the `--config=FILE[:arg]` file the way ml_collections does and checks that
    every `--config.<field>` override names a field of its config. Raises
    SystemExit("error: ...") naming the file or flag; ml_collections would otherwise
    fail inside absl's flag parsing with a stack trace."""
    value = _flag_value(argv, "config")
    if value is None:
        return
    path, _, arg = value.partition(":")
    if not os.path.isfile(path):
        raise _config_error(f"--config={value}: no such file {os.path.abspath(path)!r}; "
                            f"give a config file (e.g. {os.path.join(CONFIG_DIR, DEFAULT_DATASET + '.py')}).")
    try:
        spec = importlib.util.spec_from_file_location("_checked_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise _config_error(f"--config={value}: syntax error in {path}, line {err.lineno}: {err.msg}.") from None
    except Exception as err:  # noqa: BLE001 - the user's file raised: name it and the exception
        raise _config_error(f"--config={value}: {path} fails to load ({type(err).__name__}: {err}).") from None
    if not callable(getattr(module, "get_config", None)):
        raise _config_error(f"--config={value}: {path} defines no get_config(); a config file defines get_config() "
                            "returning an ml_collections.ConfigDict (see configs/digits.py).")
    try:
        config = module.get_config(*([arg] if arg else []))
    except Exception as err:  # noqa: BLE001
        raise _config_error(f"--config={value}: get_config() of {path} failed ({type(err).__name__}: {err}).") from None
    if not hasattr(config, "keys"):
        raise _config_error(f"--config={value}: get_config() of {path} returned {type(config).__name__}, "
                            "not an ml_collections.ConfigDict.")
    for item in argv[1:]:
        if item == "--":
            break
        match = _OVERRIDE.fullmatch(item)
        if not match:
            continue
        node, walked = config, []
        for part in re.sub(r"\[[^\]]*\]", "", match.group(1)).split("."):  # field[0] indexes a field
            fields = list(node.keys()) if hasattr(node, "keys") else []
            if part not in fields:
                where = f"config.{'.'.join(walked)}" if walked else "the config"
                raise _config_error(
                    f"{item.split('=')[0]}: {where} has no field {part!r}; its fields are {', '.join(map(str, fields))} "
                    "(see robust_dae_tf/config_lib.py).")
            node = node[part]
            walked.append(part)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with a failure as one `error:` line instead of absl's
    "FATAL Flags parsing error" (or a stack trace from a flag's own parser)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        raise _config_error(f"{err} (see --help).") from None


def show_progress_messages() -> None:
    """Shows this library's INFO messages (stage starts, resume notes) on stderr and
    raises absl's threshold (where TensorFlow writes its INFO chatter) to WARNING;
    `--verbosity=0` on the command line brings TensorFlow's INFO lines back."""
    from absl import flags
    from absl import logging as absl_logging

    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    library = logging.getLogger("robust_dae_tf")
    library.setLevel(logging.INFO)
    library.addHandler(handler)
    library.propagate = False


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _raise_terminated(signum, frame):
    from robust_dae_tf.errors import Terminated

    raise Terminated()


def interruption_line(err: KeyboardInterrupt, saved: str) -> tuple[str, int]:
    """(the one stderr line, exit status) for Ctrl-C or SIGTERM: what was saved (the
    message of an `errors.Interrupted`, else `saved`) and that the same command resumes."""
    from robust_dae_tf.errors import Interrupted, Terminated

    terminated = isinstance(err, Terminated) or getattr(err, "terminated", False)
    what = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
    message = str(err) if isinstance(err, Interrupted) and str(err) else f"{saved}; run the same command to resume"
    return f"{what}: {message}.", EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def run_main(main, select_config: bool = True, saved_on_interrupt: str = "the work finished so far is kept") -> None:
    """absl `app.run(main)` with UserError -> one line on stderr + exit 1, and so is a full
    disk wherever it happens (`fileio.disk_full_error`, naming the file). With
    `select_config`, `--dataset` picks the config file (scripts with a --config flag).

    Ctrl-C and SIGTERM end in one line saying what was saved (`saved_on_interrupt`, or
    the message of an `errors.Interrupted` the work raised, e.g. the training's checkpoint)
    and that the same command resumes; exit status 130 (Ctrl-C) or 143 (SIGTERM). SIGTERM
    is raised as `errors.Terminated`, a KeyboardInterrupt, in the main thread."""
    quiet_tensorflow()
    signal.signal(signal.SIGTERM, _raise_terminated)

    def guarded(argv):
        show_progress_messages()
        try:
            main(argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except Exception as err:  # noqa: BLE001 - a full disk anywhere (evaluation reports, logs): one line
            from robust_dae_tf import fileio

            if not fileio.is_disk_full(err):
                raise
            path = fileio.path_in_message(err) or os.getcwd()
            print(f"error: {fileio.disk_full_error(err, path)}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt as err:
            line, status = interruption_line(err, saved_on_interrupt)
            print(line, file=sys.stderr)
            sys.exit(status)

    if select_config:
        sys.argv = select_config_file(sys.argv)
        check_config_flags(sys.argv)
    app.run(guarded, flags_parser=_parse_flags)


# ------------------------------------------------------------------ sweeps (bin/sweep.py, bin/reproduce.py)


def define_sweep_flags(default_output: str) -> None:
    """The flags bin/sweep.py and bin/reproduce.py share: the base run (--dataset, with
    --config / --config.<field> from `run_main`), the engine, the output and the
    evaluation settings passed through to every point (--eval=<setting>=<value>, and
    --protocol when the evaluation has protocols)."""
    import dataclasses

    from absl import flags

    from robust_dae_tf.evaluation.settings import EvaluationSettings

    flags.DEFINE_string("dataset", DEFAULT_DATASET, "mnist | fashion_mnist | svhn_cropped | celeb_a | digits; picks "
                        "configs/<dataset>.py unless --config is given.")
    flags.DEFINE_string("data_dir", None, "Local data (see bin/train.py --data_dir).")
    flags.DEFINE_string("tfds_data_dir", None, "TensorFlow Datasets data_dir.")
    flags.DEFINE_integer("epochs", None, "Training epochs of every point (shortcut for --config.train.epochs); "
                         "a rerun with more epochs continues each point's training.")
    flags.DEFINE_string("output", default_output, "Sweep directory: points/<name>/..., sweep.md, sweep.csv, "
                        "sweep_front.png; rerunning the same command skips complete points.")
    flags.DEFINE_enum("engine", "local", ["local", "ray"], "local: points one after another in this process; "
                      "ray: each point one Ray task (pip install .[distributed]).")
    flags.DEFINE_string("ray_address", None, "Join this Ray cluster (e.g. ray://head:10001 or auto) instead of "
                        "starting Ray on this machine's cores.")
    flags.DEFINE_float("cpus_per_point", 1.0, "CPUs Ray reserves for each point's task.")
    flags.DEFINE_multi_string("eval", [], "An evaluation setting for every point, <setting>=<value>, named like "
                              "bin/evaluate.py's flags (e.g. --eval=trials=2 --eval=budgets=1,3); repeatable.")
    flags.DEFINE_float("front_budget", 3.0, "Budget lambda of the robustness axis of the front (maximum-damage "
                       "MS-SSIM at this lambda).")
    if "protocol" in {f.name for f in dataclasses.fields(EvaluationSettings)}:
        flags.DEFINE_string("protocol", None, "Evaluation protocol of every point (bin/evaluate.py --protocol).")


def apply_run_flags(config, **values):
    """Sets `--dataset` (checked against the config file's), --model, --data_dir,
    --tfds_data_dir, --epochs, --num_cpu_devices into `config` when given (None = not
    given); returns it. Shared by bin/train.py and the sweep scripts."""
    from absl import flags

    from robust_dae_tf import data
    from robust_dae_tf.errors import ConfigError

    fields = {"model": "model.variant", "data_dir": "data.data_dir", "tfds_data_dir": "data.tfds_data_dir",
              "epochs": "train.epochs", "num_cpu_devices": "train.num_cpu_devices"}
    with config.unlocked():
        if flags.FLAGS["dataset"].present and config.dataset != data.get_spec(flags.FLAGS.dataset).name:
            raise ConfigError(
                f"--dataset={flags.FLAGS.dataset} contradicts the config file's dataset {config.dataset!r}; drop one "
                "of them.")
        for flag, value in values.items():
            if value is not None:
                section, key = fields[flag].split(".")
                config[section][key] = value
    return config


def sweep_inputs(**extra_run_flags):
    """(base config, EvaluationSettings) from the flags of `define_sweep_flags` (+ e.g. --model)."""
    import os as os_module

    from absl import flags

    from robust_dae_tf.pipeline import experiments

    f = flags.FLAGS
    data_dir = os_module.path.abspath(f.data_dir) if f.data_dir else None  # the same path in every worker
    config = apply_run_flags(f.config, data_dir=data_dir, tfds_data_dir=f.tfds_data_dir, epochs=f.epochs,
                             **extra_run_flags)
    fixed = {"protocol": f.protocol} if "protocol" in f and f.protocol is not None else {}
    settings = experiments.parse_settings(f.eval, examples=None, **fixed)
    return config, settings
