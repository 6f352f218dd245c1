"""``metalearning runs ls|show|compare|export|sync``: the run database from the command line.

``add_runs_parser(subparsers)`` registers the ``runs`` command on the platform's argparse
subparsers; each handler is ``args.fn(args) -> int`` (the exit code). Every subcommand reads
the file store in ``--runs-dir`` unless MongoDB is configured (``--mongo URL`` >
``$METALEARNING_MONGO_URL`` > ``--params`` file's ``run_db.mongo_url``; ``--local`` forces the
file store). Errors print one line naming what is at fault (redacted URL, run id, ``--where``
term) and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from metalearning.rundb.store import DIED_AFTER_S
from metalearning.rundb.target import DEFAULT_TIMEOUT_MS, RunDBError

DEFAULT_COLUMNS = ["id", "name", "status", "start_time", "duration_s", "algorithm", "shots", "seed"]
PIPE_WIDTH = 200  # rich's width when stdout is not a terminal (80 would fold most tables)
DESCRIPTION = (
    "Query the runs that Sacred recorded: the file store in --runs-dir, or MongoDB when one is configured "
    "(--mongo URL, else $METALEARNING_MONGO_URL, else run_db.mongo_url in the --params file); --local reads "
    "the file store even then. Errors print one line naming what is at fault and exit with status 2.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with each option's default appended, except defaults that say nothing
    (None, False, an empty list): those options' help says what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def add_runs_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``runs`` and its subcommands on ``subparsers`` (from ``add_subparsers``)."""
    runs = subparsers.add_parser("runs", help="query the run database (file store or MongoDB)",
                                 description=DESCRIPTION, formatter_class=HelpFormatter)
    sub = runs.add_subparsers(dest="runs_command", required=True, metavar="{ls,show,compare,export,sync}",
                              help="what to do with the runs")
    store, selection, status = _store_options(), _selection_options(), _status_options()

    def command(name: str, parents: list, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=parents, help=summary, description=description,
                              formatter_class=HelpFormatter)

    p = command("ls", [store, selection, status], "list runs (filter, sort, columns)",
                "List the selected runs as a table, one line per run. A RUNNING run whose last heartbeat "
                "is older than --died-after seconds was killed and is shown as DIED.")
    p.add_argument("--columns", help="comma-separated keys (default: id, name, status, start_time, duration_s, "
                                     "algorithm, shots, seed and every result.* key)")
    p.add_argument("--limit", type=int, help="at most this many runs, after sorting (default: all)")
    p.add_argument("--group-over", action="append", default=[], metavar="KEY",
                   help="one line per group of runs that agree on everything but KEY (repeatable; e.g. seed): "
                        "the runs, their KEY values, and each result's mean and Student-t 95%% CI across them")
    p.set_defaults(fn=_guarded(_ls))
    p = command("show", [store, status], "one run: config, gin, metrics, artifacts, git",
                "Print one run in full: command, status, git commit, config, result, a summary of each "
                "metric, artifacts, data checksums and the operative gin config.")
    p.add_argument("run_id", metavar="ID", help="the run's id, as `runs ls` lists it")
    p.add_argument("--no-gin", dest="gin", action="store_false", help="leave out the operative gin config")
    p.set_defaults(fn=_guarded(_show))
    p = command("compare", [store, status], "config differences and final metrics side by side",
                "Print several runs side by side: the config keys whose values differ (every key with "
                "--all), then results and the last value of each metric.")
    p.add_argument("run_ids", nargs="+", metavar="ID", help="the runs' ids (at least two)")
    p.add_argument("--all", dest="all_keys", action="store_true", help="every config key, not only changes")
    p.set_defaults(fn=_guarded(_compare))
    p = command("export", [store, selection, status], "runs as CSV or JSON, one row each",
                "Write the selected runs as CSV or JSON records, one per run, with id, status, algorithm "
                "and shots, then config.*, result.* and metric.* columns.")
    p.add_argument("--format", choices=["csv", "json"], default="csv", help="output format")
    p.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    p.add_argument("--no-metrics", dest="metrics", action="store_false", help="leave out metric.* columns")
    p.set_defaults(fn=_guarded(_export))
    p = command("sync", [store], "upload local runs that MongoDB missed (idempotent)",
                "Upload to the configured MongoDB the local runs it missed (it was down, or failed "
                "mid-run). Running it again uploads nothing twice.")
    p.add_argument("--include-running", action="store_true",
                   help="also upload runs still marked RUNNING (e.g. killed), replaced on the next sync")
    p.set_defaults(fn=_guarded(_sync))
    return runs


def _store_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="file store directory")
    p.add_argument("--mongo", metavar="URL", help="MongoDB URL (default: $METALEARNING_MONGO_URL, else the "
                                                  "--params file's, else none: the file store)")
    p.add_argument("--local", action="store_true", help="read the file store even if MongoDB is configured")
    p.add_argument("--params", type=Path, help="params file whose run_db.mongo_url names the MongoDB "
                                               "(default: none)")
    p.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS,
                   help="MongoDB server selection timeout in milliseconds")
    return p


def _selection_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="filter on a key (config path, result.X, metric.X, algorithm, shots, status…); "
                        "also !=, <, <=, >, >=, ~ (contains); repeat to AND")
    p.add_argument("--status", action="append", default=[],
                   help="keep runs with this status: COMPLETED, FAILED, RUNNING, DIED… (repeatable; default: all)")
    p.add_argument("--since", help="started at or after this ISO date/time (UTC)")
    p.add_argument("--until", help="started before this ISO date/time (UTC)")
    p.add_argument("--sort", default="id", help="comma-separated keys, -key for descending; "
                                                "write --sort=-key for a first key with -")
    return p


def _status_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--died-after", type=_seconds, default=DIED_AFTER_S, metavar="SECONDS",
                   help="show a RUNNING run whose last heartbeat is older than this as DIED "
                        "(Sacred beats every 10 s)")
    return p


def _seconds(text: str) -> float:
    """A positive number of seconds (an argparse type: errors name the option)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The handler, with run-database errors turned into one stderr line and exit code 2."""
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (RunDBError, FileNotFoundError, ValueError) as err:  # ValueError: a bad params file
            print(f"metalearning runs {args.runs_command}: error: {err}", file=sys.stderr)
            return 2
    run.__doc__ = handler.__doc__
    return run


def _console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def _store(args: argparse.Namespace):
    """The store to read; a MongoDB that fails suggests --local (only then: it reads files anyway)."""
    from metalearning.rundb.store import open_store
    from metalearning.rundb.target import StoreUnavailable, resolve_mongo_url

    url = None if args.local else resolve_mongo_url(args.mongo, params_path=args.params)
    try:
        return open_store(args.runs_dir, url, local=url is None, timeout_ms=args.timeout_ms,
                          died_after=args.died_after)
    except StoreUnavailable as err:
        if url is None:
            raise
        raise StoreUnavailable(f"{err} (--local reads the file store in {args.runs_dir}/ instead)") from None


def _selection(args: argparse.Namespace, limit: int | None = None):
    from metalearning.rundb.query import Selection, Where, parse_date

    return Selection(where=tuple(Where.parse(w) for w in args.where), statuses=tuple(args.status),
                     since=parse_date(args.since, "--since") if args.since else None,
                     until=parse_date(args.until, "--until") if args.until else None,
                     sort=tuple(k.strip() for k in args.sort.split(",") if k.strip()), limit=limit)


def _ls(args: argparse.Namespace) -> int:
    """Print the selected runs as a table."""
    from metalearning.rundb.query import check_keys, needs_metrics, rows
    from metalearning.rundb.render import runs_table

    selection = _selection(args, args.limit)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    all_rows = rows(_store(args), metrics=needs_metrics([*selection.keys(), *(columns or [])]))
    selected = selection.apply(all_rows)
    if args.group_over:
        from metalearning.rundb.query import config_key, group_rows

        over = [config_key(k) for k in args.group_over]
        check_keys(all_rows, over, "--group-over key")
        selected = group_rows(selected, over)
        if columns is None:
            columns = ["name", "status", "algorithm", "shots", "runs", *over] + sorted(
                {k for r in selected for k in r if k.startswith("result.")})
        _console().print(runs_table(selected, columns))
        return 0
    if columns is None:
        columns = DEFAULT_COLUMNS + sorted({k for r in selected for k in r if k.startswith("result.")})
    else:
        check_keys(all_rows, columns, "--columns key")
    _console().print(runs_table(selected, columns))
    return 0


def _show(args: argparse.Namespace) -> int:
    """Print one run in full."""
    from metalearning.rundb.render import print_show

    print_show(_console(), _store(args), args.run_id, gin=args.gin)
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Print several runs side by side."""
    from metalearning.rundb.render import compare_rows, print_compare

    if len(args.run_ids) < 2:
        raise RunDBError(f"compare needs at least two run ids, got {args.run_ids}")
    print_compare(_console(), compare_rows(_store(args), args.run_ids), all_keys=args.all_keys)
    return 0


def _export(args: argparse.Namespace) -> int:
    """Write the selected runs as CSV or JSON records."""
    from metalearning.rundb.frame import frame, to_csv, to_json
    from metalearning.rundb.query import rows

    df = frame(_selection(args).apply(rows(_store(args), metrics=args.metrics)))
    text = to_csv(df) if args.format == "csv" else to_json(df)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


def _sync(args: argparse.Namespace) -> int:
    """Upload unsynced local runs to the configured MongoDB."""
    from metalearning.rundb.sync import sync
    from metalearning.rundb.target import connect, resolve_mongo_url

    url = resolve_mongo_url(args.mongo, params_path=args.params)
    if url is None:
        raise RunDBError("no MongoDB configured: pass --mongo URL or set METALEARNING_MONGO_URL")
    target = connect(url, timeout_ms=args.timeout_ms)
    report = sync(args.runs_dir, target, include_running=args.include_running)
    uploaded = ", ".join(f"{local}->{mongo}" for local, mongo in report.uploaded.items()) or "none"
    print(f"uploaded {len(report.uploaded)} run(s) from {args.runs_dir}/ to {target.describe()} "
          f"(local id->MongoDB id: {uploaded}); {len(report.already_synced)} already synced")
    if report.still_running:
        print(f"not uploaded, still RUNNING: {', '.join(report.still_running)} (use --include-running "
              "for runs that died without a final status)")
    return 0
