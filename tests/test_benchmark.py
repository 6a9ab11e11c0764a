"""bin/benchmark.py (benchmarks/training_benchmark.py) in its smallest mode produces a well-formed table.

Run as a user runs it (a subprocess; nothing in tests/ imports benchmarks/): one tiny step
per configuration, so this checks the harness, not the speed."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_smallest_run_writes_one_row_per_configuration_with_onednn_per_worker(tmp_path):
    output = tmp_path / "table.md"
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    argv = [sys.executable, os.path.join(REPO, "bin", "benchmark.py"), "--variants=gmm_dae", "--xla=off",
            "--onednn=both", "--torch=skip", "--steps=1", "--repeats=1", "--warmup_steps=1", "--batch_size=4",
            "--steps_per_execution=1", f"--output={output}"]
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    text = output.read_text()
    assert text in run.stdout  # the table printed is the table written
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| implementation |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    assert columns[:4] == ["implementation", "model", "XLA", "oneDNN"] and "images/s (median)" in columns
    assert set(lines[header + 1].replace("|", "").split()) <= {"---", "---:"}
    rows = []
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(columns), line
        rows.append(dict(zip(columns, cells)))
    # One row per (model, XLA, oneDNN): each oneDNN setting ran in its own TensorFlow worker.
    assert sorted((r["implementation"], r["model"], r["XLA"], r["oneDNN"]) for r in rows) == [
        ("tensorflow", "gmm_dae", "off", "off"), ("tensorflow", "gmm_dae", "off", "on")]
    for row in rows:
        assert float(row["images/s (median)"]) > 0 and float(row["ms/step"]) > 0
    assert "workload mnist (fc nets, images 32x32x1), batch 4" in text
    assert "- oneDNN on vs off, gmm_dae, XLA off: step " in text
    assert "PyTorch comparison skipped (--torch=skip)." in text
