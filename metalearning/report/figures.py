"""Matplotlib for the reports: files only (no display on these machines), one way to save."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay out ``fig``, write it to ``path`` (PNG at ``dpi``) and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
