"""What every benchmark plot shares: a headless matplotlib and saving a figure to a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (benchmarks run without a display)."""
    import matplotlib  # lazy: keeps matplotlib out of CLI start-up

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: keeps matplotlib out of CLI start-up

    return plt


def save(fig: Any, path: Path) -> None:
    """Lay out, write ``path`` (creating its folder) and free the figure."""
    import matplotlib.pyplot as plt  # lazy: keeps matplotlib out of CLI start-up

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
