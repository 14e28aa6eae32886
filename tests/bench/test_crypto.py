"""The crypto benchmark's streaming-memory probe runs and reports a number (its size, not its speed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos_chain.bench import crypto


@pytest.mark.slow
def test_stream_peak_is_measured_and_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    peak = crypto.stream_peak_mib()
    assert 0 < peak < 64, f"streaming 1 GiB used {peak:.1f} MiB above baseline"
