"""GUI tests run offscreen with the real worker and the real starter model."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
