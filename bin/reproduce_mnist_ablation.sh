#!/usr/bin/env bash
# Kept for the commands in docs/results/mnist.md: bin/reproduce.py on MNIST (MODELS, EPOCHS, OUT as before).
exec "${PYTHON:-python}" "$(dirname "$0")/reproduce.py" --dataset=mnist --data_dir="${1:?usage: $0 <directory with the MNIST .gz files>}" --output="${OUT:-runs}/reproduce_mnist" --models="$(m=${MODELS:-gmm_dae augmented robust}; echo ${m// /,})" ${EPOCHS:+--epochs=$EPOCHS} --config.train.verbose=2
