"""Loading gin configs with errors that name the file at fault, and exporting them for Sacred."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import gin

with warnings.catch_warnings():  # gin registers every torch.nn loss, deprecated ones included
    warnings.simplefilter("ignore", FutureWarning)
    import gin.torch.external_configurables  # noqa: F401  (binds @torch.optim.Adam etc.)

# Importing the modules registers their configurables with gin.
import metalearning.core.algorithms  # noqa: F401,E402
import metalearning.core.anil  # noqa: F401,E402
import metalearning.core.mamlpp  # noqa: F401,E402
import metalearning.data.episodes  # noqa: F401,E402
import metalearning.data.image_format  # noqa: F401,E402
import metalearning.data.miniimagenet  # noqa: F401,E402
import metalearning.data.omniglot  # noqa: F401,E402
import metalearning.learners.classification  # noqa: F401,E402
import metalearning.learners.conv  # noqa: F401,E402
import metalearning.learners.mlp  # noqa: F401,E402
import metalearning.rl.configurables  # noqa: F401,E402
import metalearning.tasks.sine  # noqa: F401,E402
import metalearning.training  # noqa: F401,E402


def _drop_gin_probe_errors(record: logging.LogRecord) -> bool:
    """gin's package-resource reader logs an ERROR for every include search path it misses,
    even when a later search path resolves the include; a truly missing file still raises."""
    return not (record.module == "resource_reader" and record.getMessage().startswith("Path not found"))


logging.getLogger().addFilter(_drop_gin_probe_errors)


T = TypeVar("T")


class ConfigError(ValueError):
    """A gin file or binding that cannot be parsed or names an unknown configurable/parameter."""


def configs_root(path: Path) -> Path:
    """The ``configs/`` directory containing ``path`` (gin ``include``s are relative to it)."""
    for parent in Path(path).resolve().parents:
        if parent.name == "configs":
            return parent
    return Path(path).resolve().parent


PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # the shipped configs (a source checkout)


class ConfigWarning(UserWarning):
    """A config that parses but probably does not say what was meant (e.g. a macro nothing reads)."""


def load_config(files: Iterable[Path], bindings: Iterable[str] = ()) -> str:
    """Clear gin and parse ``files`` then ``bindings``; return the full config text.

    ``include`` paths resolve against the ``configs/`` folder above each file and the shipped
    ``configs/`` (so a user's own .gin anywhere can ``include 'experiments/maml_sine_5shot.gin'``).
    A macro that no binding reads (``inner_lrr = 0.1``, a typo) is warned about (ConfigWarning).

    Raises:
        FileNotFoundError: a config file does not exist.
        ConfigError: a file, include or binding is malformed or missing, or names an unknown
            configurable or parameter; the message names the file (or the binding) and gin's reason.
    """
    gin.clear_config()
    if PACKAGE_CONFIGS.is_dir():
        gin.add_config_file_search_path(str(PACKAGE_CONFIGS))
    for path in map(Path, files):
        if not path.is_file():
            raise FileNotFoundError(f"gin config not found: {path}")
        gin.add_config_file_search_path(str(configs_root(path)))
        _parse(lambda: gin.parse_config_file(str(path)), f"gin file {path}")
    for binding in bindings:
        _parse(lambda: gin.parse_config(binding), f"gin binding {binding!r}")
    text = gin.config_str()
    _warn_unread_macros(text)
    return text


def _warn_unread_macros(text: str) -> None:
    read = set(re.findall(r"%([A-Za-z_][\w.]*)", text))
    for name in sorted(set((config_as_dict().get("macros") or {})) - read):
        warnings.warn(f"gin macro {name!r} is set but no binding reads it (a typo?)", ConfigWarning, stacklevel=3)


def build(configurable: Callable[[], T], origin: str) -> T:
    """Call a gin configurable (e.g. ``MetaTrainer``) and turn gin's multi-line errors for a
    missing, mistyped or out-of-range binding into one :class:`ConfigError` line."""
    try:
        return configurable()
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{origin}: {_one_line(err)}") from err


def _one_line(err: Exception) -> str:
    """gin's message reduced to its first line, naming the configurable and missing bindings."""
    text = str(err)
    owner = re.search(r"In call to configurable '([\w.]+)'", text)
    missing = re.search(r"No values supplied by Gin or caller for arguments: \[([^\]]*)\]", text)
    macro = re.search(r"In call to configurable 'macro' .* in scope '([\w.]+)'", text)
    if macro:
        return f"macro %{macro.group(1)} is read but never set"
    init = re.match(r"(\w+)\.__init__\(\) missing \d+ required (?:keyword-only |positional )?arguments?: (.+)", text)
    if init:
        names = re.findall(r"'(\w+)'", init.group(2))
        return "no value bound for " + ", ".join(f"{init.group(1)}.{n}" for n in names)
    if owner and missing:
        names = [n.strip(" '\"") for n in missing.group(1).split(",")]
        return "no value bound for " + ", ".join(f"{owner.group(1)}.{n}" for n in names)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first if not owner or owner.group(1) in first else f"{owner.group(1)}: {first}"


def load_config_text(text: str, origin: str) -> None:
    """Clear gin and parse a saved config (e.g. from a checkpoint)."""
    gin.clear_config()
    _parse(lambda: gin.parse_config(text), origin)


def _parse(parse, origin: str) -> None:
    try:
        parse()
    except (ValueError, SyntaxError, KeyError, TypeError, NameError, OSError) as err:
        raise ConfigError(f"{origin}: {_one_line(err)}") from err


def _plain(value: Any) -> Any:
    """A JSON/BSON-friendly rendering of a bound gin value."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)  # @references and %macros print as they are written


def config_as_dict() -> dict[str, Any]:
    """All current bindings as ``{"macros": {...}, "MAML": {"inner_lr": ...}, "train/MAML": ...}``.

    Keys never contain dots (Sacred and MongoDB forbid them): configurables are named by
    their last component, as ``gin.config_str()`` names them.
    """
    out: dict[str, Any] = {}
    for (scope, selector), params in gin.config._CONFIG.items():  # gin 0.5 keeps bindings here
        if selector == "gin.macro":
            out.setdefault("macros", {})[scope] = _plain(params["value"])
            continue
        name = selector.rsplit(".", 1)[-1]
        key = f"{scope}/{name}" if scope else name
        out.setdefault(key, {}).update({p: _plain(v) for p, v in params.items()})
    return out
