"""params.yaml → gin bindings: the knobs DVC tracks (STYLE P6), templated into gin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from metalearning.numerics import set_numerics

DEFAULT_PARAMS = Path("params.yaml")
PositiveInt = Field(ge=1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # unknown keys are typos; no str -> list coercion


class Profile(_Strict):
    sine_meta_iterations: Optional[int] = Field(ge=1)  # required: null = the experiment files' budgets
    omniglot_variant: Literal["small", "full"]
    device: str = Field(default="cpu", pattern=r"^(cpu|auto|cuda(:[0-9]+)?)$")  # cpu, auto, cuda, cuda:N
    nproc: int = Field(default=1, ge=1)  # processes per training stage (torchrun when > 1)


class RunDB(_Strict):
    mongo_url: Optional[str] = None


class Data(_Strict):
    mirrors: list[str]  # folders searched for dataset archives (a string is refused, not split into letters)
    miniimagenet_images: Optional[str] = None  # MiniImagenet's image folder or archive (user-supplied; paper pipeline)


class SineMetaTest(_Strict):
    seed: int
    curves: int = Field(ge=2)
    repeats: int = Field(ge=1)
    shots: list[int] = Field(min_length=1)


class SineExperiment(_Strict):
    family: str
    seeds: int = PositiveInt  # required: training seeds (metalearning.replicates): seed, seed + 1, …


class Sine(_Strict):
    meta_test: SineMetaTest
    families: list[str]
    experiments: dict[str, SineExperiment]


class EpisodeSet(_Strict):
    ways: int = Field(ge=2)
    shots: int = Field(ge=1)
    queries: int = Field(ge=1)


class FewShotMetaTest(_Strict):
    seed: int
    episodes: int = Field(ge=2)
    sets: dict[str, EpisodeSet]


class FewShotExperiment(_Strict):
    episodes: Union[str, list[str]]
    # The bindings each profile adds to training. The active profile's list is required (may be []):
    # a cpu entry without `cpu` would silently train the papers' budgets (ParamsFile checks it).
    cpu: Optional[list[str]] = None
    paper: Optional[list[str]] = None
    seeds: int = PositiveInt  # required: training seeds (metalearning.replicates): seed, seed + 1, …


class FewShot(_Strict):
    """A few-shot dataset's section (``omniglot``; ``miniimagenet``, whose split is fixed, without ``split_seed``)."""

    split_seed: Optional[int] = None  # Omniglot's character split (required there: ParamsFile)
    threads: int = PositiveInt
    meta_test: FewShotMetaTest
    experiments: dict[str, FewShotExperiment]

    @model_validator(mode="after")
    def _known_sets(self) -> FewShot:
        for name, experiment in self.experiments.items():
            sets = [experiment.episodes] if isinstance(experiment.episodes, str) else experiment.episodes
            unknown = [s for s in sets if s not in self.meta_test.sets]
            if unknown:
                raise ValueError(f"experiments.{name}.episodes names {unknown}, not in meta_test.sets "
                                 f"{sorted(self.meta_test.sets)}")
        return self


class RLExperimentParams(_Strict):
    cpu: list[str] = []  # bindings the cpu profile adds to training
    paper: list[str] = []  # bindings the paper profile adds to training (e.g. a stated reduced MuJoCo budget)
    test: list[str] = []  # bindings the meta-test adds in every profile (e.g. a baseline's tuned fine-tuning α)
    seeds: int = PositiveInt  # required: training seeds (metalearning.replicates): seed, seed + 1, …


class RLSharedParams(RLExperimentParams):
    """An experiment meta-tested on another experiment's trained models, which its own files and
    profile bindings would train identically (the test stage checks it): only its meta-test
    protocol differs. Its ``cpu``/``paper`` lists are the bindings it would train with."""

    model: str  # the experiment of rl.experiments whose models (every training seed) it meta-tests


class RL(_Strict):
    threads: int = PositiveInt
    nproc: int | None = Field(default=None, ge=1)  # processes per RL training stage; None: the profile's
    # where the RL stages run; None: the profile's (small policies, CPU rollouts: a GPU machine's paper
    # profile runs them on its CPU cores, in rl.nproc processes)
    device: Optional[str] = Field(default=None, pattern=r"^(cpu|auto|cuda(:[0-9]+)?)$")
    meta_test_seed: int
    navigation: dict[str, RLExperimentParams]
    locomotion: dict[str, RLExperimentParams]
    experiments: dict[str, RLExperimentParams]
    shared: dict[str, RLSharedParams] = {}  # meta-tested on another experiment's models (not trained again)

    @model_validator(mode="after")
    def _shared_models_are_trained(self) -> RL:
        for name, entry in self.shared.items():
            if name in self.experiments:
                raise ValueError(f"shared.{name}: also listed under experiments (train it, or share a model: not both)")
            if entry.model not in self.experiments:
                raise ValueError(f"shared.{name}.model: {entry.model!r} is not one of experiments "
                                 f"({', '.join(self.experiments)})")
            if entry.seeds > self.experiments[entry.model].seeds:
                raise ValueError(f"shared.{name}.seeds: {entry.seeds}, but {entry.model} trains "
                                 f"{self.experiments[entry.model].seeds} seed(s)")
        return self


class ParamsFile(_Strict):
    """The schema of params.yaml (every key DVC tracks and the stages read)."""

    profile: Literal["cpu", "paper"]
    numerics: Literal["native", "portable"]  # metalearning.numerics: portable = the same bits on any AVX2 host
    seed: int
    threads: int = PositiveInt
    run_db: RunDB
    profiles: dict[Literal["cpu", "paper"], Profile]
    data: Data
    sine: Sine
    omniglot: FewShot
    miniimagenet: Optional[FewShot] = None  # the paper pipeline's (paper/params.yaml); images are user-supplied
    rl: RL

    @model_validator(mode="after")
    def _profile_defined(self) -> ParamsFile:
        if self.profile not in self.profiles:
            raise ValueError(f"profile {self.profile!r} has no entry under profiles (defined: {sorted(self.profiles)})")
        fewshot = {"omniglot": self.omniglot, "miniimagenet": self.miniimagenet}
        for task, section in fewshot.items():
            for name, experiment in (section.experiments if section else {}).items():
                if getattr(experiment, self.profile) is None:
                    raise ValueError(f"{task}.experiments.{name}.{self.profile}: required under profile {self.profile}"
                                     " (the bindings this profile adds to training; may be [])")
        if self.omniglot.split_seed is None:
            raise ValueError("omniglot.split_seed is required (the seeded 1200/1623 character split)")
        if self.profile == "cpu" and self.profiles["cpu"].sine_meta_iterations is None:
            raise ValueError("profiles.cpu.sine_meta_iterations must be a number: null trains the papers' budgets")
        return self


class ParamsError(ValueError):
    """params.yaml does not match :class:`ParamsFile`; the message names the file, key and allowed values."""


def load_params(path: Path = DEFAULT_PARAMS, *, validate: bool = True) -> dict[str, Any]:
    """The params file as a dict, checked against :class:`ParamsFile` (every stage reads it
    through here, so a wrong profile, a missing budget or a misspelt key stops every stage
    before it runs anything).

    Raises:
        FileNotFoundError: no such file.
        ParamsError: it does not match the schema (one line: file, key, what is allowed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at top level")
    if validate:
        check_params(params, path)
    return params


def stage_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """:func:`load_params` for a pipeline stage: a bad params file ends the stage with one line
    naming the key at fault (exit code 2), not a traceback. Checks that the numerics in force
    are ``numerics`` (dvc.yaml runs each stage with ``METALEARNING_NUMERICS=${numerics}``, so
    ``import metalearning`` applied them before torch loaded)."""
    try:
        params = load_params(path)
        set_numerics(params["numerics"], f"{path}: numerics")
        return params
    except (FileNotFoundError, ParamsError, RuntimeError) as err:
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def check_params(params: dict, origin: Path = DEFAULT_PARAMS) -> None:
    """Raise :class:`ParamsError` naming the first key of ``params`` that breaks :class:`ParamsFile`."""
    try:
        ParamsFile.model_validate(params)
    except ValidationError as err:
        first = err.errors()[0]
        key = "".join(f"{part}: " if i == len(first["loc"]) - 1 else f"{part}." for i, part in enumerate(first["loc"]))
        got = "" if first["type"] in ("missing", "value_error") else f" (got {first['input']!r})"
        raise ParamsError(f"{origin}: {key}{first['msg'].removeprefix('Value error, ')}{got}") from None


def _get(params: dict, dotted: str, origin: Path) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{origin}: missing key {dotted!r}")
        node = node[part]
    return node


def active_profile(params: dict, origin: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The section of ``profiles`` named by ``profile`` (``cpu`` or ``paper``)."""
    name = _get(params, "profile", origin)
    profiles = _get(params, "profiles", origin)
    if name not in profiles:
        raise KeyError(f"{origin}: profile {name!r} is not one of profiles {sorted(profiles)}")
    return profiles[name]


def sine_bindings(params: dict, origin: Path = DEFAULT_PARAMS) -> list[str]:
    """Gin bindings the active profile imposes on every sine experiment."""
    iterations = active_profile(params, origin).get("sine_meta_iterations")
    return [] if iterations is None else [f"MetaTrainer.meta_iterations = {int(iterations)}"]


def stage_launch(params: dict, origin: Path = DEFAULT_PARAMS, task: str | None = None) -> tuple[str | None, int]:
    """(device, processes) of a stage under the active profile. The device is None for ``cpu``,
    MetaTrainer's default: a cpu stage adds no binding to the configs it records. A task
    section's own ``device`` and ``nproc`` (``rl.device``, ``rl.nproc``: rollouts are CPU work)
    override the profile's."""
    profile = active_profile(params, origin)
    section = params.get(task, {}) if task else {}  # validated by ParamsFile
    device = str(section.get("device") or profile.get("device", "cpu"))
    own = section.get("nproc")
    return (None if device == "cpu" else device), int(own if own is not None else profile.get("nproc", 1))


def omniglot_variant(params: dict, origin: Path = DEFAULT_PARAMS) -> str:
    """The Omniglot variant (``small`` or ``full``) of the active profile."""
    return _get(active_profile(params, origin), "omniglot_variant", origin)


def experiment_bindings(params: dict, task: str, experiment: str, origin: Path = DEFAULT_PARAMS) -> list[str]:
    """Gin bindings the active profile imposes on one experiment of ``<task>.experiments``
    (``omniglot``, ``rl``).

    The ``cpu`` profile applies the experiment's ``cpu`` list, the ``paper`` profile its ``paper``
    list (RL only: e.g. a stated reduced MuJoCo budget; none by default).
    """
    entry = experiment_entry(params, task, experiment, origin)
    return [str(b) for b in entry.get(params["profile"], [])] if isinstance(entry, dict) else []


def shared_entries(params: dict, task: str) -> dict[str, Any]:
    """``<task>.shared`` (meta-RL: experiments meta-tested on another's models); empty elsewhere."""
    return params.get(task, {}).get("shared") or {}


def experiment_entry(params: dict, task: str, experiment: str, origin: Path = DEFAULT_PARAMS) -> Any:
    """The params entry of ``experiment`` in ``<task>.experiments``, or (meta-RL) ``rl.shared``."""
    shared = shared_entries(params, task)
    if experiment in shared:
        return shared[experiment]
    return _get(params, f"{task}.experiments.{experiment}", origin)


def meta_tested_experiments(params: dict, task: str) -> list[str]:
    """Every experiment of ``<task>`` with meta-test results: ``experiments``, then ``shared`` (RL)."""
    return [*params[task]["experiments"], *shared_entries(params, task)]


def shared_experiments(params: dict, task: str) -> dict[str, str]:
    """``{experiment: the experiment whose trained models it is meta-tested on}`` (``rl.shared``)."""
    return {name: str(entry["model"]) for name, entry in shared_entries(params, task).items()}


def rl_experiment_test_bindings(params: dict, experiment: str, origin: Path = DEFAULT_PARAMS) -> list[str]:
    """RL experiment ``experiment``'s own meta-test bindings (its ``test`` list, any profile)."""
    return [str(b) for b in experiment_entry(params, "rl", experiment, origin).get("test", [])]


def rl_test_bindings(params: dict, experiment: str, origin: Path = DEFAULT_PARAMS) -> list[str]:
    """The meta-test bindings of RL experiment ``experiment``: the seed of the new tasks
    (``rl.meta_test_seed``), then :func:`rl_experiment_test_bindings`."""
    seed = f"MetaRL.eval_seed = {int(params['rl']['meta_test_seed'])}"
    return [seed, *rl_experiment_test_bindings(params, experiment, origin)]


def episode_set_names(experiments: dict, name: str) -> list[str]:
    """The meta-test episode sets of experiment ``name`` in a params ``<task>.experiments`` section.

    ``episodes`` names one set or lists several: Meta-SGD's 5-shot Omniglot numbers come from
    its 1-shot model (meta-sgd.md §4.2), i.e. ``episodes: [5w1s, 5w5s]``.

    Raises:
        KeyError: no such experiment, or it names no episode set.
    """
    if name not in experiments:
        raise KeyError(f"no experiment {name!r} in params (known: {', '.join(experiments)})")
    sets = experiments[name].get("episodes") if isinstance(experiments[name], dict) else None
    sets = [sets] if isinstance(sets, str) else list(sets or [])
    if not sets:
        raise KeyError(f"experiment {name!r} names no meta-test episode set (key `episodes`)")
    return [str(s) for s in sets]


DATA_DIR = Path("data")  # where the data stages write and the task configs read
# Each few-shot task config's data-file bindings, relative to the data directory; with DATA_DIR they are
# what configs/tasks/<task>.gin binds (tests/test_paper_pipeline.py checks it).
DATA_FILES = {
    "omniglot": {"omniglot_classes.data_file": "omniglot/omniglot.npz",
                 "omniglot_classes.split_file": "omniglot/split.json"},
    "miniimagenet": {"meta_train/miniimagenet_classes.data_file": "miniimagenet/miniimagenet_meta_train.npz",
                     "meta_test/miniimagenet_classes.data_file": "miniimagenet/miniimagenet_meta_test.npz"},
}


def data_bindings(task: str, data_dir: Path | str = DATA_DIR) -> list[str]:
    """Gin bindings that point ``task``'s config at its data files under ``data_dir`` (a second
    pipeline keeps its own data, e.g. ``paper/data``); none for the default directory, where the
    task configs already point, or for tasks without data files (sine, rl)."""
    if Path(data_dir) == DATA_DIR:
        return []
    return [f"{key} = {str(Path(data_dir) / rel)!r}" for key, rel in DATA_FILES.get(task, {}).items()]


EXPERIMENT_DIRS = {"rl": Path("configs/rl/experiments")}  # every other section: configs/experiments


def task_threads(params: dict, task: str) -> int:
    """Torch threads of a stage of ``task``: the section's ``threads``, else the top-level one."""
    section = params.get(task, {})
    return int(section.get("threads", params["threads"]))


def stage_settings(params: dict, task: str, experiment: str,
                   origin: Path = DEFAULT_PARAMS) -> tuple[Path, list[str], int]:
    """(experiment gin file, the bindings the active profile imposes, torch threads) of one
    training stage of ``task`` (``sine``, ``omniglot``, ``rl``)."""
    config = EXPERIMENT_DIRS.get(task, Path("configs/experiments")) / f"{experiment}.gin"
    if task == "sine":
        bindings = sine_bindings(params, origin)
    else:
        bindings = experiment_bindings(params, task, experiment, origin)
    return config, bindings, task_threads(params, task)
