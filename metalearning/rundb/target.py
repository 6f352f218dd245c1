"""Which MongoDB holds the runs, and how to name it without leaking credentials.

A Mongo URL may carry ``user:password@``. The URL itself is only ever handed to pymongo;
everything a person or a record sees (warnings, errors, markers, run documents) gets
``redact(url)`` or text passed through ``scrub``. Both the user name and the password are
masked (``mongodb://***@host``): a user name is often half of what an attacker needs.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, unquote_plus

ENV_VAR = "METALEARNING_MONGO_URL"
PARAMS_KEY = ("run_db", "mongo_url")
DEFAULT_DB = "sacred"  # Sacred's and Omniboard's default database name
DEFAULT_TIMEOUT_MS = 2000

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVER_DETAIL = re.compile(r" \(configured timeouts|, Timeout: |, Topology Description: ")
_PIECES = re.compile(r"[:/?#\[\]@!$&'()*+,;=%\s]+")  # RFC 3986 reserved characters, '%', blanks
_MIN_PIECE = 3  # shorter pieces of a credential would mask ordinary words in driver messages


class RunDBError(Exception):
    """A run-database problem a person can act on; the message names what is at fault."""


class StoreUnavailable(RunDBError):
    """The run store (a MongoDB server, a runs directory) cannot be reached or read."""


class RunDBWarning(UserWarning):
    """Recording goes on without MongoDB (the run stays in the local file store)."""


@dataclass(frozen=True)
class _Split:
    """A URL cut into what may be shown and what is masked: ``shown`` is the URL redacted."""

    shown: str
    secret: str  # the masked text: the user-info, or all after the scheme of a URL pymongo rejects
    parsed: dict | None  # pymongo's reading (username, password, database …); None if it rejects the URL


def _scheme(url: str) -> tuple[str, str]:
    """``("mongodb://", "the rest")``; the scheme is "" when there is none."""
    scheme = _SCHEME.match(url)
    prefix = scheme.group(0) if scheme else ""
    return prefix, url[len(prefix):]


def _pymongo_parse(url: str) -> dict | None:
    """pymongo's parse of ``url`` without DNS, or None if pymongo rejects it.

    ``mongodb+srv://`` URLs are read as ``mongodb://`` ones: pymongo splits user-info, hosts,
    database and options the same way for both, and only the SRV lookup (DNS) differs.
    """
    from pymongo.uri_parser import parse_uri

    probe = "mongodb://" + url[len("mongodb+srv://"):] if url.startswith("mongodb+srv://") else url
    try:
        with warnings.catch_warnings():  # unknown options: MongoClient warns too, and still connects
            warnings.simplefilter("ignore")
            return parse_uri(probe, warn=True)
    except Exception:  # InvalidURI, ConfigurationError, ValueError, TypeError: all mean "rejected"
        return None


def _split(url: str) -> _Split:
    """Everything between the scheme and the last '@' is user-info, whatever pymongo says.

    An unencoded '/', '?' or '@' in a password makes pymongo misread the URL (as a host, a
    database or options), so pymongo cannot say where the user-info ends; the last '@' is
    where it ends if it exists at all. The shown part therefore never holds an '@' (a URL with
    one in its options is over-masked). A URL without '@' that pymongo rejects is masked
    after the scheme: it may be a credential typed without its host.
    """
    prefix, tail = _scheme(url)
    parsed = _pymongo_parse(url)
    secret, at, hosts = tail.rpartition("@")
    if at:
        return _Split(f"{prefix}***@{hosts}", secret, parsed)
    if parsed is not None or not tail:
        return _Split(url, "", parsed)
    return _Split(f"{prefix}***", tail, None)


def redact(url: str) -> str:
    """``url`` with any user-info (``user:password@``) replaced by ``***@``.

    Robust to credentials that were not percent-encoded (see ``_split``); a string pymongo
    cannot read and that has no '@' is masked after its scheme, never printed as it is.
    """
    return _split(url).shown


def _secrets(url: str) -> set[str]:
    """Texts to mask: the user-info, raw and decoded, the user name and password, and their pieces."""
    split = _split(url)
    whole = {split.secret, unquote(split.secret), unquote_plus(split.secret)}
    if split.parsed is not None:
        whole |= {split.parsed.get("username") or "", split.parsed.get("password") or ""}
    if split.secret and ":" in split.secret:
        password = split.secret.split(":", 1)[1]
        whole |= {password, unquote(password), unquote_plus(password)}
    pieces = {p for text in whole for p in _PIECES.split(text) if len(p) >= _MIN_PIECE}
    return {s for s in whole if len(s) > 1} | pieces


def scrub(text: str, url: str | None) -> str:
    """``text`` (e.g. a driver's error message) with ``url``'s credentials masked.

    Masks the URL itself, its user-info, user name and password, raw and percent-decoded, and
    every piece of them between reserved characters (a driver that misread the URL prints
    pieces: ``Bad database name "et@host"``).
    """
    if not url:
        return text
    text = text.replace(url, redact(url))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def resolve_mongo_url(explicit: str | None = None, *, environ: Mapping[str, str] | None = None,
                      params_path: Path | None = None) -> str | None:
    """The MongoDB URL to record to, or None for the embedded file store only.

    Precedence: ``explicit`` > ``$METALEARNING_MONGO_URL`` (``environ``, default ``os.environ``)
    > ``run_db.mongo_url`` in the params file at ``params_path`` (read only when given).
    Empty strings count as unset.
    """
    if explicit:
        return explicit
    env_url = (os.environ if environ is None else environ).get(ENV_VAR)
    if env_url:
        return env_url
    if params_path is not None:
        return _params_url(Path(params_path))
    return None


def _params_url(path: Path) -> str | None:
    from metalearning.params import load_params

    node: Any = load_params(path, validate=False)  # only run_db is read here
    for part in PARAMS_KEY:
        node = node.get(part) if isinstance(node, dict) else None
    return node or None


@dataclass(frozen=True)
class MongoTarget:
    """A database to record to or read from: a pymongo (or mongomock) client and a db name.

    ``label`` names it for people (a redacted URL); ``key`` identifies it in sync markers.
    """

    client: Any
    db_name: str = DEFAULT_DB
    label: str = "mongodb"
    url: str | None = None  # kept only to scrub driver messages; never printed

    @property
    def db(self) -> Any:
        return self.client[self.db_name]

    @property
    def key(self) -> str:
        return f"{self.label.split('?')[0].rstrip('/')}#{self.db_name}"

    def describe(self) -> str:
        return f"MongoDB {self.label} (database {self.db_name!r})"

    def reason(self, err: BaseException) -> str:
        """A driver error in one short line, credentials masked."""
        return reason(err, self.url)

    def ping(self) -> None:
        """Raise StoreUnavailable (message redacted) unless the server answers."""
        try:
            self.client.admin.command("ping")
        except Exception as err:  # pymongo raises several unrelated types for "not there"
            raise StoreUnavailable(f"{self.describe()} is unreachable: {self.reason(err)}") from None


def connect(url: str, *, timeout_ms: int = DEFAULT_TIMEOUT_MS, db_name: str | None = None) -> MongoTarget:
    """A lazy client for ``url`` (no network yet); the database is the URL's path or ``sacred``.

    ``timeout_ms`` bounds server selection unless the URL sets ``serverSelectionTimeoutMS``.
    Raises StoreUnavailable (message redacted) for a malformed URL.
    """
    import pymongo

    misread = _misread(url)
    if misread:
        raise StoreUnavailable(f"bad MongoDB URL {redact(url)}: {misread}")
    options = {} if "serverselectiontimeoutms" in url.lower() else {"serverSelectionTimeoutMS": timeout_ms}
    try:
        client = pymongo.MongoClient(url, connect=False, **options)
    except Exception as err:
        raise StoreUnavailable(f"bad MongoDB URL {redact(url)}: {reason(err, url)}") from None
    return MongoTarget(client, db_name or client.get_default_database(DEFAULT_DB).name, redact(url), url)


def _misread(url: str) -> str | None:
    """Why pymongo would take part of ``url``'s credentials for its database, or None.

    pymongo ends the hosts at the first '/', so ``mongodb://me/lab:pw@host/db`` is host ``me``
    and database ``lab:pw@host``: it would connect to the wrong server and name the password as
    the database.
    """
    path = _scheme(url)[1].partition("?")[0]
    if "@" in path and "@" not in path.partition("/")[0]:
        return ("pymongo would read part of the user name or password as the database; percent-encode "
                "'/' in them as %2F (urllib.parse.quote_plus)")
    return None


def reason(err: BaseException, url: str | None) -> str:
    """``Type: message`` in one short line, ``url``'s credentials masked.

    Keeps the first line and drops pymongo's timeout settings and topology dump.
    """
    lines = str(err).splitlines()
    text = _DRIVER_DETAIL.split(lines[0] if lines else "", 1)[0]
    return scrub(f"{type(err).__name__}: {text}", url)[:300]
