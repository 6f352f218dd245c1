"""Every algorithm × every task family, through the one trainer and the one command set: it
meta-trains and meta-tests, or it is refused with one clear error before any compute."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from metalearning import commands
from metalearning.fewshot import split_episodes
from metalearning.metrics_io import read_json
from metalearning.model import load_model
from metalearning.tasks.sine_metatest import split_sine
from tests.conftest import fake_omniglot

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "configs" / "experiments"
ALGORITHMS = ["maml", "fomaml", "metasgd", "reptile", "anil", "mamlpp"]
LABELS = {"maml": "MAML", "fomaml": "FOMAML", "metasgd": "MetaSGD", "reptile": "Reptile", "anil": "ANIL",
          "mamlpp": "MAML++"}
TINY = ["MetaTrainer.meta_iterations = 2", "MetaTrainer.log_every = 1"]

# meta-RL: MAML-TRPO's experiment with the algorithm swapped (the RL gin files bind MAML or MetaSGD).
RL_NAV = REPO / "configs" / "rl" / "experiments" / "maml_nav2d_fixed.gin"
RL_TINY = ["GaussianMLPPolicy.hidden = (8,)", "meta_batch_size = 2", "trajectories = 2", "TRPO.cg_iters = 2",
           "eval_tasks = 3", "eval_trajectories = 2", "MetaRL.plotted_tasks = 1", "BatchNavigation2D.horizon = 5",
           "MetaTrainer.meta_iterations = 2"]
RL_ALGORITHM = {
    "maml": [],
    "fomaml": ["MAML.first_order = True"],
    "metasgd": ["MetaTrainer.algorithm = @MetaSGD()", "MetaSGD.inner_lr_init = (0.1, 0.1)", "MetaSGD.inner_steps = 1",
                "MetaSGD.eval_inner_steps = 1"],
    "reptile": ["MetaTrainer.algorithm = @Reptile()", "Reptile.inner_lr = 0.1", "Reptile.inner_steps = 1",
                "Reptile.eval_inner_steps = 1", "Reptile.inner_optimizer = 'sgd'"],
    "anil": ["MetaTrainer.algorithm = @ANIL()", "ANIL.inner_lr = 0.1", "ANIL.inner_steps = 1",
             "ANIL.eval_inner_steps = 1", "ANIL.first_order = False", "ANIL.inner_params = ('mean.2',)"],
    "mamlpp": ["MetaTrainer.algorithm = @MAMLPlusPlus()", "MAMLPlusPlus.inner_lr = 0.1", "MAMLPlusPlus.inner_steps = 1",
               "MAMLPlusPlus.eval_inner_steps = 1", "MAMLPlusPlus.iterations_per_epoch = 1",
               "MAMLPlusPlus.multi_step_loss_epochs = 1", "MAMLPlusPlus.first_order_epochs = 0"],
}
REFUSED = {("reptile", "rl"), ("mamlpp", "rl")}


def _sine(algo: str, tmp_path: Path) -> tuple[list[Path], list[str], Path]:
    name = "reptile_sine" if algo == "reptile" else f"{algo}_sine_5shot"
    family = "sine_reptile" if algo == "reptile" else "sine_metasgd"
    split_sine([REPO / "configs" / "tasks" / f"{family}.gin"], ["shots = 5"], shots=[5], curves=3, repeats=2, seed=0,
               out=tmp_path / "test.pt")
    return [EXPERIMENTS / f"{name}.gin"], TINY, tmp_path / "test.pt"


def _fewshot(algo: str, tmp_path: Path) -> tuple[list[Path], list[str], Path]:
    data = fake_omniglot(tmp_path)
    split_episodes([REPO / "configs" / "tasks" / "omniglot.gin"], data, ways=5, shots=1, queries=1, episodes=3,
                   seed=0, out=tmp_path / "episodes.pt")
    small = ["filters = 4", "MetaTrainer.meta_batch_size = 2", "MetaTrainer.meta_val_tasks = 2", "eval_inner_steps = 2"]
    return [EXPERIMENTS / f"{algo}_omniglot_5w1s.gin"], [*TINY, *data, *small], tmp_path / "episodes.pt"


def _rl(algo: str, tmp_path: Path) -> tuple[list[Path], list[str], None]:
    return [RL_NAV], [*RL_TINY, *RL_ALGORITHM[algo]], None


FAMILIES = {"sine": _sine, "fewshot": _fewshot, "rl": _rl}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_algorithm_meta_trains_and_tests_on_every_family_or_is_refused(algo, family, tmp_path):
    configs, bindings, test_set = FAMILIES[family](algo, tmp_path)
    train = lambda: commands.train(configs, bindings, seed=0, out_dir=tmp_path / "model",  # noqa: E731
                                   runs_dir=tmp_path / "runs", progress=False)
    if (algo, family) in REFUSED:
        with pytest.raises(ValueError, match=re.escape(f"MetaTrainer.algorithm: {LABELS[algo]} cannot meta-train "
                                                       "on rl tasks")):
            train()
        assert not (tmp_path / "model").exists() and not (tmp_path / "runs").exists()  # before any output
        return
    result = train()
    assert result["meta_iterations"] == 2 and all(math.isfinite(v) for v in result.values())
    checkpoint = tmp_path / "model" / "checkpoint.pt"
    model = load_model(checkpoint)
    assert model.family.kind == family and model.algorithm.label == LABELS[algo]
    tested = commands.test(checkpoint, test_set, out_dir=tmp_path / "metrics", runs_dir=tmp_path / "runs")
    assert tested and all(math.isfinite(v) for v in tested.values())
    setting = read_json(tmp_path / "metrics" / "curves.json")["setting"]
    assert setting.get("algorithm") in (LABELS[algo], type(model.algorithm).__name__)


def test_a_family_that_needs_a_test_set_says_so(tmp_path):
    configs, bindings, _ = _sine("maml", tmp_path)
    commands.train(configs, bindings, seed=0, out_dir=tmp_path / "m", runs_dir=tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="sine meta-test needs --test-set"):
        commands.test(tmp_path / "m" / "checkpoint.pt", None, out_dir=tmp_path / "t", runs_dir=tmp_path / "r")


def test_meta_rl_takes_no_test_set(tmp_path):
    configs, bindings, _ = _rl("maml", tmp_path)
    commands.train(configs, bindings, seed=0, out_dir=tmp_path / "m", runs_dir=tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="MetaRL.eval_seed"):
        commands.test(tmp_path / "m" / "checkpoint.pt", tmp_path / "x.pt", out_dir=tmp_path / "t",
                      runs_dir=tmp_path / "r")
