"""The archives the data layer can fetch: official URLs and MD5 checksums.

The checksums are the project's own record (copied from the upstream MD5SUMS); a file whose
MD5 differs is never used, whether it comes from a mirror or from the network.
"""

from __future__ import annotations

from typing import NamedTuple

OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"


class Archive(NamedTuple):
    """One downloadable file.

    Attributes:
        name: file name, also the name looked up in mirror directories.
        dataset: the dataset it belongs to (names the default mirror ``shared/datasets/<dataset>``).
        url: the official download address.
        md5: its official MD5, lowercase hex.
    """

    name: str
    dataset: str
    url: str
    md5: str


def _omniglot(name: str, md5: str) -> Archive:
    return Archive(name, "omniglot", OMNIGLOT_URL + name, md5)


ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        _omniglot("images_background.zip", "68d2efa1b9178cc56df9314c21c6e718"),
        _omniglot("images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811"),
        _omniglot("images_background_small1.zip", "e704a628b5459e08445c13499850abc4"),
        _omniglot("images_background_small2.zip", "b75a71a51d3b13f821f212756fe481fd"),
    )
}


def archive(name: str) -> Archive:
    """The registered archive called ``name``; KeyError listing the known names otherwise."""
    try:
        return ARCHIVES[name]
    except KeyError:
        raise KeyError(f"unknown archive {name!r}; known: {sorted(ARCHIVES)}") from None
