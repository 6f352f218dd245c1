"""Published meta-RL returns the RL report puts beside ours (transcribed from ../shared/papers)."""

# maml.md Appendix C.2, Table 4 ("2D Pointmass, average return"; the MAML curve of Fig. 4): MAML-TRPO
# on 2D navigation with the squared-distance reward, after 0, 1, 2, 3 policy-gradient steps of 40
# trajectories each (no confidence interval given).
MAML_NAV2D_RETURNS = {0: -40.41, 1: -11.68, 2: -3.33, 3: -3.23}
MAML_NAV2D_TRAJECTORIES = 40  # per evaluation step (maml.md §5.3)
# maml.md A.2: every RL model was trained "up to" this many meta-iterations, the best one evaluated.
MAML_META_ITERATIONS = 500
# maml.md Appendix C.2, Table 5: MAML-TRPO on half-cheetah forward/backward, after 0–3 steps.
MAML_CHEETAH_DIR_RETURNS = {0: -50.69, 1: 293.19, 2: 313.48, 3: 315.65}
# meta-sgd.md §4.3, Table 4: 2D navigation with the distance reward, average return ± 95% CI over
# 600 new tasks after one PG step (20 trajectories before and after it), 100 meta-iterations.
# Keyed by (method, start position: "fixed" = the origin, "random" = varying).
METASGD_TABLE4 = {
    ("MAML", "fixed"): (-9.12, 0.66),
    ("MetaSGD", "fixed"): (-8.64, 0.68),
    ("MAML", "random"): (-10.71, 0.76),
    ("MetaSGD", "random"): (-10.15, 0.62),
}
# meta-sgd.md §4.3: trajectories per meta-test step (before and after it), meta-iterations trained.
METASGD_TABLE4_TRAJECTORIES = 20
METASGD_META_ITERATIONS = 100
