"""robust_dae_tf.reporting.paper (formerly paper_results) against the paper's own table lines.

PAPER_TABLES is a copy of the table lines of the paper's text
(../shared/paper/000_de1321b0c751bb81.txt: Table 1 lines 146-186, Table 2 lines
190-195, Table 3 lines 204-210; empty lines dropped, tabs written as two spaces), so the
test runs where that file is absent. It is parsed here independently of the module and
every number of every row is compared.
"""

import re

import pytest

from robust_dae_tf import config_lib
from robust_dae_tf.reporting import paper as paper_results

PAPER_TABLES = r"""
MNIST  Latent space attack            Maximum damage attack            FID(\downarrow)
  MSSSIM(x_r, \tilde{x}_a)(\downarrow)      MSSSIM(x_r, x_a)(\downarrow)      MSSSIM(\tilde{x}_r, \tilde{x}_a)(\uparrow)      MSSSIM(x_r, x_a)(\downarrow)
  1  3  5  1  3  5  1  3  5  1  3  5
VAE  0.55  0.78  0.89  0.99  0.94  0.87  0.64  0.27  0.08  0.98  0.93  0.86  43.21
β -VAE  0.52  0.73  0.86  0.99  0.92  0.86  0.65  0.36  0.22  0.98  0.93  0.87  42.72
β -TCVAE  0.53  0.69  0.83  0.98  0.92  0.86  0.73  0.38  0.28  0.98  0.93  0.87  45.61
LipschitzVAE  0.50  0.68  0.79  0.98  0.93  0.89  0.75  0.41  0.33  0.98  0.93  0.86  59.45
SE  0.49  0.62  0.68  0.98  0.92  0.86  0.90  0.60  0.54  0.98  0.93  0.86  47.34
AAVE  0.49  0.59  0.62  0.98  0.91  0.83  0.80  0.65  0.59  0.97  0.89  0.86  48.47
Ours  0.38  0.47  0.60  0.95  0.90  0.80  0.92  0.82  0.69  0.98  0.89  0.78  39.37
FASHIONMNIST  Latent space attack            Maximum damage attack            FID(\downarrow)
  MSSSIM(x_r, \tilde{x}_a)(\downarrow)      MSSSIM(x_r, x_a)(\downarrow)      MSSSIM(\tilde{x}_r, \tilde{x}_a)(\uparrow)      MSSSIM(x_r, x_a)(\downarrow)
  1  3  5  1  3  5  1  3  5  1  3  5
VAE  0.61  0.65  0.71  0.98  0.91  0.82  0.58  0.29  0.13  0.99  0.94  0.87  70.22
β -VAE  0.59  0.61  0.68  0.98  0.92  0.82  0.66  0.32  0.15  0.99  0.94  0.85  73.82
β -TCVAE  0.55  0.58  0.64  0.98  0.92  0.82  0.69  0.35  0.27  0.99  0.94  0.87  73.94
LipschitzVAE  0.43  0.59  0.67  0.99  0.94  0.89  0.71  0.34  0.30  0.99  0.94  0.88  79.45
SE  0.24  0.43  0.53  0.98  0.92  0.81  0.90  0.62  0.43  0.99  0.94  0.86  72.29
AAVE  0.32  0.34  0.35  0.98  0.92  0.82  0.79  0.52  0.45  0.99  0.94  0.92  74.45
Ours  0.22  0.26  0.39  0.97  0.91  0.81  0.92  0.77  0.63  0.97  0.92  0.83  64.89
SVHN  Latent space attack            Maximum damage attack            FID(\downarrow)
  MSSSIM(x_r, \tilde{x}_a)(\downarrow)      MSSSIM(x_r, x_a)(\downarrow)      MSSSIM(\tilde{x}_r, \tilde{x}_a)(\uparrow)      MSSSIM(x_r, x_a)(\downarrow)
  1  3  5  1  3  5  1  3  5  1  3  5
VAE  0.46  0.76  0.87  0.98  0.87  0.77  0.55  0.46  0.38  0.99  0.93  0.89  58.98
β -VAE  0.44  0.70  0.81  0.99  0.89  0.77  0.52  0.49  0.47  0.99  0.93  0.88  61.65
β -TCVAE  0.39  0.65  0.72  0.99  0.89  0.77  0.63  0.60  0.54  0.99  0.92  0.88  62.59
LipschitzVAE  0.35  0.62  0.71  0.99  0.89  0.76  0.66  0.65  0.55  0.99  0.93  0.88  65.58
SE  0.19  0.33  0.34  0.99  0.92  0.81  0.79  0.69  0.60  0.99  0.96  0.94  61.28
Ours  0.16  0.26  0.28  0.98  0.77  0.76  0.84  0.79  0.75  0.98  0.92  0.86  38.89
CELEBA  Latent space attack            Maximum damage attack            FID(\downarrow)
  MSSSIM(x_r, \tilde{x}_a)(\downarrow)      MSSSIM(x_r, x_a)(\downarrow)      MSSSIM(\tilde{x}_r, \tilde{x}_a)(\uparrow)      MSSSIM(x_r, x_a)(\downarrow)
  1  3  5  1  3  5  1  3  5  1  3  5
VAE  0.59  0.60  0.66  0.99  0.99  0.97  0.64  0.58  0.55  0.99  0.98  0.98  69.48
β -VAE  0.55  0.58  0.64  0.99  0.99  0.97  0.68  0.60  0.59  0.99  0.98  0.97  75.65
β -TCVAE  0.54  0.51  0.61  0.99  0.99  0.97  0.76  0.71  0.64  0.98  0.99  0.96  75.11
LipschitzVAE  0.49  0.51  0.55  0.99  0.98  0.97  0.73  0.70  0.64  0.98  0.98  0.96  77.89
SE  0.27  0.31  0.34  0.99  0.98  0.96  0.97  0.91  0.76  0.99  0.98  0.98  72.68
Ours  0.28  0.29  0.32  0.99  0.98  0.96  0.97  0.93  0.80  0.99  0.98  0.96  51.98
Method  Latent space attack      Maximum damage attack      FID(\downarrow)
  MSSSIM(x_r, \tilde{x}_a)(\downarrow)      MSSSIM(\tilde{x}_r, \tilde{x}_a)(\uparrow)
  1  3  5  1  3  5
GMM-DAE [27]  0.54  0.70  0.82  0.75  0.37  0.30  38.89
Augmented  0.47  0.59  0.71  0.79  0.56  0.54  40.16
Ours  0.38  0.47  0.60  0.92  0.82  0.69  39.37
Method  MNIST    FASHIONMNIST    SVHN
  clean acc.(\uparrow)  $\lambda = 1(\uparrow)$  clean acc.(\uparrow)  $\lambda = 1(\uparrow)$  clean acc.(\uparrow)  $\lambda = 1(\uparrow)$
VAE  92.16  58.85  80.65  59.15  61.70  25.63
β -TCVAE  93.02  61.06  81.25  60.77  62.02  30.12
LipschitzVAE  90.78  62.00  80.50  62.06  60.99  33.99
SE  93.81  68.65  80.10  66.83  62.36  44.40
Ours  96.08  91.78  85.96  78.86  70.96  59.20
"""

# The paper's row names -> our model names (independent of paper_results.PAPER_NAMES).
NAMES = {"VAE": "vae", "β -VAE": "beta_vae", "β -TCVAE": "beta_tcvae", "LipschitzVAE": "lipschitz_vae",
         "SE": "se", "AAVE": "avae", "Ours": "robust", "GMM-DAE [27]": "gmm_dae", "Augmented": "augmented"}
BLOCKS = {"MNIST": "mnist", "FASHIONMNIST": "fashion_mnist", "SVHN": "svhn_cropped", "CELEBA": "celeb_a"}
ROW = re.compile(r"^(?P<name>.+?)\s+(?P<numbers>\d+\.\d+(?:\s+\d+\.\d+)*)$")


def parse_paper_tables(text: str) -> dict:
    """{"table1": {dataset: {model: [12 MS-SSIM + FID]}}, "table2": {model: [6 + FID]},
    "table3": {model: [6 accuracies: MNIST clean, λ=1, FASHIONMNIST ..., SVHN ...]}}."""
    tables: dict = {"table1": {}, "table2": {}, "table3": {}}
    current = None
    for line in text.strip().splitlines():
        first = line.split()[0]
        if first in BLOCKS and "Latent space attack" in line:
            current = tables["table1"].setdefault(BLOCKS[first], {})
        elif first == "Method":
            current = tables["table3" if "FASHIONMNIST" in line else "table2"]
        else:
            match = ROW.match(line.strip())
            if match:
                current[NAMES[match["name"]]] = [float(v) for v in match["numbers"].split()]
    return tables


PARSED = parse_paper_tables(PAPER_TABLES)


def test_fixture_parses_into_every_row_of_the_three_tables():
    assert {d: len(rows) for d, rows in PARSED["table1"].items()} == {
        "mnist": 7, "fashion_mnist": 7, "svhn_cropped": 6, "celeb_a": 6}
    assert all(len(v) == 13 for rows in PARSED["table1"].values() for v in rows.values())
    assert list(PARSED["table2"]) == ["gmm_dae", "augmented", "robust"]
    assert all(len(v) == 7 for v in PARSED["table2"].values())
    assert list(PARSED["table3"]) == ["vae", "beta_tcvae", "lipschitz_vae", "se", "robust"]
    assert all(len(v) == 6 for v in PARSED["table3"].values())
    # Spot check of the parser itself: the MNIST VAE row as printed.
    assert PARSED["table1"]["mnist"]["vae"] == [0.55, 0.78, 0.89, 0.99, 0.94, 0.87, 0.64, 0.27, 0.08,
                                                0.98, 0.93, 0.86, 43.21]


def test_table1_matches_the_paper_row_for_row():
    assert set(paper_results.TABLE1) == set(PARSED["table1"]) == set(paper_results.DATASETS)
    for dataset, rows in PARSED["table1"].items():
        assert list(paper_results.TABLE1[dataset]) == list(rows), dataset  # same models, paper order
        for model, numbers in rows.items():
            entry = paper_results.TABLE1[dataset][model]
            got = (list(entry["latent_target_vs_adv_rec"]) + list(entry["latent_input_vs_adv"])
                   + list(entry["max_damage_rec_vs_adv_rec"]) + list(entry["max_damage_input_vs_adv"])
                   + [entry["fid"]])
            assert got == numbers, (dataset, model)


def test_table2_matches_the_paper_and_table1():
    assert list(paper_results.TABLE2) == ["mnist"]
    for model, numbers in PARSED["table2"].items():
        entry = paper_results.TABLE2["mnist"][model]
        assert set(entry) == {"latent_target_vs_adv_rec", "max_damage_rec_vs_adv_rec", "fid"}
        got = list(entry["latent_target_vs_adv_rec"]) + list(entry["max_damage_rec_vs_adv_rec"]) + [entry["fid"]]
        assert got == numbers, model
    # "Ours" of Table 2 is Table 1's MNIST "Ours" in the shared columns.
    ours = PARSED["table1"]["mnist"]["robust"]
    assert PARSED["table2"]["robust"] == ours[0:3] + ours[6:9] + ours[12:]


def test_table3_matches_the_paper():
    columns = {"mnist": 0, "fashion_mnist": 2, "svhn_cropped": 4}
    assert set(paper_results.TABLE3) == set(columns)
    for dataset, col in columns.items():
        assert list(paper_results.TABLE3[dataset]) == list(PARSED["table3"]), dataset
        for model, numbers in PARSED["table3"].items():
            entry = paper_results.TABLE3[dataset][model]
            assert [entry["clean"], entry["lambda_1"]] == numbers[col:col + 2], (dataset, model)


@pytest.mark.parametrize("dataset, model, column, values", [
    ("mnist", "robust", "max_damage_rec_vs_adv_rec", (0.92, 0.82, 0.69)),
    ("fashion_mnist", "avae", "max_damage_input_vs_adv", (0.99, 0.94, 0.92)),
    ("svhn_cropped", "robust", "latent_input_vs_adv", (0.98, 0.77, 0.76)),
    ("celeb_a", "beta_tcvae", "latent_target_vs_adv_rec", (0.54, 0.51, 0.61)),
])
def test_spot_checks(dataset, model, column, values):
    assert paper_results.TABLE1[dataset][model][column] == values


def test_keys_are_our_model_and_metric_names():
    from robust_dae_tf import reporting

    assert set(paper_results.MODEL_ORDER) == set(config_lib.MODELS)
    metrics = {(attack, metric) for attack, metric, _, _ in reporting.table1_columns()}
    assert set(paper_results.COLUMNS.values()) == metrics
    assert paper_results.PAPER_NAMES["avae"] == "AAVE" and paper_results.PAPER_NAMES["robust"] == "Ours"
    mnist = paper_results.robustness_rows("mnist")
    assert list(mnist) == ["vae", "beta_vae", "beta_tcvae", "lipschitz_vae", "se", "avae", "robust",
                           "gmm_dae", "augmented"]
    assert mnist["robust"] is paper_results.TABLE1["mnist"]["robust"]
    assert "gmm_dae" not in paper_results.robustness_rows("svhn_cropped")
