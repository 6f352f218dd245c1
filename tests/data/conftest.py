"""Fixtures of the data-layer tests: the small Omniglot array built from the real archives."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest

from metalearning.data.omniglot import prepare_omniglot

REPO = Path(__file__).resolve().parents[2]
OMNIGLOT_MIRROR = REPO.parent / "shared" / "datasets" / "omniglot"


def no_network(request, timeout=None):
    """An ``opener`` for tests: any download attempt fails as if offline."""
    raise urllib.error.URLError(f"tests never touch the network ({request.full_url})")


def build_small(directory: Path) -> Path:
    if not (OMNIGLOT_MIRROR / "images_background_small1.zip").is_file():
        pytest.skip(f"Omniglot mirror archives not present in {OMNIGLOT_MIRROR}")
    return prepare_omniglot("small", directory, mirrors=[OMNIGLOT_MIRROR], opener=no_network, progress=False)


@pytest.fixture(scope="session")
def omniglot_small(tmp_path_factory) -> Path:
    """``omniglot_small.npz`` built from the real mirror archives (offline)."""
    return build_small(tmp_path_factory.mktemp("omniglot"))


@pytest.fixture(scope="session")
def omniglot_small_builds(omniglot_small, tmp_path_factory) -> tuple[Path, Path]:
    """The small array and a second, independent build of it."""
    return omniglot_small, build_small(tmp_path_factory.mktemp("omniglot_again"))
