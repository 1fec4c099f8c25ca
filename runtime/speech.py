"""Text to speech in its own worker thread, so speaking never blocks capture or captioning.

pyttsx3 (espeak-ng on Linux) renders each utterance to a WAV; the worker appends it to the
optional `--speech-wav` recording and plays it with `aplay` where a sound device exists.
The newest utterance wins: `say()` replaces anything still waiting, and `say(..., interrupt=True)`
also cuts off playback that is now out of date. Without an engine or a sound device it warns
once and carries on; the rest of the loop never notices.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

RATE = 22050  # espeak-ng's output rate, mono 16-bit


@dataclass(frozen=True)
class SpeechConfig:
    voice: str | None = None  # pyttsx3 voice id or name fragment, e.g. "en-us"; None: engine default
    rate: int = 175  # words per minute
    volume: float = 1.0  # 0..1
    record: str | None = None  # WAV file that receives everything spoken
    play: bool = True  # play through the sound device when one exists
    gap_s: float = 0.25  # silence between utterances in the recording


@dataclass
class Utterance:
    text: str
    kind: str = "caption"  # caption | notice: notices (start, camera lost, keys) are never dropped
    t_request: float = 0.0  # time.monotonic() when asked for
    frame: int = -1
    t_capture: float | None = None  # time.monotonic() when its frame was captured


def audio_device_present() -> bool:
    return Path("/dev/snd").is_dir() and any(Path("/dev/snd").glob("pcm*p")) or \
        bool(os.environ.get("PULSE_SERVER"))


class Pyttsx3Engine:
    """Renders text to 16-bit mono WAV bytes with pyttsx3; created inside the worker thread."""

    def __init__(self, cfg: SpeechConfig):
        import pyttsx3

        self.engine = pyttsx3.init()
        self.engine.setProperty("rate", cfg.rate)
        self.engine.setProperty("volume", cfg.volume)
        if cfg.voice:
            voices = self.engine.getProperty("voices")
            match = [v for v in voices if cfg.voice in (v.id, v.name) or cfg.voice in v.id]
            if not match:
                raise RuntimeError(f"no voice matches {cfg.voice!r}")
            self.engine.setProperty("voice", match[0].id)
        self.tmp = Path(tempfile.mkdtemp(prefix="scenespeak-tts-")) / "u.wav"

    @property
    def voice(self) -> str:
        return str(self.engine.getProperty("voice"))

    def render(self, text: str) -> bytes:
        with contextlib.redirect_stdout(io.StringIO()):  # the espeak driver prints each save
            self.engine.save_to_file(text, str(self.tmp))
            self.engine.runAndWait()
        with wave.open(str(self.tmp), "rb") as w:
            return w.readframes(w.getnframes())


class SpeechWorker:
    """One utterance at a time; `on_event(name, **fields)` hears 'spoken' and 'warning'."""

    def __init__(self, cfg: SpeechConfig, on_event: Callable[..., None],
                 engine_factory: Callable[[SpeechConfig], object] = Pyttsx3Engine):
        self.cfg, self.on_event, self.engine_factory = cfg, on_event, engine_factory
        self._cond = threading.Condition()
        self._pending: list[Utterance] = []  # notices in order, then at most one caption
        self._stop = False
        self._player: subprocess.Popen | None = None
        self._playing: Utterance | None = None
        self._aplay = shutil.which("aplay") if cfg.play and audio_device_present() else None
        self._wav = None
        self._ready = threading.Event()
        self.engine = None
        self.voice = None
        self._thread = threading.Thread(target=self._run, name="speech", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def say(self, text: str, kind: str = "caption", frame: int = -1, interrupt: bool = False,
            t_capture: float | None = None) -> None:
        u = Utterance(text, kind, time.monotonic(), frame, t_capture)
        with self._cond:
            if kind == "caption":  # the newest caption replaces one still waiting
                self._pending = [p for p in self._pending if p.kind != "caption"]
            self._pending.append(u)
            if interrupt and self._player and self._playing and self._playing.kind == "caption":
                self._player.terminate()
            self._cond.notify()

    def _open_record(self) -> None:
        if self.cfg.record:
            Path(self.cfg.record).parent.mkdir(parents=True, exist_ok=True)
            self._wav = wave.open(self.cfg.record, "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(RATE)

    def _run(self) -> None:
        try:
            self.engine = self.engine_factory(self.cfg)
            self.voice = getattr(self.engine, "voice", None)
        except Exception as e:  # no pyttsx3, no espeak-ng, bad voice: speech is off, loop goes on
            self.on_event("warning", message=f"speech unavailable: {e}")
        if self._aplay is None and self.cfg.play and self.engine is not None:
            self.on_event("warning", message="no sound device: speech is written to the log"
                          + (" and the WAV file" if self.cfg.record else "") + " only")
        try:
            self._open_record()
        except OSError as e:
            self.on_event("warning", message=f"{self.cfg.record}: cannot record speech ({e})")
        self._ready.set()
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if not self._pending:
                    break
                u = self._pending.pop(0)
            self._speak(u)
        if self._wav is not None:
            self._wav.close()

    def _speak(self, u: Utterance) -> None:
        pcm = None
        for attempt in range(2):  # an engine that dies mid-utterance is restarted, and the
            if self.engine is None:  # utterance tried once more on the fresh one
                return
            try:
                pcm = self.engine.render(u.text)
                break
            except Exception as e:
                self.on_event("warning", message=f"speech engine failed ({e}); restarting it")
                try:
                    self.engine = self.engine_factory(self.cfg)
                except Exception as e2:
                    self.on_event("warning", message=f"speech unavailable: {e2}")
                    self.engine = None
        if pcm is None:
            return
        start = time.monotonic()
        latency = {"caption_to_speech": round((start - u.t_request) * 1e3, 2)}
        if u.t_capture is not None:
            latency["capture_to_speech"] = round((start - u.t_capture) * 1e3, 2)
        self.on_event("spoken", caption=u.text, kind=u.kind, source_frame=u.frame, latency_ms=latency)
        if self._wav is not None:
            if self._wav.getnframes():
                self._wav.writeframes(b"\0\0" * int(self.cfg.gap_s * RATE))
            self._wav.writeframes(pcm)
        if self._aplay:
            with self._cond:
                self._playing = u
                self._player = subprocess.Popen(
                    [self._aplay, "-q", "-t", "raw", "-f", "S16_LE", "-c", "1", "-r", str(RATE)],
                    stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                self._player.communicate(pcm)
            except (BrokenPipeError, OSError):
                pass
            with self._cond:
                self._player = self._playing = None

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and self._playing is None

    def close(self, timeout: float = 10.0) -> None:
        """Speak what is still waiting, then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)
