"""The paper profile's pipeline (paper/dvc.yaml, paper/params.yaml): generated from dvc.yaml, complete,
and run end to end at toy size beside the cpu pipeline."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from metalearning.params import DATA_FILES, data_bindings, load_params

from .conftest import REPO
from .test_pipeline import COPIED, OMNIGLOT_MIRROR, _run, dvc_workspace


def _generator():
    spec = importlib.util.spec_from_file_location("paper_pipeline", REPO / "tools" / "paper_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return _generator()


@pytest.fixture(scope="module")
def paper() -> dict:
    return yaml.safe_load((REPO / "paper/dvc.yaml").read_text())


def _stage_bodies(pipeline: dict):
    for name, stage in pipeline["stages"].items():
        yield name, stage.get("do", stage)


def _path(entry) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


def test_committed_paper_pipeline_is_the_generated_one(gen):
    assert (REPO / "paper/dvc.yaml").read_text() == gen.render((REPO / "dvc.yaml").read_text()), \
        "paper/dvc.yaml is out of date with dvc.yaml: run python tools/paper_pipeline.py"


def test_paths_move_under_paper_but_sources_do_not(gen):
    assert gen.moved("--raw data/omniglot/raw --out models/sine/x") == \
        "--raw paper/data/omniglot/raw --out paper/models/sine/x"
    for unchanged in ("metalearning/data/omniglot.py", "configs/tasks/omniglot.gin", "pipeline/train.py",
                      "--metrics-dir", "paper/data/x"):
        assert gen.moved(unchanged) == unchanged
    cmd = gen.paper_cmd("X=1 python pipeline/train.py --task omniglot --out models/omniglot/a")
    assert cmd == ("X=1 python pipeline/train.py --params paper/params.yaml --data-dir paper/data --task omniglot "
                   "--out paper/models/omniglot/a")
    assert gen.paper_cmd("python pipeline/test.py --out metrics/rl/a") == \
        "python pipeline/test.py --params paper/params.yaml --out paper/metrics/rl/a"


def test_every_paper_stage_runs_from_the_root_on_the_paper_params(paper):
    source = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert set(source["stages"]) < set(paper["stages"])  # every cpu stage, plus the MiniImagenet ones
    assert {"prepare_miniimagenet", "train_miniimagenet", "test_miniimagenet",
            "report_miniimagenet"} < set(paper["stages"])
    for name, body in _stage_bodies(paper):
        assert body["wdir"] == "..", name
        scripts = re.findall(r"python pipeline/\w+\.py( --params paper/params\.yaml)?", body["cmd"])
        assert scripts and all(scripts), f"{name}: a stage script without --params paper/params.yaml"
        assert [list(p) for p in body.get("params", [])] in ([], [["paper/params.yaml"]]), name
        for key in ("outs", "metrics", "plots"):
            for entry in body.get(key, []):
                assert _path(entry).startswith("paper/"), f"{name}: output {_path(entry)} outside paper/"
        for dep in body.get("deps", []):
            assert not re.match(r"(data|models|metrics|reports)/", dep), f"{name}: depends on the cpu pipeline's {dep}"
    assert all(m.startswith("paper/") for m in paper["metrics"])


def _experiment_names(pattern: str, folder: str = "configs/experiments") -> set[str]:
    return {p.stem for p in (REPO / folder).glob(pattern)}


def test_paper_params_list_every_experiment_file():
    params = load_params(REPO / "paper/params.yaml")
    assert params["profile"] == "paper"
    assert set(params["sine"]["experiments"]) == _experiment_names("*sine*.gin")
    assert set(params["omniglot"]["experiments"]) == _experiment_names("*_omniglot_*.gin")
    assert set(params["miniimagenet"]["experiments"]) == _experiment_names("*_miniimagenet_*.gin")
    assert set(params["rl"]["experiments"]) == _experiment_names("*.gin", "configs/rl/experiments")
    for task in ("omniglot", "miniimagenet"):
        for name, entry in params[task]["experiments"].items():
            ways_shots = re.search(r"_(\d+w\d+s)$", name).group(1)
            sets = [entry["episodes"]] if isinstance(entry["episodes"], str) else entry["episodes"]
            assert sets[0] == ways_shots, f"{task}.{name} is not tested on its own N-way K-shot set first"


def test_paper_protocols_are_the_cpu_profiles():
    cpu, paper = load_params(REPO / "params.yaml"), load_params(REPO / "paper/params.yaml")
    for key in ("numerics", "seed", "threads"):
        assert paper[key] == cpu[key], key
    assert paper["sine"]["meta_test"] == cpu["sine"]["meta_test"]
    assert paper["sine"]["families"] == cpu["sine"]["families"]
    assert paper["omniglot"]["split_seed"] == cpu["omniglot"]["split_seed"]
    for key in ("seed", "episodes"):
        assert paper["omniglot"]["meta_test"][key] == cpu["omniglot"]["meta_test"][key]
    for name, shape in cpu["omniglot"]["meta_test"]["sets"].items():
        assert paper["omniglot"]["meta_test"]["sets"][name] == shape
    assert paper["rl"]["meta_test_seed"] == cpu["rl"]["meta_test_seed"]
    for name, entry in cpu["rl"]["navigation"].items():
        assert paper["rl"]["navigation"][name].get("test", []) == entry.get("test", []), name
    assert paper["rl"]["locomotion"] == cpu["rl"]["locomotion"]


@pytest.mark.parametrize("task", sorted(DATA_FILES))
def test_data_bindings_are_the_task_configs_under_another_folder(task):
    bound = dict(re.findall(r"^(\S+) = '([^']+)'$", (REPO / f"configs/tasks/{task}.gin").read_text(), re.M))
    for key, rel in DATA_FILES[task].items():
        assert bound[key] == f"data/{rel}", key
    assert data_bindings(task) == [] and data_bindings("rl", "paper/data") == []
    assert data_bindings(task, "paper/data") == [f"{key} = 'paper/data/{rel}'" for key, rel in DATA_FILES[task].items()]


# --- the paper pipeline end to end, at toy size -------------------------------------------------

TINY = ["filters = 4", "MetaTrainer.meta_batch_size = 2", "MetaTrainer.meta_iterations = 2",
        "MetaTrainer.meta_val_tasks = 2", "MetaTrainer.log_every = 2"]
RL_TINY = ["GaussianMLPPolicy.hidden = (8,)", "meta_batch_size = 2", "trajectories = 2", "TRPO.cg_iters = 2",
           "eval_tasks = 3", "eval_trajectories = 2", "MetaRL.plotted_tasks = 2", "BatchNavigation2D.horizon = 5",
           "MetaTrainer.meta_iterations = 1"]
SPLITS = {"train": 5, "val": 5, "test": 5}  # classes per Ravi split CSV in the toy MiniImagenet


def _toy_miniimagenet(root: Path) -> tuple[Path, Path]:
    """A mirror holding toy split CSVs (5 classes × 3 images per split) and a folder of those images."""
    mirror, images = root / "mirror", root / "images"
    mirror.mkdir()
    images.mkdir()
    rng = np.random.default_rng(0)
    for split, classes in SPLITS.items():
        lines = ["filename,label"]
        for c in range(classes):
            label = f"n{split}{c:05d}"
            for i in range(3):
                name = f"{label}{i:08d}.jpg"
                Image.fromarray(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)).save(images / name)
                lines.append(f"{name},{label}")
        (mirror / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return mirror, images


def _tiny_paper_params(mirror: Path, images: Path) -> dict:
    params = load_params(REPO / "paper/params.yaml", validate=False)
    params["profiles"]["paper"].update(sine_meta_iterations=20, omniglot_variant="small", device="cpu")
    params["data"].update(mirrors=[str(OMNIGLOT_MIRROR), str(mirror)], miniimagenet_images=str(images))
    params["sine"]["meta_test"].update(curves=4, repeats=2)
    params["sine"]["families"] = ["sine_metasgd"]
    params["sine"]["experiments"] = {"maml_sine_5shot": {"family": "sine_metasgd", "seeds": 1}}
    params["omniglot"]["meta_test"].update(episodes=4, sets={"5w1s": {"ways": 5, "shots": 1, "queries": 1}})
    params["omniglot"]["experiments"] = {"maml_omniglot_5w1s": {"episodes": "5w1s", "seeds": 1, "paper": TINY}}
    params["miniimagenet"]["meta_test"].update(episodes=4, sets={"5w1s": {"ways": 5, "shots": 1, "queries": 1}})
    params["miniimagenet"]["experiments"] = {
        "maml_miniimagenet_5w1s": {"episodes": "5w1s", "seeds": 1, "paper": [*TINY, "queries = 1", "inner_steps = 1",
                                                                              "eval_inner_steps = 1"]}}
    params["rl"].update(nproc=1, navigation={}, locomotion={})
    params["rl"]["experiments"] = {"maml_nav2d_fixed": {"seeds": 1, "paper": RL_TINY}}
    return params


@pytest.fixture(scope="module")
def paper_dir(tmp_path_factory):
    work = dvc_workspace(tmp_path_factory, "paper_pipeline", [*COPIED, "params.yaml", "paper"])
    mirror, images = _toy_miniimagenet(tmp_path_factory.mktemp("miniimagenet"))
    (work / "paper/params.yaml").write_text(yaml.safe_dump(_tiny_paper_params(mirror, images), sort_keys=False))
    _run(["dvc", "repro", "-q", "paper/dvc.yaml"], work)
    return work


def test_paper_repro_writes_its_outputs_under_paper_only(paper_dir):
    for rel in ["paper/data/sine/sine_metasgd.pt", "paper/reports/sine/README.md",
                "paper/data/omniglot/omniglot.npz", "paper/data/omniglot/episodes/5w1s.pt",
                "paper/metrics/omniglot/maml_omniglot_5w1s/5w1s/metrics.json", "paper/reports/omniglot/README.md",
                "paper/data/miniimagenet/miniimagenet_meta_train.npz", "paper/data/miniimagenet/episodes/5w1s.pt",
                "paper/models/miniimagenet/maml_miniimagenet_5w1s/checkpoint.pt",
                "paper/metrics/miniimagenet/maml_miniimagenet_5w1s/5w1s/metrics.json",
                "paper/reports/miniimagenet/README.md", "paper/models/rl/maml_nav2d_fixed/checkpoint.pt",
                "paper/reports/rl/README.md", "paper/dvc.lock"]:
        assert (paper_dir / rel).is_file(), rel
    for folder in ("data", "models", "metrics", "reports"):
        assert not (paper_dir / folder).exists(), f"the paper pipeline wrote into the cpu pipeline's {folder}/"
    assert "Profile `paper`" in (paper_dir / "paper/reports/omniglot/README.md").read_text()
    operative = (paper_dir / "paper/models/omniglot/maml_omniglot_5w1s/operative_config.gin").read_text()
    assert "'paper/data/omniglot/omniglot.npz'" in operative  # trained on the paper pipeline's own data
    lock = yaml.safe_load((paper_dir / "paper/dvc.lock").read_text())
    assert "paper/params.yaml" in lock["stages"]["train_omniglot@maml_omniglot_5w1s"]["params"]


def test_paper_pipeline_is_up_to_date_after_repro_and_apart_from_the_cpu_one(paper_dir):
    assert "up to date" in _run(["dvc", "status", "paper/dvc.yaml"], paper_dir).stdout
    params = yaml.safe_load((paper_dir / "paper/params.yaml").read_text())
    params["omniglot"]["experiments"]["maml_omniglot_5w1s"]["paper"].append("MetaTrainer.log_every = 1")
    (paper_dir / "paper/params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(["dvc", "status", "paper/dvc.yaml"], paper_dir).stdout
    assert "train_omniglot@maml_omniglot_5w1s" in out and "miniimagenet" not in out and "sine" not in out
    cpu = _run(["dvc", "status", "dvc.yaml"], paper_dir).stdout
    assert "paper/" not in cpu  # the cpu pipeline neither runs nor depends on the paper one


def test_prepare_miniimagenet_without_images_names_the_key(tmp_path):
    params = load_params(REPO / "paper/params.yaml", validate=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = _run(["python", str(REPO / "pipeline/prepare_miniimagenet.py"), "--params", str(tmp_path / "params.yaml"),
                 "--out", str(tmp_path / "out")], REPO, fails=True)
    assert "data.miniimagenet_images is not set" in done.stderr and len(done.stderr.strip().splitlines()) == 1

