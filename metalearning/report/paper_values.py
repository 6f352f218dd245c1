"""Published numbers the report puts beside ours (transcribed from ../shared/papers)."""

# meta-sgd.md §4.1, Table 1: meta-test MSE ± 95% CI on the Meta-SGD sine family
# (A ∈ [0.1, 5], ω ∈ [0.8, 1.2], b ∈ [0, π]), one inner step, 60000 iterations, meta-batch 4.
# Keyed by (algorithm, training shots) -> {testing shots: (mse, ci95)}.
METASGD_TABLE1 = {
    ("MAML", 5): {5: (1.13, 0.18), 10: (0.85, 0.14), 20: (0.71, 0.12)},
    ("MetaSGD", 5): {5: (0.90, 0.16), 10: (0.63, 0.12), 20: (0.50, 0.10)},
    ("MAML", 10): {5: (1.17, 0.16), 10: (0.77, 0.11), 20: (0.56, 0.08)},
    ("MetaSGD", 10): {5: (0.88, 0.14), 10: (0.53, 0.09), 20: (0.35, 0.06)},
    ("MAML", 20): {5: (1.29, 0.20), 10: (0.76, 0.12), 20: (0.48, 0.08)},
    ("MetaSGD", 20): {5: (1.01, 0.17), 10: (0.54, 0.08), 20: (0.31, 0.05)},
}

# maml.md Appendix C.1, Table 2: 5-shot MSE of MAML after 1, 5 and 10 inner steps on MAML's
# sine family (ω = 1); the paper gives no confidence interval.
MAML_TABLE2 = {1: 0.67, 5: 0.38, 10: 0.35}
