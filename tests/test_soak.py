"""Soak: 20,000+ frames through `describe` from a video file; resident memory must not grow.

An assistive device is worn for hours, so a leak of a few kB per frame is a crash by the
afternoon. Continuous mode runs every frame through preprocessing, both graphs and the speech
queue (change mode would skip the encoder on most of them). The loop logs a `stats` event
(frames/s, resident MB) every few seconds; memory after warm-up is compared with the end.
"""

from __future__ import annotations

import json

import pytest
from conftest import MODEL, run_cli

from export.scenes import write_clip

pytestmark = [pytest.mark.system, pytest.mark.slow]

FRAMES = 20_100  # 67 scenes of 20 s at 15 fps
MAX_GROWTH_MB = 20.0


@pytest.mark.slow
def test_twenty_thousand_frames_without_memory_growth(tmp_path):
    clip = write_clip(tmp_path / "soak.mp4", scenes=67, seed=23, seconds=20.0, fps=15)
    log = tmp_path / "log.jsonl"  # not soak.jsonl: that is the clip's own caption list
    r = run_cli(
        "runtime",
        "describe",
        str(clip),
        "--fast",
        "--mode",
        "continuous",
        "--no-speak",
        "--speech-wav",
        str(tmp_path / "soak.wav"),
        "--log",
        str(log),
        "--model",
        str(MODEL),
        "--stats-interval",
        "5",
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    stats = [l for l in lines if l["event"] == "stats"]
    end = lines[-1]
    assert end["event"] == "end" and end["frames"] == FRAMES
    assert len(stats) >= 3, stats
    warm, last = (
        stats[0],
        stats[-1],
    )  # the first is after 5 s of captioning: sessions and caches warm
    growth = last["rss_mb"] - warm["rss_mb"]
    spoken = sum(l["event"] == "spoken" and l.get("kind") == "caption" for l in lines)
    fps = end["frames"] / end["t"]
    print(
        f"\nsoak: {end['frames']} frames in {end['t']:.0f} s ({fps:.0f} frames/s), "
        f"{last['captions']} captioned, {spoken} spoken, "
        f"RSS {warm['rss_mb']:.1f} MB after warm-up -> {last['rss_mb']:.1f} MB at the end "
        f"(peak {max(s['rss_mb'] for s in stats):.1f})"
    )
    assert growth <= MAX_GROWTH_MB, stats
    assert last["captions"] == FRAMES and spoken > 60  # every frame captioned; speech kept up
