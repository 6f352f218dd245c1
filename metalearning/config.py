"""Loading gin configs with errors that name the file at fault, and exporting them for Sacred."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Iterable

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


class ConfigError(ValueError):
    """A gin file or binding that cannot be parsed or names an unknown configurable/parameter."""


def configs_root(path: Path) -> Path:
    """The ``configs/`` directory containing ``path`` (gin ``include``s are relative to it)."""
    for parent in Path(path).resolve().parents:
        if parent.name == "configs":
            return parent
    return Path(path).resolve().parent


def load_config(files: Iterable[Path], bindings: Iterable[str] = ()) -> str:
    """Clear gin and parse ``files`` then ``bindings``; return the full config text.

    Raises:
        FileNotFoundError: a config file does not exist.
        ConfigError: a file or binding is malformed or names an unknown configurable or
            parameter; the message names the file (or the binding) and gin's reason.
    """
    gin.clear_config()
    for path in map(Path, files):
        if not path.is_file():
            raise FileNotFoundError(f"gin config not found: {path}")
        gin.add_config_file_search_path(str(configs_root(path)))
        _parse(lambda: gin.parse_config_file(str(path)), f"gin file {path}")
    for binding in bindings:
        _parse(lambda: gin.parse_config(binding), f"gin binding {binding!r}")
    return gin.config_str()


def load_config_text(text: str, origin: str) -> None:
    """Clear gin and parse a saved config (e.g. from a checkpoint)."""
    gin.clear_config()
    _parse(lambda: gin.parse_config(text), origin)


def _parse(parse, origin: str) -> None:
    try:
        parse()
    except (ValueError, SyntaxError, KeyError, TypeError, NameError) as err:
        raise ConfigError(f"{origin}: {err}") from err


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
