"""How a model is evaluated, as arrays and datasets in, results out (no files): the Table 1
robustness protocol (`robustness`), the Table 3 downstream classifier (`downstream`), the
Frechet distance of prior samples (`fidelity`) and the settings of an evaluation, checked
once where they are built (`settings`). The TFX-style components that run them on
artifacts and write the reports are in `robust_dae_tf.pipeline.evaluation`."""
