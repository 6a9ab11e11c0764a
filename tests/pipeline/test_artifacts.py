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


class _Counted(artifacts.Component):
    """Two outputs from a setting; counts its runs; `fail_after_first` stops it between them."""

    inputs = {"source": "Examples"}
    outputs = {"report": "Report", "model": "Model"}
    tag = "counted"

    def __init__(self, setting=1, fail_after_first=False, described=True):
        self.setting, self.fail_after_first, self.described, self.runs = setting, fail_after_first, described, 0

    def fingerprint(self, source):
        return {"source": source.properties, "setting": self.setting} if self.described else None

    def run(self, output_uris, source):
        self.runs += 1
        report = artifacts.write_artifact(output_uris["report"], "Report", self.name, {"setting": self.setting},
                                          lambda tmp: open(os.path.join(tmp, "r.json"), "w").write("{}"))
        if self.fail_after_first:
            raise RuntimeError("killed between the outputs")
        model = artifacts.write_artifact(output_uris["model"], "Model", self.name, {}, lambda tmp: None)
        return {"report": report, "model": model}


def _call(component, tmp_path, source_props=None):
    source = artifacts.Artifact("Examples", str(tmp_path / "src"), source_props or {"n": 1})
    return component({"report": str(tmp_path / "report"), "model": str(tmp_path / "model")}, source=source)


def test_a_component_with_a_fingerprint_reuses_its_finished_outputs(tmp_path, capsys):
    first = _Counted()
    out = _call(first, tmp_path)
    assert first.runs == 1
    digest = out["report"].properties[artifacts.FINGERPRINT]
    assert len(digest) == 64 and out["model"].properties[artifacts.FINGERPRINT] == digest
    marker = json.load(open(tmp_path / "report" / artifacts.MARKER))  # in the marker, beside the run's properties
    assert marker["properties"] == {"setting": 1, artifacts.FINGERPRINT: digest} and marker["producer"] == "_Counted"
    capsys.readouterr()
    again = _Counted()
    reused = _call(again, tmp_path)
    assert again.runs == 0  # not run: the same inputs and settings
    assert {k: (a.type_name, a.uri, a.properties) for k, a in reused.items()} == {
        k: (a.type_name, a.uri, a.properties) for k, a in out.items()}
    assert capsys.readouterr().out == (f"[counted] reusing the finished Report in {tmp_path / 'report'} and Model in "
                                       f"{tmp_path / 'model'} (same model, data and settings)\n")
    # Another setting or another input: run again (and the new outputs are reused after that).
    for component, props in ((_Counted(setting=2), None), (_Counted(setting=2), {"n": 2}), (_Counted(), None)):
        _call(component, tmp_path, props)
        assert component.runs == 1
    repeat = _Counted()
    _call(repeat, tmp_path)
    assert repeat.runs == 0
    # Without a fingerprint (the default): always run, and the markers record none.
    plain = _Counted(described=False)
    out = _call(plain, tmp_path)
    assert plain.runs == 1 and artifacts.FINGERPRINT not in out["report"].properties


@pytest.mark.parametrize("damage", ["missing_marker", "damaged_marker", "no_fingerprint", "other_type",
                                    "killed_between_outputs"])
def test_a_component_runs_again_when_an_output_is_not_a_finished_one(tmp_path, damage):
    _call(_Counted(), tmp_path)
    report_marker = tmp_path / "report" / artifacts.MARKER
    if damage == "missing_marker":
        os.remove(tmp_path / "model" / artifacts.MARKER)
    elif damage == "damaged_marker":
        report_marker.write_text('{"type": "Report", "propert')
    elif damage == "no_fingerprint":  # complete, but written by a run that did not finish the stage
        payload = json.loads(report_marker.read_text())
        del payload["properties"][artifacts.FINGERPRINT]
        report_marker.write_text(json.dumps(payload))
    elif damage == "other_type":
        payload = json.loads(report_marker.read_text())
        report_marker.write_text(json.dumps({**payload, "type": "Model"}))
    else:  # a run with another setting rewrote the report, then stopped before the model
        with pytest.raises(RuntimeError):
            _call(_Counted(setting=2, fail_after_first=True), tmp_path)
        # Its report has no fingerprint yet (added once every output is written): no match for either setting.
        assert artifacts.FINGERPRINT not in json.loads(report_marker.read_text())["properties"]
    rerun = _Counted()
    out = _call(rerun, tmp_path)
    assert rerun.runs == 1
    assert artifacts.read_artifact(str(tmp_path / "report"), "Report").properties == out["report"].properties
    after = _Counted()
    _call(after, tmp_path)
    assert after.runs == 0


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
