"""Published numbers of the paper this project reproduces, as plain data, and our evaluations
side by side with them (`paper_comparison_markdown`, bin/compare.py --paper=<dataset>).

Source: A. Saseendran, K. Skubch, S. Falkner, M. Keuper, "Trading off Image Quality
for Robustness is not Necessary with Regularized Deterministic Autoencoders",
NeurIPS 2022 (text in ../shared/paper/000_de1321b0c751bb81.txt):

* Table 1 (robustness and fidelity on MNIST, FASHIONMNIST, SVHN, CELEBA): per model,
  MS-SSIM at the budgets λ = 1, 3, 5 of
  - latent space attack, MS-SSIM(x_r, x~_a), x_r = target image (↓ = more robust),
  - latent space attack, the column printed "MS-SSIM(x_r, x_a)" (↓ in the paper),
    which compares the clean input x with the adversarial input x_a (values 0.76-0.99;
    the text: "how similar the adversarial images are to the original image"),
  - maximum damage attack, MS-SSIM(x~_r, x~_a), x~_r = reconstruction of x (↑),
  - maximum damage attack, MS-SSIM(x_r, x_a) = MS-SSIM(x, x_a) (↓ in the paper),
  and the FID of generated images (↓). SVHN and CELEBA have no AAVE row.
* Table 2 (ablation, MNIST only): GMM-DAE [27], Augmented (eqs. 7, 8) and Ours, with
  only the latent MS-SSIM(x_r, x~_a), the maximum damage MS-SSIM(x~_r, x~_a) and FID.
  Its "Ours" row equals Table 1's MNIST "Ours" row in these columns.
* Table 3 (downstream MLP classifier on the latent space, MNIST, FASHIONMNIST, SVHN):
  clean accuracy and accuracy under the latent space attack (eq. 12) at λ = 1, in %,
  for VAE, β-TCVAE, LipschitzVAE, SE and Ours only.

Values are as printed (two decimals, no standard deviations although the caption
says 10 trials of 100 images). Keys are this project's model names
(`config_lib.MODELS`): the paper's "AAVE" (the text calls it AVAE, [5]) is `avae`,
its "Ours" is `robust`, GMM-DAE is `gmm_dae`. Dataset keys are this project's dataset
names (SVHN = `svhn_cropped`, CELEBA = `celeb_a`).
"""

from robust_dae_tf.attacks.config import budget_key
from robust_dae_tf.attacks.objectives import INPUT_MSSSIM, LATENT_OBJECTIVE, MAX_DAMAGE_OBJECTIVE
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.reporting.tables import (_accuracies, _attacked_cell, _budget_label, _cell, _fd, _markdown,
                                            model_metadata, row_protocol)

BUDGETS = (1, 3, 5)
DATASETS = ("mnist", "fashion_mnist", "svhn_cropped", "celeb_a")
DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "FASHIONMNIST", "svhn_cropped": "SVHN", "celeb_a": "CELEBA"}

# Our model name -> the name printed in the paper's tables; also the paper's row order
# (Table 1 baselines, then the Table 2 ablation models, then the proposed model).
PAPER_NAMES = {
    "vae": "VAE",
    "beta_vae": "β-VAE",
    "beta_tcvae": "β-TCVAE",
    "lipschitz_vae": "LipschitzVAE",
    "se": "SE",
    "avae": "AAVE",
    "gmm_dae": "GMM-DAE",
    "augmented": "Augmented",
    "robust": "Ours",
}
MODEL_ORDER = tuple(PAPER_NAMES)

# Table 1/2 column key -> (attack, metric key of our robustness reports; the names are the
# objectives' own, see robust_dae_tf.attacks.objectives and reporting.table1_columns).
COLUMNS = {
    "latent_target_vs_adv_rec": (LATENT_OBJECTIVE.name, LATENT_OBJECTIVE.main_metric),
    "latent_input_vs_adv": (LATENT_OBJECTIVE.name, INPUT_MSSSIM),
    "max_damage_rec_vs_adv_rec": (MAX_DAMAGE_OBJECTIVE.name, MAX_DAMAGE_OBJECTIVE.main_metric),
    "max_damage_input_vs_adv": (MAX_DAMAGE_OBJECTIVE.name, INPUT_MSSSIM),
}

# Table 1: dataset -> model -> column -> (λ=1, λ=3, λ=5); "fid" -> FID.
TABLE1 = {
    "mnist": {  # block "MNIST"
        "vae": {  # VAE
            "latent_target_vs_adv_rec": (0.55, 0.78, 0.89),
            "latent_input_vs_adv": (0.99, 0.94, 0.87),
            "max_damage_rec_vs_adv_rec": (0.64, 0.27, 0.08),
            "max_damage_input_vs_adv": (0.98, 0.93, 0.86),
            "fid": 43.21,
        },
        "beta_vae": {  # β-VAE
            "latent_target_vs_adv_rec": (0.52, 0.73, 0.86),
            "latent_input_vs_adv": (0.99, 0.92, 0.86),
            "max_damage_rec_vs_adv_rec": (0.65, 0.36, 0.22),
            "max_damage_input_vs_adv": (0.98, 0.93, 0.87),
            "fid": 42.72,
        },
        "beta_tcvae": {  # β-TCVAE
            "latent_target_vs_adv_rec": (0.53, 0.69, 0.83),
            "latent_input_vs_adv": (0.98, 0.92, 0.86),
            "max_damage_rec_vs_adv_rec": (0.73, 0.38, 0.28),
            "max_damage_input_vs_adv": (0.98, 0.93, 0.87),
            "fid": 45.61,
        },
        "lipschitz_vae": {  # LipschitzVAE
            "latent_target_vs_adv_rec": (0.50, 0.68, 0.79),
            "latent_input_vs_adv": (0.98, 0.93, 0.89),
            "max_damage_rec_vs_adv_rec": (0.75, 0.41, 0.33),
            "max_damage_input_vs_adv": (0.98, 0.93, 0.86),
            "fid": 59.45,
        },
        "se": {  # SE
            "latent_target_vs_adv_rec": (0.49, 0.62, 0.68),
            "latent_input_vs_adv": (0.98, 0.92, 0.86),
            "max_damage_rec_vs_adv_rec": (0.90, 0.60, 0.54),
            "max_damage_input_vs_adv": (0.98, 0.93, 0.86),
            "fid": 47.34,
        },
        "avae": {  # AAVE
            "latent_target_vs_adv_rec": (0.49, 0.59, 0.62),
            "latent_input_vs_adv": (0.98, 0.91, 0.83),
            "max_damage_rec_vs_adv_rec": (0.80, 0.65, 0.59),
            "max_damage_input_vs_adv": (0.97, 0.89, 0.86),
            "fid": 48.47,
        },
        "robust": {  # Ours
            "latent_target_vs_adv_rec": (0.38, 0.47, 0.60),
            "latent_input_vs_adv": (0.95, 0.90, 0.80),
            "max_damage_rec_vs_adv_rec": (0.92, 0.82, 0.69),
            "max_damage_input_vs_adv": (0.98, 0.89, 0.78),
            "fid": 39.37,
        },
    },
    "fashion_mnist": {  # block "FASHIONMNIST"
        "vae": {  # VAE
            "latent_target_vs_adv_rec": (0.61, 0.65, 0.71),
            "latent_input_vs_adv": (0.98, 0.91, 0.82),
            "max_damage_rec_vs_adv_rec": (0.58, 0.29, 0.13),
            "max_damage_input_vs_adv": (0.99, 0.94, 0.87),
            "fid": 70.22,
        },
        "beta_vae": {  # β-VAE
            "latent_target_vs_adv_rec": (0.59, 0.61, 0.68),
            "latent_input_vs_adv": (0.98, 0.92, 0.82),
            "max_damage_rec_vs_adv_rec": (0.66, 0.32, 0.15),
            "max_damage_input_vs_adv": (0.99, 0.94, 0.85),
            "fid": 73.82,
        },
        "beta_tcvae": {  # β-TCVAE
            "latent_target_vs_adv_rec": (0.55, 0.58, 0.64),
            "latent_input_vs_adv": (0.98, 0.92, 0.82),
            "max_damage_rec_vs_adv_rec": (0.69, 0.35, 0.27),
            "max_damage_input_vs_adv": (0.99, 0.94, 0.87),
            "fid": 73.94,
        },
        "lipschitz_vae": {  # LipschitzVAE
            "latent_target_vs_adv_rec": (0.43, 0.59, 0.67),
            "latent_input_vs_adv": (0.99, 0.94, 0.89),
            "max_damage_rec_vs_adv_rec": (0.71, 0.34, 0.30),
            "max_damage_input_vs_adv": (0.99, 0.94, 0.88),
            "fid": 79.45,
        },
        "se": {  # SE
            "latent_target_vs_adv_rec": (0.24, 0.43, 0.53),
            "latent_input_vs_adv": (0.98, 0.92, 0.81),
            "max_damage_rec_vs_adv_rec": (0.90, 0.62, 0.43),
            "max_damage_input_vs_adv": (0.99, 0.94, 0.86),
            "fid": 72.29,
        },
        "avae": {  # AAVE
            "latent_target_vs_adv_rec": (0.32, 0.34, 0.35),
            "latent_input_vs_adv": (0.98, 0.92, 0.82),
            "max_damage_rec_vs_adv_rec": (0.79, 0.52, 0.45),
            "max_damage_input_vs_adv": (0.99, 0.94, 0.92),
            "fid": 74.45,
        },
        "robust": {  # Ours
            "latent_target_vs_adv_rec": (0.22, 0.26, 0.39),
            "latent_input_vs_adv": (0.97, 0.91, 0.81),
            "max_damage_rec_vs_adv_rec": (0.92, 0.77, 0.63),
            "max_damage_input_vs_adv": (0.97, 0.92, 0.83),
            "fid": 64.89,
        },
    },
    "svhn_cropped": {  # block "SVHN"
        "vae": {  # VAE
            "latent_target_vs_adv_rec": (0.46, 0.76, 0.87),
            "latent_input_vs_adv": (0.98, 0.87, 0.77),
            "max_damage_rec_vs_adv_rec": (0.55, 0.46, 0.38),
            "max_damage_input_vs_adv": (0.99, 0.93, 0.89),
            "fid": 58.98,
        },
        "beta_vae": {  # β-VAE
            "latent_target_vs_adv_rec": (0.44, 0.70, 0.81),
            "latent_input_vs_adv": (0.99, 0.89, 0.77),
            "max_damage_rec_vs_adv_rec": (0.52, 0.49, 0.47),
            "max_damage_input_vs_adv": (0.99, 0.93, 0.88),
            "fid": 61.65,
        },
        "beta_tcvae": {  # β-TCVAE
            "latent_target_vs_adv_rec": (0.39, 0.65, 0.72),
            "latent_input_vs_adv": (0.99, 0.89, 0.77),
            "max_damage_rec_vs_adv_rec": (0.63, 0.60, 0.54),
            "max_damage_input_vs_adv": (0.99, 0.92, 0.88),
            "fid": 62.59,
        },
        "lipschitz_vae": {  # LipschitzVAE
            "latent_target_vs_adv_rec": (0.35, 0.62, 0.71),
            "latent_input_vs_adv": (0.99, 0.89, 0.76),
            "max_damage_rec_vs_adv_rec": (0.66, 0.65, 0.55),
            "max_damage_input_vs_adv": (0.99, 0.93, 0.88),
            "fid": 65.58,
        },
        "se": {  # SE
            "latent_target_vs_adv_rec": (0.19, 0.33, 0.34),
            "latent_input_vs_adv": (0.99, 0.92, 0.81),
            "max_damage_rec_vs_adv_rec": (0.79, 0.69, 0.60),
            "max_damage_input_vs_adv": (0.99, 0.96, 0.94),
            "fid": 61.28,
        },
        "robust": {  # Ours
            "latent_target_vs_adv_rec": (0.16, 0.26, 0.28),
            "latent_input_vs_adv": (0.98, 0.77, 0.76),
            "max_damage_rec_vs_adv_rec": (0.84, 0.79, 0.75),
            "max_damage_input_vs_adv": (0.98, 0.92, 0.86),
            "fid": 38.89,
        },
    },
    "celeb_a": {  # block "CELEBA"
        "vae": {  # VAE
            "latent_target_vs_adv_rec": (0.59, 0.60, 0.66),
            "latent_input_vs_adv": (0.99, 0.99, 0.97),
            "max_damage_rec_vs_adv_rec": (0.64, 0.58, 0.55),
            "max_damage_input_vs_adv": (0.99, 0.98, 0.98),
            "fid": 69.48,
        },
        "beta_vae": {  # β-VAE
            "latent_target_vs_adv_rec": (0.55, 0.58, 0.64),
            "latent_input_vs_adv": (0.99, 0.99, 0.97),
            "max_damage_rec_vs_adv_rec": (0.68, 0.60, 0.59),
            "max_damage_input_vs_adv": (0.99, 0.98, 0.97),
            "fid": 75.65,
        },
        "beta_tcvae": {  # β-TCVAE
            "latent_target_vs_adv_rec": (0.54, 0.51, 0.61),
            "latent_input_vs_adv": (0.99, 0.99, 0.97),
            "max_damage_rec_vs_adv_rec": (0.76, 0.71, 0.64),
            "max_damage_input_vs_adv": (0.98, 0.99, 0.96),
            "fid": 75.11,
        },
        "lipschitz_vae": {  # LipschitzVAE
            "latent_target_vs_adv_rec": (0.49, 0.51, 0.55),
            "latent_input_vs_adv": (0.99, 0.98, 0.97),
            "max_damage_rec_vs_adv_rec": (0.73, 0.70, 0.64),
            "max_damage_input_vs_adv": (0.98, 0.98, 0.96),
            "fid": 77.89,
        },
        "se": {  # SE
            "latent_target_vs_adv_rec": (0.27, 0.31, 0.34),
            "latent_input_vs_adv": (0.99, 0.98, 0.96),
            "max_damage_rec_vs_adv_rec": (0.97, 0.91, 0.76),
            "max_damage_input_vs_adv": (0.99, 0.98, 0.98),
            "fid": 72.68,
        },
        "robust": {  # Ours
            "latent_target_vs_adv_rec": (0.28, 0.29, 0.32),
            "latent_input_vs_adv": (0.99, 0.98, 0.96),
            "max_damage_rec_vs_adv_rec": (0.97, 0.93, 0.80),
            "max_damage_input_vs_adv": (0.99, 0.98, 0.96),
            "fid": 51.98,
        },
    },
}

# Table 2 (MNIST): the MS-SSIM(x_r, x_a) columns are not reported.
TABLE2 = {
    "mnist": {
        "gmm_dae": {  # GMM-DAE [27]
            "latent_target_vs_adv_rec": (0.54, 0.70, 0.82),
            "max_damage_rec_vs_adv_rec": (0.75, 0.37, 0.30),
            "fid": 38.89,
        },
        "augmented": {  # Augmented
            "latent_target_vs_adv_rec": (0.47, 0.59, 0.71),
            "max_damage_rec_vs_adv_rec": (0.79, 0.56, 0.54),
            "fid": 40.16,
        },
        "robust": {  # Ours
            "latent_target_vs_adv_rec": (0.38, 0.47, 0.60),
            "max_damage_rec_vs_adv_rec": (0.92, 0.82, 0.69),
            "fid": 39.37,
        },
    },
}

# Table 3: dataset -> model -> accuracies in % ("clean", "lambda_1": under the latent
# space attack with λ = 1).
TABLE3 = {
    "mnist": {
        "vae": {"clean": 92.16, "lambda_1": 58.85},
        "beta_tcvae": {"clean": 93.02, "lambda_1": 61.06},
        "lipschitz_vae": {"clean": 90.78, "lambda_1": 62.00},
        "se": {"clean": 93.81, "lambda_1": 68.65},
        "robust": {"clean": 96.08, "lambda_1": 91.78},
    },
    "fashion_mnist": {
        "vae": {"clean": 80.65, "lambda_1": 59.15},
        "beta_tcvae": {"clean": 81.25, "lambda_1": 60.77},
        "lipschitz_vae": {"clean": 80.50, "lambda_1": 62.06},
        "se": {"clean": 80.10, "lambda_1": 66.83},
        "robust": {"clean": 85.96, "lambda_1": 78.86},
    },
    "svhn_cropped": {
        "vae": {"clean": 61.70, "lambda_1": 25.63},
        "beta_tcvae": {"clean": 62.02, "lambda_1": 30.12},
        "lipschitz_vae": {"clean": 60.99, "lambda_1": 33.99},
        "se": {"clean": 62.36, "lambda_1": 44.40},
        "robust": {"clean": 70.96, "lambda_1": 59.20},
    },
}


def robustness_rows(dataset: str) -> dict:
    """model -> Table 1 entry for `dataset`, with the Table 2 models (MNIST) added after
    Table 1's; Table 1 wins for a model in both (only "robust", with equal numbers)."""
    rows = dict(TABLE1.get(dataset, {}))
    for model, entry in TABLE2.get(dataset, {}).items():
        rows.setdefault(model, entry)
    return rows


# ------------------------------------------------------------------ comparison with the paper

PAPER_TABLE1_COLUMNS = (
    # (paper_results column, header without λ)
    ("latent_target_vs_adv_rec", "Latent: MS-SSIM(x_r, x~_a) ↓"),
    ("max_damage_rec_vs_adv_rec", "Max damage: MS-SSIM(x~_r, x~_a) ↑"),
    ("latent_input_vs_adv", "Latent: MS-SSIM(x, x_a)"),
    ("max_damage_input_vs_adv", "Max damage: MS-SSIM(x, x_a)"),
)


PAPER_LEGEND = (
    "Rows \"<model>, paper\": the numbers published by Saseendran et al. (NeurIPS 2022), Table 1 "
    "(and Table 2 for GMM-DAE and Augmented, which reports no MS-SSIM(x, x_a) columns; Table 3 for the "
    "accuracies), as printed: two decimals, no std; the paper's \"MS-SSIM(x_r, x_a)\" columns compare "
    "the clean input x with x_a, so they are headed MS-SSIM(x, x_a) here. The rows below each paper row are "
    "our evaluations of the same model (mean ± std over trials, the mean alone for one trial; MS-SSIM in the "
    "paper's convention), with "
    "their evaluation protocol in brackets: [paper] is measured as the paper's numbers were, [strong] with "
    "this project's stronger attack. "
    "The paper's FID (Inception features, its own samples and preprocessing) and our FD (named feature "
    "extractor) are on different scales: compare the ordering of models, not the values."
)


def check_paper_dataset(dataset) -> str:
    """`dataset` if the paper reports it (`DATASETS`), else ConfigError."""
    if dataset not in DATASETS:
        raise ConfigError(f"the paper has no results for dataset {dataset!r}; choose one of "
                          f"{', '.join(DATASETS)}.")
    return dataset


def _paper_groups(rows: list[dict], dataset: str):
    """([(variant, [rows])] in the paper's model order (unknown variants last, input order
    kept within a variant), rows evaluated on another dataset)."""
    order = {model: i for i, model in enumerate(MODEL_ORDER)}
    groups: dict = {}
    other = []
    for row in rows:
        meta = model_metadata(row)
        if meta.get("dataset") and meta["dataset"] != dataset:
            label = str(row["name"])
            other.append(label if meta["dataset"] in label else f"{label} ({meta['dataset']})")
            continue
        groups.setdefault(meta.get("variant"), []).append(row)
    ranked = sorted(groups.items(), key=lambda kv: order.get(kv[0], len(order)))  # stable
    return ranked, other


def _paper_label(variant) -> str:
    return f"{PAPER_NAMES[variant]}, paper"


def paper_comparison_markdown(rows: list[dict], dataset: str, digits: int = 3) -> str:
    """Our evaluations side by side with the paper's published numbers for `dataset`
    (mnist, fashion_mnist, svhn_cropped, celeb_a): a Table 1/2-like table and, when
    classifier reports exist, a Table 3-like one. Each of our models is preceded by one
    "<paper name>, paper" row (one per variant, when the paper reports that model);
    rows follow the paper's model order (`MODEL_ORDER`), unknown models last.
    Rows whose metadata names another dataset are left out (and listed)."""
    check_paper_dataset(dataset)
    title = DATASET_TITLES[dataset]
    groups, other = _paper_groups(rows, dataset)
    budgets = [budget_key(b) for b in BUDGETS]
    published = robustness_rows(dataset)

    header = ["Model"]
    for _, label in PAPER_TABLE1_COLUMNS:
        header += [f"{label} λ={_budget_label(b)}" for b in budgets]
    header.append("FD/FID ↓")
    body, unpublished = [], []
    for variant, members in groups:
        paper = published.get(variant)
        if paper is not None:
            cells = [_paper_label(variant)]
            for column, _ in PAPER_TABLE1_COLUMNS:
                values = paper.get(column)  # None: not in the paper's table (Table 2 models)
                cells += [f"{v:.2f}" for v in values] if values else ["—"] * len(budgets)
            body.append(cells + [f"{paper['fid']:.2f} (FID)"])
        elif variant in PAPER_NAMES:
            unpublished.append(PAPER_NAMES[variant])
        for row in members:
            cells = [f"{row['name']} [{row_protocol(row)}]"]
            for column, _ in PAPER_TABLE1_COLUMNS:
                attack, metric = COLUMNS[column]
                cells += [_cell(row, attack, metric, b, digits) for b in budgets]
            value, name = _fd(row)
            body.append(cells + ["—" if value is None else f"{value:.2f} ({name})"])
    out = f"### Comparison with the paper ({title}): robustness and fidelity (Tables 1, 2)\n\n"
    out += _markdown(header, body) + "\n" + PAPER_LEGEND + "\n"
    if unpublished:
        out += f"\nThe paper's Tables 1 and 2 have no {title} row for: {', '.join(unpublished)}.\n"
    if other:
        out += f"\nLeft out (evaluated on another dataset than {title}): {', '.join(other)}.\n"

    if any(row.get("classifier") for _, members in groups for row in members):
        table3 = TABLE3.get(dataset, {})
        body, unpublished = [], []
        for variant, members in groups:
            members = [row for row in members if _accuracies(row)]
            if not members:
                continue
            if variant in table3:
                paper = table3[variant]
                body.append([_paper_label(variant), f"{paper['clean']:.2f}", f"{paper['lambda_1']:.2f}"])
            elif variant in PAPER_NAMES:
                unpublished.append(PAPER_NAMES[variant])
            for row in members:
                clean, mean, std, n, budget = _accuracies(row)
                attacked = _attacked_cell(mean, std, n)
                if budget != 1.0 and attacked != "—":
                    attacked += f" (λ={budget:g})"
                body.append([f"{row['name']} [{row_protocol(row)}]", f"{100 * clean:.2f}", attacked])
        out += f"\n### Comparison with the paper ({title}): downstream classifier (Table 3)\n\n"
        out += _markdown(["Model", "clean acc. (%) ↑", "λ=1 acc. (%) ↑"], body)
        if not table3:
            out += f"\nThe paper's Table 3 has no {title} column.\n"
        elif unpublished:
            out += f"\nThe paper's Table 3 has no row for: {', '.join(unpublished)}.\n"
    return out
