"""Tests for robust_dae_tf.pipeline.artifacts (markers, artifacts written last, the Component
contract) and for the pipeline package itself."""

import json
import os
import subprocess
import sys

import pytest

from robust_dae_tf.errors import UserError
from robust_dae_tf.pipeline import artifacts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\x89PNG\x00\xff", b"[1, 2]", b'{"type": "Examples", "properties": [1]}'],
    ids=["invalid_json", "binary", "list", "properties_not_a_dict"],
)
def test_damaged_marker_is_one_user_error_naming_it(tmp_path, content):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "artifact.json").write_bytes(content)
    with pytest.raises(UserError) as info:
        artifacts.read_artifact(str(tmp_path / "examples"), "Examples")
    assert str(tmp_path / "examples" / "artifact.json") in str(info.value)
    assert "damaged" in str(info.value)


def test_incomplete_artifact_is_never_consumed(tmp_path):
    (tmp_path / "examples").mkdir()
    with pytest.raises(UserError, match="not a complete Examples artifact"):
        artifacts.read_artifact(str(tmp_path / "examples"), "Examples")


def test_write_artifact_writes_the_marker_last_and_nothing_on_failure(tmp_path):
    seen = {}

    def write(tmp):
        (open(os.path.join(tmp, "report.json"), "w")).write("{}")
        seen["marker_before_files_done"] = os.path.exists(os.path.join(tmp, artifacts.MARKER))

    out = artifacts.write_artifact(str(tmp_path / "part"), "Report", "Test", {"n": 1}, write)
    assert seen == {"marker_before_files_done": False}
    assert sorted(os.listdir(out.uri)) == ["artifact.json", "report.json"]
    assert artifacts.read_artifact(out.uri, "Report").properties == {"n": 1}
    assert json.load(open(os.path.join(out.uri, "artifact.json")))["producer"] == "Test"

    def fail(tmp):
        open(os.path.join(tmp, "half.json"), "w").write("{")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        artifacts.write_artifact(str(tmp_path / "part"), "Report", "Test", {"n": 2}, fail)
    assert os.listdir(tmp_path) == ["part"]  # the earlier complete artifact is kept, no temp directory
    assert artifacts.read_artifact(str(tmp_path / "part"), "Report").properties == {"n": 1}


class _Copy(artifacts.Component):
    inputs = {"source": "Examples"}
    outputs = {"copy": "Examples"}

    def run(self, output_uris, source):
        return {"copy": artifacts.write_artifact(output_uris["copy"], "Examples", self.name, source.properties,
                                                 lambda tmp: None)}


def test_components_check_their_declared_inputs_and_outputs(tmp_path):
    source = artifacts.Artifact("Examples", str(tmp_path / "src"), {"k": 1})
    with pytest.raises(UserError, match="_Copy needs input artifact 'source' \\(Examples\\)"):
        _Copy()({"copy": str(tmp_path / "c")})
    with pytest.raises(UserError, match="input 'source' must be Examples, got Model"):
        _Copy()({"copy": str(tmp_path / "c")}, source=artifacts.Artifact("Model", "x"))
    with pytest.raises(UserError, match=r"writes outputs \['copy'\], got \['other'\]"):
        _Copy()({"other": str(tmp_path / "c")}, source=source)
    assert not os.path.exists(tmp_path / "c")
    out = _Copy()({"copy": str(tmp_path / "c")}, source=source)["copy"]
    assert artifacts.read_artifact(out.uri, "Examples").properties == {"k": 1}


def test_the_pipeline_package_reexports_lazily_without_tensorflow():
    """bin/evaluate.py checks its flags before TensorFlow is imported (a wrong flag fails in a second)."""
    code = ("import sys\n"
            "from robust_dae_tf import pipeline\n"
            "from robust_dae_tf.pipeline import evaluation\n"
            "assert pipeline.EvaluationSettings is evaluation.EvaluationSettings\n"
            "assert pipeline.read_artifact is pipeline.artifacts.read_artifact\n"
            "print('tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
    from robust_dae_tf import pipeline
    from robust_dae_tf.pipeline import training

    assert pipeline.run_training_pipeline is training.run_training_pipeline
    assert set(pipeline.__all__) <= set(dir(pipeline))
    with pytest.raises(AttributeError):
        pipeline.no_such_name  # noqa: B018
