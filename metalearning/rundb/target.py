"""Which MongoDB holds the runs, and how to name it without leaking credentials.

A Mongo URL may carry ``user:password@``. The URL itself is only ever handed to pymongo;
everything a person or a record sees (warnings, errors, markers, run documents) gets
``redact(url)`` or text passed through ``scrub``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote

ENV_VAR = "METALEARNING_MONGO_URL"
PARAMS_KEY = ("run_db", "mongo_url")
DEFAULT_DB = "sacred"  # Sacred's and Omniboard's default database name
DEFAULT_TIMEOUT_MS = 2000

_USERINFO = re.compile(r"(?<=://)([^@/?#]*)@")
_DRIVER_DETAIL = re.compile(r" \(configured timeouts|, Timeout: |, Topology Description: ")
_HOSTS = re.compile(r"^[A-Za-z0-9+.-]+://(?:[^@/?#]*@)?([^/?#]*)/?([^?#]*)")


class RunDBError(Exception):
    """A run-database problem a person can act on; the message names what is at fault."""


class StoreUnavailable(RunDBError):
    """The run store (a MongoDB server, a runs directory) cannot be reached or read."""


class RunDBWarning(UserWarning):
    """Recording goes on without MongoDB (the run stays in the local file store)."""


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    return _USERINFO.sub("***@", url)


def scrub(text: str, url: str | None) -> str:
    """``text`` (e.g. a driver's error message) with ``url``'s credentials masked.

    Masks the URL itself, its user-info and its password, raw and percent-decoded.
    """
    if not url:
        return text
    text = text.replace(url, redact(url))
    match = _USERINFO.search(url)
    if match:
        userinfo = match.group(1)
        secrets = {userinfo, unquote(userinfo)}
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            secrets |= {password, unquote(password)}
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
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

    node: Any = load_params(path)
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

    options = {} if "serverselectiontimeoutms" in url.lower() else {"serverSelectionTimeoutMS": timeout_ms}
    try:
        client = pymongo.MongoClient(url, connect=False, **options)
    except Exception as err:
        raise StoreUnavailable(f"bad MongoDB URL {redact(url)}: {reason(err, url)}") from None
    match = _HOSTS.match(url)
    path_db = match.group(2) if match else ""
    return MongoTarget(client, db_name or path_db or DEFAULT_DB, redact(url), url)


def reason(err: BaseException, url: str | None) -> str:
    """``Type: message`` in one short line, ``url``'s credentials masked.

    Keeps the first line and drops pymongo's timeout settings and topology dump.
    """
    lines = str(err).splitlines()
    text = _DRIVER_DETAIL.split(lines[0] if lines else "", 1)[0]
    return scrub(f"{type(err).__name__}: {text}", url)[:300]
