"""Runs every example of the README section "Evaluating your own autoencoder", in order, in
a temporary directory: the Python blocks in one namespace (as a reader pastes them), the
JSON prior through `adapters.resolve_prior`, and each `python bin/evaluate.py` command as a
subprocess with tiny attack settings appended (absl takes the last value of a flag), so it
runs in seconds; the command of form (a) needs a trained export and is covered by
tests/pipeline. Each command must finish with summary.json naming its model form."""

import json
import os
import re
import shlex

import numpy as np
import pytest

from robust_dae_tf import adapters
from tests.scripts import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Evaluating your own autoencoder"
TINY_FLAGS = ["--num_images=2", "--trials=1", "--budgets=1", "--attack_steps=2", "--attack_restarts=1",
              "--attack_exploration_starts=1", "--pool_size=50", "--skip_classifier", "--skip_fid",
              "--notensorboard", "--attack_xla=false"]  # XLA's compile would be most of a 2-step attack
FORMS = {"my_ae_savedmodel": "signatures", "my_ae.keras": "keras", "my_encoder.keras": "keras_pair",
         "my_encoder_export": "export_pair"}


def section_blocks():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    body = text[start:end if end >= 0 else None]
    return re.findall(r"```(\w+)\n(.*?)```", body, re.S)


def test_the_section_has_an_example_per_form():
    blocks = section_blocks()
    commands = [line for lang, code in blocks if lang == "bash" for line in code.splitlines()
                if line.startswith("python bin/evaluate.py")]
    assert sorted(FORMS) == sorted(next(m for m in FORMS if m in c) for c in commands)
    assert [lang for lang, _ in blocks].count("python") >= 5


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    ran = []
    for lang, code in section_blocks():
        if lang == "python":
            exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own examples
            ran.append("python")
        elif lang == "json":
            prior = adapters.resolve_prior(json.loads(code), 8)
            assert prior["weights"] == [0.5, 0.5] and prior["std"] == 1.0
        elif lang == "bash":
            for line in code.splitlines():
                if not line.startswith("python bin/evaluate.py"):
                    continue
                form = next(FORMS[m] for m in FORMS if m in line)
                out = tmp_path / f"eval_{form}"
                argv = shlex.split(line)[2:] + TINY_FLAGS + [f"--output={out}"]
                proc = run_script("evaluate.py", *argv, timeout=600, cwd=os.getcwd(), env={"PYTHONPATH": ROOT})
                assert proc.returncode == 0, (line, proc.stdout[-1500:], proc.stderr[-3000:])
                summary = json.loads((out / "summary.json").read_text())
                assert summary["model_source"]["form"] == form
                if "--prior=my_prior.json" in line:
                    assert summary["model_source"]["prior"] == "gmm (K=2, D=8)"
                ran.append(form)
    assert sorted(set(ran)) == sorted({"python", *FORMS.values()})
    # The Python examples' results: the per-image values behind the cells, written reports.
    result = namespace["result"]
    damage = result.per_image["max_damage"]["1.0"]["msssim_rec_adv_rec"]
    assert damage.shape == (5,)
    assert result.mean("max_damage", 1.0, "msssim_rec_adv_rec") == pytest.approx(damage.mean())
    assert os.path.isfile(tmp_path / "my_ae_evaluation" / "summary.json")
    assert os.path.isfile(tmp_path / "my_ae_evaluation" / "figures" / "per_image_max_damage.png")
    assert namespace["damage"].shape == (10,)
    assert namespace["adversarial"].loss.shape == (4,)
    # The .keras round trip of our model: same weights, same latents.
    x = namespace["x_test"][:4]
    np.testing.assert_allclose(np.asarray(namespace["reloaded"].encode(x)), np.asarray(namespace["model"].encode(x)),
                               rtol=1e-6, atol=1e-6)
