"""Meta-testing one experiment's models under another experiment's protocol (params rl.shared):
allowed only when the two would train the same model, which the operative configs show."""

from __future__ import annotations

import copy

import pytest
import yaml

from metalearning.params import ParamsError, check_params, meta_tested_experiments
from metalearning.replicates import training_seeds
from metalearning.shared_models import is_protocol_key, operative_config, parse_operative, protocol_bindings
from tests.conftest import REPO

RL_EXPERIMENTS = REPO / "configs" / "rl" / "experiments"
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())

MODEL = """# Macros:
# ====
eval_trajectories = 40
trajectories = 20

# Parameters for meta_test/AdaptationEval:
meta_test/AdaptationEval.paper = 'maml'
meta_test/AdaptationEval.trajectories = %eval_trajectories
MetaTrainer.meta_iterations = 100
GaussianMLPPolicy.hidden = (100,
    100)
"""


def test_operative_configs_parse_with_continued_values():
    assert parse_operative(MODEL) == {
        "eval_trajectories": "40", "trajectories": "20", "meta_test/AdaptationEval.paper": "'maml'",
        "meta_test/AdaptationEval.trajectories": "%eval_trajectories", "MetaTrainer.meta_iterations": "100",
        "GaussianMLPPolicy.hidden": "(100, 100)"}
    with pytest.raises(ValueError, match="unexpected line"):
        parse_operative("not a binding")


def test_protocol_keys_are_the_meta_tests_settings_only():
    for key in ("meta_test/AdaptationEval.paper", "eval_trajectories", "eval_tasks", "MAML.eval_inner_steps",
                "MetaRL.eval_seed", "MetaRL.plotted_tasks"):
        assert is_protocol_key(key), key
    for key in ("trajectories", "MetaRL.query_trajectories", "MAML.inner_lr", "MetaTrainer.meta_iterations"):
        assert not is_protocol_key(key), key


def test_only_protocol_differences_become_bindings():
    other = MODEL.replace("= 40", "= 20").replace("'maml'", "'metasgd'") + "MetaTrainer.precision = 'fp32'\n"
    assert protocol_bindings(MODEL, other, model="a", experiment="b") == [
        "eval_trajectories = 20", "meta_test/AdaptationEval.paper = 'metasgd'"]  # a setting only one side has: ignored
    assert protocol_bindings(MODEL, MODEL, model="a", experiment="b") == []
    with pytest.raises(ValueError, match=r"^b would not train the same model as a.*MetaTrainer.meta_iterations "
                                         r"\(100 vs 500\)"):
        protocol_bindings(MODEL, MODEL.replace("= 100\n", "= 500\n"), model="a", experiment="b")


def test_tables_mamls_cell_shares_the_curves_model_at_the_cpu_budget_only():
    """maml_nav2d_fixed trains maml_nav2d's model when maml_nav2d runs 100 meta-iterations (the cpu
    profile); at maml_nav2d's own 500 (the paper profile) they are different models."""
    curve = operative_config([RL_EXPERIMENTS / "maml_nav2d.gin"], ["MetaTrainer.meta_iterations = 100"])
    table = operative_config([RL_EXPERIMENTS / "maml_nav2d_fixed.gin"], [])
    assert protocol_bindings(curve, table, model="maml_nav2d", experiment="maml_nav2d_fixed") == [
        "eval_trajectories = 20", "meta_test/AdaptationEval.paper = 'metasgd'"]
    paper = operative_config([RL_EXPERIMENTS / "maml_nav2d.gin"], [])
    with pytest.raises(ValueError, match="MetaTrainer.meta_iterations"):
        protocol_bindings(paper, table, model="maml_nav2d", experiment="maml_nav2d_fixed")
    metasgd = operative_config([RL_EXPERIMENTS / "metasgd_nav2d_fixed.gin"], [])
    with pytest.raises(ValueError, match="MetaTrainer.algorithm"):
        protocol_bindings(table, metasgd, model="maml_nav2d_fixed", experiment="metasgd_nav2d_fixed")


def test_shared_entries_are_tested_with_their_seeds_and_checked():
    assert meta_tested_experiments(PARAMS, "rl")[-1] == "maml_nav2d_fixed"
    assert training_seeds(PARAMS, "rl", "maml_nav2d_fixed") == [0, 1, 2]
    for edit, message in [({"model": "nope"}, r"rl: shared\.maml_nav2d_fixed\.model: 'nope' is not one of experiments"),
                          ({"seeds": 4}, r"shared\.maml_nav2d_fixed\.seeds: 4, but maml_nav2d trains 3 seed"),
                          ({"mdoel": "x"}, r"mdoel: Extra inputs are not permitted")]:
        params = copy.deepcopy(PARAMS)
        params["rl"]["shared"]["maml_nav2d_fixed"].update(edit)
        with pytest.raises(ParamsError, match=message):
            check_params(params)
    params = copy.deepcopy(PARAMS)
    params["rl"]["experiments"]["maml_nav2d_fixed"] = {"seeds": 1}
    with pytest.raises(ParamsError, match="also listed under experiments"):
        check_params(params)
