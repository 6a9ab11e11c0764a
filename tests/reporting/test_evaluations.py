"""Tests of robust_dae_tf.reporting.evaluations: writing, reading and comparing evaluation directories."""

import csv
import io
import json
import os
import shutil

import pytest

from robust_dae_tf import reporting
from robust_dae_tf.reporting import evaluations
from robust_dae_tf.errors import ConfigError, UserError
from tests.reporting.fakes import fake_robustness, expected, rows, _fake_eval_dir, _write, _classifier, _paper_tables


def test_compare_builds_one_table_from_eval_dirs(tmp_path):
    a, b = rows()
    dirs = [_fake_eval_dir(tmp_path, "a", a), _fake_eval_dir(tmp_path, "b", b)]
    result = reporting.compare(dirs, digits=4)
    parsed = reporting.parse_markdown_table(result["markdown"])
    assert [r["Model"] for r in parsed] == ["model A", "model B"]
    cell = parsed[1]["Max damage: MS-SSIM(x~_r, x~_a) ↑ λ=5"]
    assert float(cell.split(" ± ")[0]) == pytest.approx(expected(b["robustness"], "max_damage",
                                                                 "msssim_rec_adv_rec", 5)[0], abs=5e-5)
    table3 = reporting.parse_markdown_table(result["markdown"].split("Table 3")[1])
    assert table3[0]["clean acc. (%) ↑"] == "96.08" and table3[1]["clean acc. (%) ↑"] == "—"
    assert len(list(csv.DictReader(io.StringIO(result["table1_csv"])))) == 2
    # Same model name twice: disambiguated by directory.
    dup = reporting.compare([dirs[0], _fake_eval_dir(tmp_path, "a2", a)])
    assert [r["name"] for r in dup["rows"]] == ["model A [a]", "model A [a2]"]


def test_compare_ignores_incomplete_reports(tmp_path):
    incomplete = _fake_eval_dir(tmp_path, "partial", rows()[0], complete=False, summary=False)
    with pytest.raises(UserError, match="no complete evaluation report"):
        reporting.compare([incomplete])
    with pytest.raises(UserError, match="not a directory"):
        reporting.compare([str(tmp_path / "missing")])


# (damage done to a complete evaluation of rows()[0] (all three parts run), words of the error)
DAMAGED_EVALUATIONS = {
    "truncated_report": (lambda d: _write(f"{d}/robustness/robustness.json", '{"latent": {"1.0"'),
                         r"robustness/robustness.json is not readable JSON \(.*\); the evaluation is damaged: "
                         r"rerun bin/evaluate.py --output="),
    "report_removed": (lambda d: os.remove(f"{d}/fid/fid.json"), "fid/fid.json is missing"),
    "report_not_an_object": (lambda d: _write(f"{d}/classifier/classifier.json", "[0.9]"),
                             "classifier.json holds a JSON list, not a report object"),
    "metrics_of_the_wrong_type": (lambda d: _write(f"{d}/robustness/robustness.json", '{"latent": [1, 3]}'),
                                  'robustness.json: "latent" is a list'),
    "budgets_of_the_wrong_type": (lambda d: _write(f"{d}/robustness/robustness.json", '{"latent": {"1.0": 0.5}}'),
                                  '"latent" must map budgets to metrics'),
    "truncated_marker": (lambda d: _write(f"{d}/fid/artifact.json", '{"type": "Fid'),
                         "fid/artifact.json is not readable JSON"),
    "recorded_part_missing": (lambda d: shutil.rmtree(f"{d}/classifier"),
                              r"classifier is missing or incomplete \(no artifact.json\), but .*summary.json records "
                              r"the classifier part as run \(a skipped part is null there, --skip_classifier\)"),
    "recorded_part_unmarked": (lambda d: os.remove(f"{d}/fid/artifact.json"),
                               "fid is missing or incomplete .* records the fid part as run"),
    "unfinished": (lambda d: os.remove(f"{d}/summary.json"),
                   "summary.json is missing: bin/evaluate.py did not finish this evaluation"),
    "truncated_summary": (lambda d: _write(f"{d}/summary.json", '{"name": "mo'), "summary.json is not readable JSON"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_EVALUATIONS))
def test_compare_refuses_half_written_evaluations(tmp_path, damage):
    """A part the evaluation ran but whose report is gone or damaged is an error naming
    the file, never a "—" as for a part skipped on purpose."""
    good = _fake_eval_dir(tmp_path, "good", rows()[1])
    spoiled = _fake_eval_dir(tmp_path, "spoiled", rows()[0])
    spoil, words = DAMAGED_EVALUATIONS[damage]
    spoil(spoiled)
    with pytest.raises(UserError, match=words) as err:
        reporting.compare([good, spoiled])
    assert spoiled in str(err.value)


def test_compare_shows_parts_skipped_on_purpose(tmp_path):
    """null in summary.json = skipped: "—" (no error), even without the part's directory;
    a part skipped by the last run but complete from an earlier one is still shown."""
    model_b = rows()[1]  # classifier and FD skipped
    skipped = _fake_eval_dir(tmp_path, "skipped", model_b)
    assert not os.path.exists(os.path.join(skipped, "classifier"))
    [row] = reporting.compare([skipped])["rows"]
    assert row["classifier"] is None and row["fid"] is None and row["robustness"]
    earlier = _fake_eval_dir(tmp_path, "earlier", rows()[0])
    _write(os.path.join(earlier, "summary.json"), json.dumps(dict(rows()[0], fid=None)))  # rerun with --skip_fid
    assert reporting.compare([earlier])["rows"][0]["fid"]["value"] == 39.3712


def test_start_evaluation_and_write_report_bracket_an_evaluation(tmp_path, monkeypatch):
    """summary.json (what compare trusts) is removed when an evaluation starts and written
    only after everything else, so an interrupted write_report leaves none."""
    directory = _fake_eval_dir(tmp_path, "eval", rows()[1])
    reporting.start_evaluation(directory)
    reporting.start_evaluation(directory)  # nothing to remove: fine
    assert not os.path.exists(os.path.join(directory, "summary.json"))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(evaluations, "write_tensorboard", broken)  # where write_report looks it up
    with pytest.raises(OSError):
        reporting.write_report(directory, rows()[1])
    assert os.path.exists(os.path.join(directory, "table1.md"))
    assert not os.path.exists(os.path.join(directory, "summary.json"))
    with pytest.raises(UserError, match="did not finish"):
        reporting.load_evaluation(directory)
    monkeypatch.undo()
    files = reporting.write_report(directory, rows()[1], tensorboard=False)["files"]
    assert files[-1] == os.path.join(directory, "summary.json")
    assert reporting.load_evaluation(directory)["name"] == "model B"


def test_compare_puts_both_protocols_side_by_side(tmp_path):
    """A --protocol=both directory (<dir>/strong, <dir>/paper) gives two rows of one model,
    each naming its protocol in Table 1 / Table 3 (Markdown and CSV) and in the paper
    comparison; --protocol keeps one; a summary from before protocols counts as strong."""
    strong = reporting.make_row("robust (mnist)", fake_robustness(0.01), _classifier(0.96, 0.8), None)
    paper = reporting.make_row("robust (mnist)", fake_robustness(0.3), _classifier(0.96, 0.9), None, protocol="paper")
    model = {"name": "robust (mnist)", "variant": "robust", "dataset": "mnist"}
    both = tmp_path / "mnist_robust"
    _fake_eval_dir(both, "strong", strong, model=model)
    _fake_eval_dir(both, "paper", paper, model=model)
    old = reporting.make_row("gmm_dae (mnist)", fake_robustness(0.05), None, None)
    old_dir = _fake_eval_dir(tmp_path, "old", old, model={**model, "name": "gmm_dae (mnist)", "variant": "gmm_dae"})
    summary = json.loads((tmp_path / "old" / "summary.json").read_text())
    del summary["protocol"], summary["split"]  # as written before protocols existed
    (tmp_path / "old" / "summary.json").write_text(json.dumps(summary))

    result = reporting.compare([str(both), old_dir], digits=4, paper="mnist")
    table1 = reporting.parse_markdown_table(result["markdown"])
    assert [(r["Model"], r["Protocol"]) for r in table1] == [
        ("robust (mnist)", "strong"), ("robust (mnist)", "paper"), ("gmm_dae (mnist)", "strong")]
    column = "Latent: MS-SSIM(x_r, x~_a) ↓ λ=1"
    assert [float(r[column].split(" ± ")[0]) for r in table1] == pytest.approx(
        [expected(row["robustness"], "latent", "msssim_target_adv_rec", 1)[0] for row in (strong, paper, old)],
        abs=5e-5)
    table3 = reporting.parse_markdown_table(result["markdown"].split("### Table 3")[1])
    assert [(r["Protocol"], r["λ=1 acc. (%) ↑"]) for r in table3[:2]] == [("strong", "80.00"), ("paper", "90.00")]
    csv1 = list(csv.DictReader(io.StringIO(result["table1_csv"])))
    assert [(r["model"], r["protocol"], r["split"]) for r in csv1] == [
        ("robust (mnist)", "strong", "test"), ("robust (mnist)", "paper", "test"), ("gmm_dae (mnist)", "strong", "test")]
    assert [r["protocol"] for r in csv.DictReader(io.StringIO(result["table3_csv"]))][:2] == ["strong", "paper"]
    _, paper_table1, _ = _paper_tables(result["markdown"])
    assert [r["Model"] for r in paper_table1] == [
        "GMM-DAE, paper", "gmm_dae (mnist) [strong]", "Ours, paper", "robust (mnist) [strong]",
        "robust (mnist) [paper]"]

    only = reporting.compare([str(both), old_dir], protocol="paper")
    assert [(r["name"], r["protocol"]) for r in only["rows"]] == [("robust (mnist)", "paper")]
    with pytest.raises(UserError, match="none of the evaluations was run under the paper protocol"):
        reporting.compare([old_dir], protocol="paper")
    with pytest.raises(ConfigError, match="--protocol='weak' is unknown"):
        reporting.compare([old_dir], protocol="weak")


def test_report_names_protocol_and_split(tmp_path):
    row = reporting.make_row("tiny (digits)", fake_robustness(0.1), None, None, protocol="paper",
                             split="heldout_train")
    written = reporting.write_report(str(tmp_path), row, tensorboard=False)
    assert "Evaluation protocol: paper (the paper's attacker" in written["markdown"]
    assert "Attacked images: held-out training images" in written["markdown"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["protocol"] == "paper" and summary["split"] == "heldout_train"
    assert reporting.parse_markdown_table((tmp_path / "table1.md").read_text())[0]["Protocol"] == "paper"
