"""`Autoencoder`: the one base class of every model (ours and the baselines).

The contract a model implements, and what the trainer, exporter, TensorBoard logger
and benchmark rely on (nothing else is probed):

* `compute_terms(x, *, training, step, stream) -> (objective, values)`: the ONE hook
  a model writes. `x` is this replica's batch of images `[N, H, W, C]` in [0, 1];
  `objective` is the scalar to minimise for this replica's batch (NOT yet divided by
  the number of replicas); `values` holds one scalar per name in `metric_names`.
  `step` and `stream` select the random numbers (`step_seeds`): training uses
  (optimizer step, 0), evaluation (0, 1).
* `metric_names`: the names `compute_terms` reports, in display order; one
  `keras.metrics.Mean` tracker each (`trackers`, exposed by the `metrics` property).
  A subclass whose names depend on its settings passes `metric_names=` to `__init__`.
* `metrics_are_global`: False (default) when `values` are means over this replica's
  batch, which `update_metrics` averages across replicas; True when `compute_terms`
  already returns values of the global batch (the GMM models compute their statistics
  on all-gathered latents and all-reduce their reconstruction term themselves).
* `train_step` / `test_step` (Keras hooks, not overridden by models): the objective is
  divided by the number of replicas because Keras sums gradients across replicas.
  Under mixed precision (`train.mixed_precision`, a `LossScaleOptimizer`) the objective
  is scaled before the gradient; a step whose scaled gradients overflow is skipped by
  the optimizer (its scale halves) but still counted in `optimizer.iterations`, so
  steps, random streams and resume positions stay aligned with the batches.
* Randomness is stateless: `step_seeds(step, stream, num)` derives `num` seeds from
  (`seed`, step, stream); `global_random` draws for the global batch and returns this
  replica's rows, so one device and N devices see the same numbers per example and a
  resumed run continues the same random stream.
* `encoder` / `decoder` (keras.Models, what the SavedModel exports), `encode`,
  `decode`, `call` (decode(encode(x))).
* `prior`: an object with `to_dict()`, `num_modes`, `sample_mode(k, n, seed)` (the
  exporter records `to_dict()`; the logger decodes samples of each mode).
* `loss_weights`: dict of floats recorded in the SavedModel metadata.
* `export_metadata()`: extra model details for the metadata ({} = none).
* `prepare(num_train_examples)`: called by the trainer before training with the size
  of the training set (no-op by default; beta-TCVAE's estimator needs it).
* `is_adversarial`: True for models whose training crafts perturbed inputs; they
  implement `adversarial_examples(x, z, seed)` (TensorBoard preview).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from robust_dae_tf import replicas


class Autoencoder(keras.Model):
    """Base of every autoencoder: metric trackers, train/test steps around
    `compute_terms`, per-step stateless seeds and cross-replica reduction.

    Args:
      encoder: keras.Model images -> latents `[N, D]` (what `encode` and the export use).
      decoder: keras.Model latents -> images in [0, 1].
      prior: the latent prior (see the module docstring).
      seed: base seed of the per-step stateless random streams.
      loss_weights: dict recorded in the SavedModel metadata.
      metric_names: overrides the class's `metric_names` for this instance.
    """

    #: Metric names, in display order ("loss" first); subclasses set their own.
    metric_names: tuple = ("loss",)
    #: True when `compute_terms` returns global-batch values (no cross-replica mean).
    metrics_are_global: bool = False
    #: True for models whose training crafts adversarial inputs.
    is_adversarial: bool = False

    def __init_subclass__(cls, **kwargs):
        # Every model class is known to Keras by name, so `keras.models.load_model` finds it
        # (`get_config` / `from_config`: a saved model is rebuilt from its run config).
        super().__init_subclass__(**kwargs)
        keras.saving.register_keras_serializable(package="robust_dae_tf")(cls)

    def __init__(self, encoder, decoder, prior, *, seed: int = 0, loss_weights=None, metric_names=None, **kwargs):
        super().__init__(**kwargs)
        if metric_names is not None:
            self.metric_names = tuple(metric_names)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.seed = int(seed)
        self.loss_weights = {k: float(v) for k, v in (loss_weights or {}).items()}
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    # -- saving (model.save("x.keras") / keras.models.load_model) ---------------------

    def remember_build(self, config, image_shape) -> None:
        """Records the run config and image shape `models.build_model` built this model from."""
        from robust_dae_tf import config_lib  # pylint: disable=import-outside-toplevel

        self._build_args = {"run_config": config_lib.to_json(config), "image_shape": [int(d) for d in image_shape]}

    def get_config(self):
        """The run config (JSON) and image shape the model was built from: `from_config`
        rebuilds the same architecture and Keras then loads the weights into it. Only models
        made by `models.build_model` (or `robust_dae_tf.build_model`) can be saved this way."""
        if getattr(self, "_build_args", None) is None:
            raise NotImplementedError(
                f"{type(self).__name__} was not built by robust_dae_tf.models.build_model(config, image_shape), so "
                "its config is unknown; build it with robust_dae_tf.build_model(...) to save it as .keras, or "
                "export it with robust_dae_tf.export.export_saved_model.")
        return {"name": self.name, **self._build_args}

    @classmethod
    def from_config(cls, config):
        import json  # pylint: disable=import-outside-toplevel

        from robust_dae_tf import config_lib  # pylint: disable=import-outside-toplevel
        from robust_dae_tf.models import registry  # pylint: disable=import-outside-toplevel  (not the package: no cycle)

        run_config, image_shape = config_lib.from_dict(json.loads(config["run_config"])), tuple(config["image_shape"])
        model = registry.build(run_config, image_shape)  # what models.build_model does
        model.remember_build(run_config, image_shape)
        return model

    def compile_from_config(self, config):
        # Keras compiles a loaded model, then loads the optimizer's variables: build them first
        # so the saved optimizer state (moments, step count) is restored, not skipped.
        super().compile_from_config(config)
        if getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    # -- inference ------------------------------------------------------------------

    def encode(self, images, training=False):
        return self.encoder(images, training=training)

    def decode(self, latents, training=False):
        return self.decoder(latents, training=training)

    def call(self, images, training=False):
        return self.decode(self.encode(images, training=training), training=training)

    # -- randomness -----------------------------------------------------------------

    def step_seeds(self, step, stream: int, num: int):
        """`num` independent stateless seeds (each shape [2]) for this step and stream
        (stream 0 = training, 1 = evaluation; models may use further streams)."""
        base = tf.stack([tf.constant(self.seed + 7919 * stream, tf.int64), tf.cast(step, tf.int64)])
        return tf.unstack(tf.random.experimental.stateless_split(base, num=num))

    #: `replicas.global_random`: draws for the global batch, returns this replica's rows.
    global_random = staticmethod(replicas.global_random)

    # -- the contract's hooks ---------------------------------------------------------

    def compute_terms(self, x, *, training: bool, step, stream: int):
        """(objective for this replica's batch, {metric name: scalar}); see the module docstring."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_terms")

    def prepare(self, num_train_examples: int) -> None:
        """Called by the trainer before training with the number of training examples."""

    def export_metadata(self) -> dict:
        """Model details recorded under "model_details" in the SavedModel metadata."""
        return {}

    def adversarial_examples(self, x, z, seed, training=False):
        """Inputs the training crafts for images `x` (latents `z`) from the stateless
        `seed`; only models with `is_adversarial` implement it."""
        raise NotImplementedError(f"{type(self).__name__} crafts no adversarial examples")

    # -- Keras hooks ------------------------------------------------------------------

    def update_metrics(self, values):
        """Feeds `values` (one per metric name) to the trackers, averaged across replicas
        unless `metrics_are_global`; returns the trackers' results."""
        if set(values) != set(self.metric_names):
            raise ValueError(
                f"{type(self).__name__}.compute_terms returned {sorted(values)}, "
                f"but metric_names is {list(self.metric_names)}."
            )
        for name in self.metric_names:
            value = tf.stop_gradient(values[name])
            if not self.metrics_are_global:
                value = replicas.mean(value)
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        x = replicas.images_of(data)
        optimizer = self.optimizer
        loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        step = tf.identity(optimizer.iterations) if loss_scaled else optimizer.iterations
        with tf.GradientTape() as tape:
            objective, values = self.compute_terms(x, training=True, step=step, stream=0)
            objective = objective / replicas.num_replicas()
            if loss_scaled:
                objective = optimizer.scale_loss(objective)
        variables = self.trainable_variables
        grads = tape.gradient(objective, variables)
        optimizer.apply(grads, variables)
        if loss_scaled:  # a skipped (overflowing) step counts too
            optimizer.iterations.assign(step + 1)
        return replicas.step_outputs(self.update_metrics(values))

    def test_step(self, data):
        x = replicas.images_of(data)
        _, values = self.compute_terms(x, training=False, step=0, stream=1)
        return replicas.step_outputs(self.update_metrics(values))
