"""Figures as PNG, rendered one way (an Agg canvas, no pyplot state) at one resolution, for the report and
``amber-ray interpret``."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110


def to_png(figure: Figure) -> bytes:
    """``figure`` as PNG bytes, cropped to what it draws."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()
