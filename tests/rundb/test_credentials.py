"""No fragment of a MongoDB user name or password reaches a person, whatever characters they hold.

Every RFC 3986 reserved character, raw or percent-encoded, in the user name and in the password,
with one host, several hosts and ``mongodb+srv://``. Each credential is two distinctive halves
joined by the character, so a leak of either half is caught. The user name is masked along with
the password (``mongodb://***@host``).
"""

from __future__ import annotations

import warnings
from urllib.parse import quote, unquote, unquote_plus

import dns.resolver
import pymongo.database
import pymongo.errors
import pytest

from metalearning.rundb.observers import MirrorObserver
from metalearning.rundb.target import RunDBWarning, StoreUnavailable, connect, redact, scrub
from metalearning.runs import _mongo_target, recorded_run

from .conftest import runs_cli

RESERVED = ":/?#[]@!$&'()*+,;=%"
USER = ("Uq7Alice", "Vb8Bob")
PASSWORD = ("Kq7Left", "Zx9Right")
FRAGMENTS = (*USER, *PASSWORD)
HOSTS = {"one host": ("mongodb://", "127.0.0.1:1/sacred"),
         "two hosts": ("mongodb://", "127.0.0.1:1,127.0.0.1:2/sacred"),
         "srv": ("mongodb+srv://", "cluster0.invalid/sacred")}


def credentials() -> list:
    """``(user:password, id)`` with each reserved character raw and encoded, in user and password."""
    out = []
    for char in RESERVED:
        for encoded in (False, True):
            joint = quote(char, safe="") if encoded else char
            kind = "encoded" if encoded else "raw"
            out.append(pytest.param(f"{joint.join(USER)}:{''.join(PASSWORD)}", id=f"user-{kind}-{char}"))
            out.append(pytest.param(f"{USER[0]}:{joint.join(PASSWORD)}", id=f"password-{kind}-{char}"))
    return out


def leaks(text: str) -> list[str]:
    return [f for f in FRAGMENTS if f in text]


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch):
    """Fail a test that would resolve a ``mongodb+srv://`` name (no DNS in tests)."""
    lookups = []

    def resolve(*args, **kwargs):
        lookups.append(args)
        raise dns.resolver.NoNameservers("DNS lookups are not allowed in tests")

    monkeypatch.setattr(dns.resolver, "resolve", resolve)
    yield
    assert not lookups


@pytest.mark.parametrize("hosts", HOSTS)
@pytest.mark.parametrize("userinfo", credentials())
def test_redact_shows_the_scheme_and_hosts_and_nothing_of_the_credentials(userinfo, hosts):
    scheme, rest = HOSTS[hosts]
    assert redact(f"{scheme}{userinfo}@{rest}") == f"{scheme}***@{rest}"


@pytest.mark.parametrize("hosts", HOSTS)
@pytest.mark.parametrize("userinfo", credentials())
def test_scrub_masks_credentials_wherever_a_driver_puts_them(userinfo, hosts):
    scheme, rest = HOSTS[hosts]
    url = f"{scheme}{userinfo}@{rest}"
    user, _, password = userinfo.partition(":")
    echoed = [url, userinfo, user, password, unquote(user), unquote(password), unquote_plus(password),
              f"{scheme}{userinfo}", f"{userinfo}@{rest}"]
    assert leaks(scrub("driver says: " + " | ".join(echoed), url)) == []


@pytest.mark.parametrize("hosts", HOSTS)
@pytest.mark.parametrize("userinfo", credentials())
def test_connect_names_the_database_or_the_bad_url_without_credentials(userinfo, hosts):
    scheme, rest = HOSTS[hosts]
    try:
        target = connect(f"{scheme}{userinfo}@{rest}", timeout_ms=50)
    except StoreUnavailable as err:
        assert leaks(str(err)) == [] and "***@" in str(err)
    else:
        assert leaks(target.label + target.key + target.describe()) == []
        assert target.db_name == "sacred"


@pytest.mark.parametrize("hosts", HOSTS)
@pytest.mark.parametrize("userinfo", credentials())
def test_recording_warns_without_credentials(userinfo, hosts, tmp_path):
    """A URL pymongo rejects is warned about; a mid-run failure is warned about by the mirror."""
    scheme, rest = HOSTS[hosts]
    url = f"{scheme}{userinfo}@{rest}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target = _mongo_target(url)
        if target is not None:
            mirror = MirrorObserver(target, tmp_path)
            mirror._guard("start", _fail_with(url))
            assert mirror.failed and leaks(repr(mirror)) == []
    messages = [str(w.message) for w in caught if issubclass(w.category, RunDBWarning)]
    assert len(messages) == 1 and leaks(messages[0]) == []


def _fail_with(url: str):
    """A driver call failing with an error that echoes the URL and its decoded credentials."""
    user, _, password = url.split("://", 1)[1].rpartition("@")[0].partition(":")

    def call(*args, **kwargs):
        raise pymongo.errors.OperationFailure(f"Authentication failed for {unquote_plus(user)} "
                                              f"({unquote_plus(password)}) at {url}")
    return call


@pytest.mark.parametrize("userinfo", credentials())
def test_runs_ls_error_names_the_url_without_credentials(userinfo, tmp_path, capsys, monkeypatch):
    """The server "answers" with an error echoing the URL (no network: a real timeout takes 0.5 s)."""
    url = f"mongodb://{userinfo}@127.0.0.1:1/sacred"
    monkeypatch.setattr(pymongo.database.Database, "command", _fail_with(url))
    assert runs_cli("ls", "--mongo", url, "--runs-dir", str(tmp_path), "--timeout-ms", "20") == 2
    out = capsys.readouterr()
    assert "mongodb://***@127.0.0.1:1/sacred" in out.err and leaks(out.out + out.err) == []


@pytest.mark.parametrize("url", [
    "mongodb://Uq7Alice:Kq7Left/Zx9Right@127.0.0.1:1/sacred",  # pymongo rejects it: warned, recorded locally
    "mongodb://Uq7Alice:Kq7Left%40Zx9Right@127.0.0.1:1/sacred?serverSelectionTimeoutMS=50",  # unreachable
])
def test_a_recorded_run_warns_once_without_the_password(url, tmp_path):
    with pytest.warns(RunDBWarning) as caught:
        result, _ = recorded_run("meta-train", lambda run: {"x": 1.0}, config={"seed": 0},
                                 runs_dir=tmp_path / "runs", mongo_url=url)
    messages = [str(w.message) for w in caught if issubclass(w.category, RunDBWarning)]
    assert result == {"x": 1.0} and len(messages) == 1
    assert "mongodb://***@127.0.0.1:1/sacred" in messages[0]
    assert leaks(messages[0]) == []


@pytest.mark.parametrize("url, shown", [
    ("mongodb://db.example:27017/sacred", "mongodb://db.example:27017/sacred"),  # nothing to hide
    ("mongodb://u:p@h1:1,h2:2/db", "mongodb://***@h1:1,h2:2/db"),
    ("mongodb://alice:pw@db.example/runs?appName=me@lab", "mongodb://***@lab"),  # '@' never shown
    ("mongodb://alice:Kq7Left", "mongodb://***"),  # not a URL pymongo reads, and no '@': all masked
    ("alice:Kq7Left@db.example", "***@db.example"),  # no scheme
    ("", ""),
])
def test_redact_edge_cases(url, shown):
    assert redact(url) == shown
