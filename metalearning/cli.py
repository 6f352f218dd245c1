"""``python -m metalearning …`` / ``metalearning …``: the platform's command line."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from metalearning.rundb.cli import HelpFormatter, add_runs_parser
from metalearning.runs import DEFAULT_RUNS_DIR

MONGO_ENV = "METALEARNING_MONGO_URL"
DESCRIPTION = ("The meta-learning platform: meta-train, resume, meta-test and adapt models, write reports, "
               "and query the Sacred run records. `metalearning COMMAND --help` describes each command.")


def _print_result(result: dict) -> None:
    print(" ".join(f"{k}={v:.6g}" for k, v in result.items()))


def _train(args) -> None:
    from metalearning import commands

    _print_result(commands.train(args.config, args.bind, seed=args.seed, out_dir=args.out, runs_dir=args.runs_dir,
                                 progress=not args.quiet, checkpoint_every=args.checkpoint_every,
                                 mongo_url=args.mongo, force=args.force, device=args.device))


def _resume(args) -> None:
    from metalearning import commands

    _print_result(commands.resume(args.checkpoint, out_dir=args.out, runs_dir=args.runs_dir, progress=not args.quiet,
                                  checkpoint_every=args.checkpoint_every, mongo_url=args.mongo, device=args.device))


def _test(args) -> None:
    from metalearning import commands

    _print_result(commands.test(args.checkpoint, args.test_set, out_dir=args.out, runs_dir=args.runs_dir,
                                bindings=args.bind, mongo_url=args.mongo, device=args.device))


def _split_sine(args) -> None:
    from metalearning.tasks.sine_metatest import split_sine

    split_sine(args.config, args.bind, shots=args.shots, curves=args.curves, repeats=args.repeats, seed=args.seed,
               out=args.out)


def _report(args) -> None:
    from metalearning.report.sections import write_section_report

    out = write_section_report(args.task, params_path=args.params, metrics=args.metrics, models=args.models,
                               out=args.out)
    print(f"wrote {out / 'README.md'}")


def _bench(args) -> None:
    from metalearning import bench

    if args.rollouts:
        from metalearning.rl import bench_rollouts

        bench_rollouts.main()
    elif args.trpo:
        from metalearning.rl import bench_trpo

        bench_trpo.main(args.config, args.bind, args.iterations, args.threads)
    elif args.config:
        bench.print_data_share(args.config, args.bind, 50 if args.iterations is None else args.iterations, args.threads)
    else:
        bench.main(args.settings, args.iterations, args.threads, memory=not args.no_memory, device=args.device)


def _adapt(args) -> None:
    from metalearning import adapt_images as ai
    from metalearning.metrics_io import write_json

    if args.json is not None and args.json.is_dir():
        raise ValueError(f"--json {args.json} is a folder; give the path of the JSON file to write")
    model = ai.load_adaptable(args.checkpoint)
    support = ai.read_support_folder(args.support, model.image_format)
    if len(support.class_names) != model.ways:
        print(f"{model.ways}-way model, {len(support.class_names)} support classes: a new "
              f"{len(support.class_names)}-way output layer initialised from {args.new_head} (see README)",
              file=sys.stderr)
        model = ai.with_ways(model, len(support.class_names), support, head_init=args.new_head)
    query = ai.read_query(args.query, model.image_format)
    predictions = ai.adapt_and_predict(model, support, query, steps=args.steps, bn_mode=args.bn_mode)
    print(f"{type(model.algorithm).__name__} {model.ways}-way, {predictions.steps} inner steps, "
          f"{predictions.bn_mode} batch norm, {len(support.files)} support / {len(query.files)} query images",
          file=sys.stderr)
    print("\n".join(ai.format_predictions(predictions)))
    if args.json:
        write_json(args.json, predictions.as_dict())


def _device_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (CUDA when available); binds "
                   f"MetaTrainer.device (default: {default})")


def _mongo_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mongo", metavar="URL", help=f"also record to this MongoDB (default: ${MONGO_ENV}, "
                   "else none); the run is always kept in --runs-dir too")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalearning", description=DESCRIPTION, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, help="what to do")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, formatter_class=HelpFormatter)

    def gin_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, action="append", required=True, help="gin file (repeatable)")
        p.add_argument("--bind", action="append", default=[], help="extra gin binding, e.g. 'shots = 5' "
                       "(repeatable)")

    def training_args(p: argparse.ArgumentParser, outputs: str) -> None:
        gin_args(p)
        p.add_argument("--seed", type=int, default=0, help="random seed of the run")
        p.add_argument("--out", type=Path, required=True, help=f"output directory ({outputs})")
        p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="Sacred file-store directory")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = command("train", "meta-train an experiment",
                "Meta-train the experiment that the gin files describe, writing checkpoints and learning "
                "curves to --out and a Sacred run record to --runs-dir (and MongoDB, if configured).")
    training_args(p, "checkpoint, curves")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="meta-iterations between checkpoints")
    p.add_argument("--force", action="store_true", help="replace the run in a non-empty --out folder")
    _device_arg(p, "the config's, else cpu")
    _mongo_arg(p)
    p.set_defaults(fn=_train)

    p = command("resume", "continue a killed/interrupted training run from its checkpoint",
                "Continue a killed or interrupted training run from its last checkpoint, with the "
                "configuration stored in it.")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt written by train")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: the checkpoint's)")
    p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="Sacred file-store directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="meta-iterations between checkpoints")
    _device_arg(p, "the one it was trained on")
    _mongo_arg(p)
    p.set_defaults(fn=_resume)

    p = command("test", "meta-test a checkpoint of any family by its protocol",
                "Meta-test a checkpoint by its task family's protocol (sine, few-shot images or meta-RL), "
                "writing metrics.json and curves to --out and a Sacred run record to --runs-dir. Under torchrun "
                "a meta-RL meta-test splits its new tasks over the processes (the same numbers as one process).")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt written by train")
    p.add_argument("--test-set", type=Path, default=None,
                   help="the fixed test set: sine, a split-sine file; few-shot, an episode set (meta-RL: none)")
    p.add_argument("--out", type=Path, required=True, help="output directory (metrics.json, curves)")
    p.add_argument("--bind", action="append", default=[], help="gin binding over the stored config, "
                   "e.g. 'MetaRL.eval_seed = 1' (repeatable)")
    p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="Sacred file-store directory")
    _device_arg(p, "the one it was trained on")
    _mongo_arg(p)
    p.set_defaults(fn=_test)

    p = command("adapt", "adapt a meta-trained checkpoint to your own few-shot images and predict",
                "Adapt a meta-trained image classifier to your own few-shot support images, then print the "
                "predicted class of each query image.")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt of a few-shot image model")
    p.add_argument("--support", type=Path, required=True, help="folder with one sub-folder of images per class")
    p.add_argument("--query", type=Path, nargs="+", required=True, help="query images and/or folders of them")
    p.add_argument("--steps", type=int, default=None, help="inner steps (default: the algorithm's eval_inner_steps)")
    p.add_argument("--bn-mode", default=None, help="transductive or non_transductive (default: as trained)")
    p.add_argument("--json", type=Path, default=None, help="also write all class probabilities here "
                   "(default: print only)")
    p.add_argument("--new-head", choices=["prototypes", "zero"], default="prototypes",
                   help="when the support set has another number of classes than the model was trained on: how "
                   "the new output layer starts (class-mean features, Proto-MAML; or zeros)")
    p.set_defaults(fn=_adapt)

    p = command("report", "write reports/<task>/ (tables beside the papers' numbers, plots) from the "
                "meta-test metrics and learning curves of one params.yaml section",
                "Write the report of one params.yaml section: tables of meta-test results beside the "
                "papers' numbers, and learning-curve plots, from its metrics and models.")
    p.add_argument("--task", required=True, help="params.yaml section: sine, omniglot or rl")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    p.add_argument("--metrics", type=Path, default=None, help="meta-test metrics (default: metrics/<task>)")
    p.add_argument("--models", type=Path, default=None, help="trained models (default: models/<task>)")
    p.add_argument("--out", type=Path, default=None, help="report directory (default: reports/<task>)")
    p.set_defaults(fn=_report)

    add_runs_parser(sub)

    p = command("split-sine", "write a fixed, seeded sine meta-test set",
                "Write a fixed, seeded sine meta-test set: for each number of shots, curves drawn from the "
                "task distribution that the gin files describe, each with repeated support draws.")
    gin_args(p)
    p.add_argument("--shots", type=int, nargs="+", required=True, help="support sizes K (one or more)")
    p.add_argument("--curves", type=int, required=True, help="sine curves (tasks) per K")
    p.add_argument("--repeats", type=int, required=True, help="support draws per curve")
    p.add_argument("--seed", type=int, required=True, help="seed of the test set")
    p.add_argument("--out", type=Path, required=True, help="file to write")
    p.set_defaults(fn=_split_sine)

    p = command("bench", "ms per meta-iteration, GFLOP/s and peak memory of the vmap path, the per-task "
                "loop and the peers' autograd loop; with --config, the share of a meta-iteration spent sampling data",
                "For each setting (sine; Omniglot O1 with MAML and FOMAML; MiniImagenet O3, on synthetic images), "
                "time the vmap path, the per-task loop, the peer libraries' per-task autograd loop and vmap in "
                "chunks of one task on the same weights and meta-batches, interleaved: ms per meta-iteration, "
                "the ratio to vmap, achieved GFLOP/s and % of a measured GEMM peak, peak and added RSS of each "
                "path run alone in a fresh process, and max |dg| and |dθ| against vmap. With --config, the share of a "
                "meta-iteration spent sampling data; with --rollouts, the meta-RL samplers' env-steps/s; with --trpo, "
                "the meta-RL iteration's phases per Hessian-vector-product method.")
    p.add_argument("--settings", default=None, help="comma-separated settings or groups: sine (sine25, sine-maml, "
                   "sine-metasgd), o1, o1-fomaml, o3, tiny, all (default: all; o3 takes minutes on 2 cores)")
    p.add_argument("--config", type=Path, action="append", default=[], help="experiment gin file(s): the data "
                   "share of its meta-iteration instead")
    p.add_argument("--bind", action="append", default=[], help="extra gin binding (repeatable; with --config)")
    p.add_argument("--iterations", type=int, default=None, help="meta-iterations timed (default: per setting, "
                   "50 sine, 10 Omniglot, 3 MiniImagenet; 50 with --config)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS processes (one per path)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto: where the paths run (peak RSS is "
                   "measured on the CPU only)")
    p.add_argument("--rollouts", action="store_true", help="env-steps/s of the meta-RL rollout samplers instead")
    p.add_argument("--trpo", action="store_true", help="a meta-RL meta-iteration split into rollouts / TRPO setup / "
                   "conjugate gradient / line search for each Hessian-vector-product method instead (--config: "
                   "meta-RL experiment files; default: MAML-TRPO and Meta-SGD-TRPO on 2D navigation, 1 thread)")
    p.set_defaults(fn=_bench)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"metalearning: {category.__name__}: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # warnings to a person: one line, no source excerpt
    args = _parser().parse_args(argv)
    try:
        code = args.fn(args)
    except (FileNotFoundError, ValueError) as err:  # ConfigError is a ValueError
        print(f"metalearning {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"metalearning {args.command}: run FAILED: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        if type(err).__name__ != "ProcessLost":  # metalearning.distributed's; anything else is a bug
            raise
        print(f"metalearning {args.command}: run FAILED: {err}; the last checkpoint is resumable", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"metalearning {args.command}: INTERRUPTED ({err}); checkpoint written, "
              "continue with `metalearning resume`", file=sys.stderr)
        return 130
    finally:
        _leave_processes()
    return code or 0


def _leave_processes() -> None:
    """Leave torchrun's process group, if the command joined one (torch imported only then)."""
    if "metalearning.distributed" in sys.modules:
        sys.modules["metalearning.distributed"].shutdown()
