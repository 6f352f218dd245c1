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
# the same table's "pretrain on all tasks" baseline (maml.md §5.1 baseline (a), Figure 2 right)
PRETRAINED_TABLE2 = {1: 2.41, 5: 2.23, 10: 2.19}

# Few-shot classification accuracy (%) ± the paper's interval, as printed there (strings keep the
# paper's precision: "98.7 ± 0.4" stays so), keyed by (algorithm, dataset, ways, shots)
# → {batch-norm mode: (accuracy, ±)}; what the ± is: FEWSHOT_INTERVAL. "transductive" where the
# paper says so (reptile.md §6: "Finn et al. use transduction"); Meta-SGD does not state its mode.
FEWSHOT = {
    # maml.md Table 1 (Omniglot: the authors' own 1200/423 split, so not strictly comparable)
    ("MAML", "omniglot", 5, 1): {"transductive": ("98.7", "0.4")},
    ("MAML", "omniglot", 5, 5): {"transductive": ("99.9", "0.1")},
    ("MAML", "omniglot", 20, 1): {"transductive": ("95.8", "0.3")},
    ("MAML", "omniglot", 20, 5): {"transductive": ("98.9", "0.2")},
    ("MAML", "miniimagenet", 5, 1): {"transductive": ("48.70", "1.84")},
    ("MAML", "miniimagenet", 5, 5): {"transductive": ("63.11", "0.92")},
    # reptile.md Table 2 (first-order MAML run with MAML's code and hyper-parameters) / maml.md Table 1
    ("FOMAML", "omniglot", 5, 1): {"transductive": ("98.3", "0.5")},
    ("FOMAML", "omniglot", 5, 5): {"transductive": ("99.2", "0.2")},
    ("FOMAML", "omniglot", 20, 1): {"transductive": ("89.4", "0.5")},
    ("FOMAML", "omniglot", 20, 5): {"transductive": ("97.9", "0.1")},
    ("FOMAML", "miniimagenet", 5, 1): {"transductive": ("48.07", "1.75")},
    ("FOMAML", "miniimagenet", 5, 5): {"transductive": ("63.15", "0.91")},
    # meta-sgd.md Tables 2 and 3
    ("MetaSGD", "omniglot", 5, 1): {"not stated": ("99.53", "0.26")},
    ("MetaSGD", "omniglot", 5, 5): {"not stated": ("99.93", "0.09")},
    ("MetaSGD", "omniglot", 20, 1): {"not stated": ("95.93", "0.38")},
    ("MetaSGD", "omniglot", 20, 5): {"not stated": ("98.97", "0.19")},
    ("MetaSGD", "miniimagenet", 5, 1): {"not stated": ("50.47", "1.87")},
    ("MetaSGD", "miniimagenet", 5, 5): {"not stated": ("64.03", "0.94")},
    ("MetaSGD", "miniimagenet", 20, 1): {"not stated": ("17.56", "0.64")},
    ("MetaSGD", "miniimagenet", 20, 5): {"not stated": ("28.92", "0.35")},
    # reptile.md Tables 1 and 2
    ("Reptile", "omniglot", 5, 1): {"non_transductive": ("95.39", "0.09"), "transductive": ("97.68", "0.04")},
    ("Reptile", "omniglot", 5, 5): {"non_transductive": ("98.90", "0.10"), "transductive": ("99.48", "0.06")},
    ("Reptile", "omniglot", 20, 1): {"non_transductive": ("88.14", "0.15"), "transductive": ("89.43", "0.14")},
    ("Reptile", "omniglot", 20, 5): {"non_transductive": ("96.65", "0.33"), "transductive": ("97.12", "0.32")},
    ("Reptile", "miniimagenet", 5, 1): {"non_transductive": ("47.07", "0.26"), "transductive": ("49.97", "0.32")},
    ("Reptile", "miniimagenet", 5, 5): {"non_transductive": ("62.74", "0.37"), "transductive": ("65.99", "0.58")},
    # Antoniou et al. 2019 ("How to train your MAML"), Table 1, MAML++ row. The means as transcribed
    # by Papers with Code (paperswithcode.com/paper/how-to-train-your-maml); the paper's ± is the
    # standard deviation over 3 seeds (the first author, HowToTrainYourMAMLPytorch issue #20), not a
    # 95% CI, and could not be checked against the paper here: None (the report prints the mean alone). Batch
    # norm is transductive: the authors' layers always normalise with the batch's statistics
    # (meta_neural_network_architectures.py, F.batch_norm(..., training=True)).
    ("MAML++", "omniglot", 5, 1): {"transductive": ("99.47", None)},
    ("MAML++", "omniglot", 5, 5): {"transductive": ("99.85", None)},
    ("MAML++", "omniglot", 20, 1): {"transductive": ("97.65", None)},
    ("MAML++", "omniglot", 20, 5): {"transductive": ("99.33", None)},
    # Raghu et al. 2020 ("Rapid Learning or Feature Reuse?"), Table 2, ANIL row, ± as printed there
    # (transcribed from learn2learn's ANIL tutorial, which reproduces the table, as is its MAML row
    # 93.7 / 96.4 / 46.9 / 63.1); that table has no Omniglot 5-way column. Batch-norm mode not
    # checked against the paper, hence "not stated".
    ("ANIL", "omniglot", 20, 1): {"not stated": ("96.2", "0.5")},
    ("ANIL", "omniglot", 20, 5): {"not stated": ("98.0", "0.3")},
    ("ANIL", "miniimagenet", 5, 1): {"not stated": ("46.7", "0.4")},
    ("ANIL", "miniimagenet", 5, 5): {"not stated": ("61.5", "0.5")},
}


# What each paper's "±" is, per (algorithm, dataset).
FEWSHOT_INTERVAL = {
    ("MAML", "omniglot"): "95% CI over tasks",  # maml.md Table 1 caption
    ("MAML", "miniimagenet"): "95% CI over tasks",
    ("FOMAML", "omniglot"): "± as printed; kind not stated",  # reptile.md Table 2: run with MAML's code
    ("FOMAML", "miniimagenet"): "95% CI over tasks",  # maml.md Table 1, quoted by reptile.md Table 1
    ("MetaSGD", "omniglot"): "95% CI over tasks",  # meta-sgd.md §4.2
    ("MetaSGD", "miniimagenet"): "95% CI over tasks",
    # reptile.md Appendix A: "three different random seeds, and computed the confidence intervals
    # using the standard deviation across the runs"
    ("Reptile", "omniglot"): "from the std. over 3 training seeds",
    ("Reptile", "miniimagenet"): "from the std. over 3 training seeds",
    ("MAML++", "omniglot"): "mean over 3 seeds; ± not transcribed",
    ("ANIL", "omniglot"): "± as printed; kind not checked",
    ("ANIL", "miniimagenet"): "± as printed; kind not checked",
}
