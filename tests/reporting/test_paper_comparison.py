"""Tests of robust_dae_tf.reporting.paper's comparison with the published numbers (bin/compare.py --paper)."""


import pytest

from robust_dae_tf import reporting
from robust_dae_tf.reporting import paper as paper_results
from robust_dae_tf.errors import ConfigError
from tests.reporting.fakes import fake_robustness, rows, _fake_eval_dir, _classifier, _compare_cli, _paper_tables


# (header prefix of paper_comparison_markdown, attack, metric of our reports)
PAPER_COLUMNS = (
    ("Latent: MS-SSIM(x_r, x~_a) ↓", "latent", "msssim_target_adv_rec"),
    ("Max damage: MS-SSIM(x~_r, x~_a) ↑", "max_damage", "msssim_rec_adv_rec"),
    ("Latent: MS-SSIM(x, x_a)", "latent", "msssim_input_adv"),
    ("Max damage: MS-SSIM(x, x_a)", "max_damage", "msssim_input_adv"),
)


# The paper's MNIST numbers as printed (Tables 1 and 2), in the column order above.
PAPER_MNIST = {
    "VAE, paper": ["0.55", "0.78", "0.89", "0.64", "0.27", "0.08", "0.99", "0.94", "0.87", "0.98", "0.93", "0.86",
                   "43.21 (FID)"],
    "GMM-DAE, paper": ["0.54", "0.70", "0.82", "0.75", "0.37", "0.30"] + ["—"] * 6 + ["38.89 (FID)"],
    "Augmented, paper": ["0.47", "0.59", "0.71", "0.79", "0.56", "0.54"] + ["—"] * 6 + ["40.16 (FID)"],
    "Ours, paper": ["0.38", "0.47", "0.60", "0.92", "0.82", "0.69", "0.95", "0.90", "0.80", "0.98", "0.89", "0.78",
                    "39.37 (FID)"],
}


def _paper_eval_dirs(tmp_path):
    """(directory, row) per evaluation, in a deliberately shuffled order: robust, an unknown
    model, augmented twice (different numbers, same name), gmm_dae without λ=5, vae,
    and a fashion_mnist model."""
    specs = [
        ("robust", "mnist", "mnist_robust", fake_robustness(0.01), _classifier(0.9608, 0.875),
         {"name": "FD-mnist-classifier", "value": 36.7412}),
        ("tiny", "mnist", "mnist_tiny", fake_robustness(0.02), None, None),
        ("augmented", "mnist", "mnist_augmented_a", fake_robustness(0.03), _classifier(0.9635, 0.654, budget=2.0),
         {"name": "FD-mnist-classifier", "value": 33.51}),
        ("gmm_dae", "mnist", "mnist_gmm_dae", fake_robustness(0.04, budgets=(1.0, 3.0)), _classifier(0.9612, 0.746),
         {"name": "FID-keras-inception", "value": 37.8}),
        ("augmented", "mnist", "mnist_augmented_b", fake_robustness(0.05), None,
         {"name": "FD-mnist-classifier", "value": 30.0}),
        ("vae", "mnist", "mnist_vae", fake_robustness(0.06), _classifier(0.9622, 0.688),
         {"name": "FD-mnist-classifier", "value": 61.83}),
        ("robust", "fashion_mnist", "fashion_robust", fake_robustness(0.07), None, None),
    ]
    out = []
    for variant, dataset, dirname, robustness, classifier, fid in specs:
        name = f"{variant} ({dataset})"
        row = reporting.make_row(name, robustness, classifier, fid)
        model = {"name": name, "variant": variant, "dataset": dataset, "path": f"/models/{dirname}"}
        out.append((_fake_eval_dir(tmp_path, dirname, row, model=model), row))
    return out


def _our_cells(row):
    """Expected "mean ± std" values of our row in the comparison's column order (None: no budget)."""
    cells = []
    for _, attack, metric in PAPER_COLUMNS:
        for b in (1, 3, 5):
            stat = row["robustness"][attack].get(str(float(b)), {}).get(metric)
            cells.append(None if stat is None else (stat["mean"], stat["std"]))
    return cells


def test_paper_comparison_rows_order_and_cells(tmp_path):
    evals = _paper_eval_dirs(tmp_path)
    result = reporting.compare([d for d, _ in evals], digits=4, paper="mnist")
    part, table1, table3 = _paper_tables(result["markdown"])
    # The usual tables come first, unchanged.
    assert result["markdown"].index("### Table 1") < result["markdown"].index("### Comparison with the paper")
    assert [r["Model"] for r in table1] == [
        "VAE, paper", "vae (mnist) [strong]",
        "GMM-DAE, paper", "gmm_dae (mnist) [strong]",
        "Augmented, paper", "augmented (mnist) [mnist_augmented_a] [strong]", "augmented (mnist) [mnist_augmented_b] [strong]",
        "Ours, paper", "robust (mnist) [strong]",
        "tiny (mnist) [strong]",  # unknown model: last, no paper row
    ]
    header = list(table1[0])
    budget_columns = [f"{title} λ={b}" for title, _, _ in PAPER_COLUMNS for b in (1, 3, 5)]
    assert header == ["Model"] + budget_columns + ["FD/FID ↓"]
    by_name = {r["Model"]: [r[h] for h in header[1:]] for r in table1}
    # Paper rows: exactly the published numbers ("—" where Table 2 has no column).
    for name, cells in PAPER_MNIST.items():
        assert by_name[name] == cells, name
    # Our rows: our evaluation data.
    rows = {reporting.load_evaluation(d)["name"] + " [strong]": row for d, row in evals}
    for name in ("vae (mnist) [strong]", "gmm_dae (mnist) [strong]", "robust (mnist) [strong]", "tiny (mnist) [strong]"):
        for got, want in zip(by_name[name][:-1], _our_cells(rows[name])):
            if want is None:
                assert got == "—", name
            else:
                mean, std = (float(v) for v in got.split(" ± "))
                assert (mean, std) == pytest.approx(want, abs=5e-5), name
    for name, directory in (("augmented (mnist) [mnist_augmented_a] [strong]", "mnist_augmented_a"),
                            ("augmented (mnist) [mnist_augmented_b] [strong]", "mnist_augmented_b")):
        row = dict(evals)[str(tmp_path / directory)]
        assert [float(c.split(" ± ")[0]) for c in by_name[name][:-1]] == pytest.approx(
            [m for m, _ in _our_cells(row)], abs=5e-5)
    # Missing budget λ=5 of gmm_dae: "—" in each group's λ=5 column.
    assert [by_name["gmm_dae (mnist) [strong]"][i] for i in (2, 5, 8, 11)] == ["—"] * 4
    assert "—" not in by_name["gmm_dae (mnist) [strong]"][:2]
    # FD cells name the feature extractor.
    assert by_name["robust (mnist) [strong]"][-1] == "36.74 (FD-mnist-classifier)"
    assert by_name["gmm_dae (mnist) [strong]"][-1] == "37.80 (FID-keras-inception)"
    assert by_name["tiny (mnist) [strong]"][-1] == "—"
    # The fashion_mnist model is left out and said so.
    assert "robust (fashion_mnist)" not in by_name
    assert "Left out (evaluated on another dataset than MNIST): robust (fashion_mnist)." in part

    # Table 3: models with classifier reports only, paper row first where the paper has one.
    assert [r["Model"] for r in table3] == [
        "VAE, paper", "vae (mnist) [strong]", "gmm_dae (mnist) [strong]", "augmented (mnist) [mnist_augmented_a] [strong]",
        "Ours, paper", "robust (mnist) [strong]"]
    cells = {r["Model"]: (r["clean acc. (%) ↑"], r["λ=1 acc. (%) ↑"]) for r in table3}
    assert cells["VAE, paper"] == ("92.16", "58.85") and cells["Ours, paper"] == ("96.08", "91.78")
    assert cells["vae (mnist) [strong]"] == ("96.22", "68.80") and cells["robust (mnist) [strong]"] == ("96.08", "87.50")
    assert cells["augmented (mnist) [mnist_augmented_a] [strong]"] == ("96.35", "65.40 (λ=2)")  # not the paper's λ
    assert "The paper's Table 3 has no row for: GMM-DAE, Augmented." in part


def test_paper_comparison_other_datasets_and_unpublished_models():
    row = reporting.make_row("avae (svhn_cropped)", fake_robustness(0.0), _classifier(0.7, 0.5),
                             {"name": "FD-svhn_cropped-classifier", "value": 50.0})
    row["robustness"]["model"] = {"variant": "avae", "dataset": "svhn_cropped"}
    se = reporting.make_row("se (svhn_cropped)", fake_robustness(0.1), _classifier(0.6, 0.4), None, protocol="paper")
    se["classifier"]["model"] = {"variant": "se", "dataset": "svhn_cropped"}  # metadata in any report
    markdown = reporting.paper_comparison_markdown([row, se], "svhn_cropped", digits=2)
    table1 = reporting.parse_markdown_table(markdown)
    # SVHN has no AAVE row in Table 1: no paper row for it, and a note; SE keeps the paper order.
    assert [r["Model"] for r in table1] == ["SE, paper", "se (svhn_cropped) [paper]", "avae (svhn_cropped) [strong]"]
    assert table1[0]["FD/FID ↓"] == "61.28 (FID)" and table1[0]["Latent: MS-SSIM(x, x_a) λ=3"] == "0.92"
    assert "no SVHN row for: AAVE" in markdown
    table3 = reporting.parse_markdown_table(markdown.split("(Table 3)")[1])
    assert table3[0] == {"Model": "SE, paper", "clean acc. (%) ↑": "62.36", "λ=1 acc. (%) ↑": "44.40"}
    # CelebA: Table 1 only; the paper has no Table 3 column for it.
    row["robustness"]["model"] = {"variant": "robust", "dataset": "celeb_a"}
    celeb = reporting.paper_comparison_markdown([row], "celeb_a")
    assert reporting.parse_markdown_table(celeb)[0]["FD/FID ↓"] == "51.98 (FID)"
    assert [r["Model"] for r in reporting.parse_markdown_table(celeb.split("(Table 3)")[1])] == ["avae (svhn_cropped) [strong]"]
    assert "The paper's Table 3 has no CELEBA column." in celeb
    # Rows without metadata (e.g. built by hand) are unknown models: no paper rows.
    plain = reporting.paper_comparison_markdown(rows(), "mnist")
    assert [r["Model"] for r in reporting.parse_markdown_table(plain)] == ["model A [strong]", "model B [strong]"]


def test_paper_comparison_rejects_unknown_datasets(tmp_path):
    with pytest.raises(ConfigError, match="choose one of mnist, fashion_mnist, svhn_cropped, celeb_a"):
        reporting.paper_comparison_markdown(rows(), "svhn")
    # compare checks the name before reading any directory.
    with pytest.raises(ConfigError, match="no results for dataset 'digits'"):
        reporting.compare([str(tmp_path / "missing")], paper="digits")
    assert set(paper_results.DATASETS) == {"mnist", "fashion_mnist", "svhn_cropped", "celeb_a"}


def test_compare_cli_paper_flag(tmp_path):
    dirs = [d for d, _ in _paper_eval_dirs(tmp_path)]
    output = tmp_path / "cmp.md"
    proc = _compare_cli(*dirs, "--paper=mnist", f"--output={output}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in (proc.stdout, output.read_text()):
        assert "### Table 1 (robustness, fidelity)" in text
        _, table1, table3 = _paper_tables(text)
        assert [r["Model"] for r in table1][:2] == ["VAE, paper", "vae (mnist) [strong]"]
        assert [table1[0][h] for h in list(table1[0])[1:]] == PAPER_MNIST["VAE, paper"]
        assert table3[0]["Model"] == "VAE, paper"
    # Without the flag: no comparison.
    plain = _compare_cli(*dirs)
    assert plain.returncode == 0 and "Comparison with the paper" not in plain.stdout
    # A bad value: one "error:" line naming the flag and the choices, exit status 1, nothing printed.
    for bad in ("--paper=svhn", "--paper="):
        proc = _compare_cli(*dirs, bad)
        assert proc.returncode == 1
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --paper must be one of mnist, fashion_mnist, "
                                                       "svhn_cropped, celeb_a"), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
