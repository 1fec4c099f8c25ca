"""Text to speech in its own worker thread, so speaking never blocks capture or captioning.

pyttsx3 (espeak-ng on Linux) renders each utterance to a WAV; the worker appends it to the
optional `--speech-wav` recording and plays it with `aplay` where a sound device exists.
The newest utterance wins: `say()` replaces anything still waiting, and `say(..., interrupt=True)`
also cuts off playback that is now out of date. Without an engine or a sound device it warns
once and carries on; the rest of the loop never notices.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.options import check, number, regular_output

RATE = 22050  # espeak-ng's output rate, mono 16-bit


@dataclass(frozen=True)
class SpeechConfig:
    voice: str | None = None  # TTS voice id or part of it, e.g. en-us (default: the engine's)
    rate: int = 175  # speech rate, words per minute (espeak-ng speaks 80..450)
    volume: float = 1.0  # loudness, more than 0 up to 1 (--no-speak is silence)
    record: str | None = None  # also write everything spoken to this WAV file
    play: bool = True  # play speech through the sound device where one exists; --no-speak
    # turns it off (speech is still logged and recorded)
    gap_s: float = 0.25  # silence between utterances in the recording

    def __post_init__(self):
        check(
            self,
            "rate",
            number(self.rate, int) and 80 <= self.rate <= 450,
            "use 80..450 words per minute",
        )
        check(
            self,
            "volume",
            number(self.volume) and 0 < self.volume <= 1,
            "use more than 0 up to 1 (--no-speak for silence)",
        )
        check(self, "gap_s", number(self.gap_s) and 0 <= self.gap_s <= 10, "use 0..10 seconds")
        check(
            self,
            "record",
            self.record is None or (isinstance(self.record, str) and regular_output(self.record)),
            "not a regular file (a FIFO or socket): give a WAV file's path",
        )


@dataclass
class Utterance:
    text: str
    kind: str = "caption"  # caption | notice | repeat: notices (start, camera lost, keys) are
    # never dropped; a caption replaces one waiting, and a repeat (manual mode's "r") one
    # waiting or being said, so pressing r ten times says the description once more, not ten
    t_request: float = 0.0  # time.monotonic() when asked for
    frame: int = -1
    t_capture: float | None = None  # time.monotonic() when its frame was captured


def audio_device_present() -> bool:
    return (
        Path("/dev/snd").is_dir()
        and any(Path("/dev/snd").glob("pcm*p"))
        or bool(os.environ.get("PULSE_SERVER"))
    )


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
        self.folder, passed = scratch()
        self.tmp = self.folder / "u.wav"
        self.warning = (
            (f"speech is rendered in {self.folder}, as " + "; ".join(passed)) if passed else None
        )

    @property
    def voice(self) -> str:
        return str(self.engine.getProperty("voice"))

    def render(self, text: str) -> bytes:
        """16-bit mono PCM of `text`; RuntimeError where it could not be rendered (a full
        folder leaves espeak's file empty or cut short)."""
        for attempt in range(2):  # on a loaded machine espeak now and then writes no file
            try:
                self.tmp.unlink(missing_ok=True)
            except OSError:
                pass
            with contextlib.redirect_stdout(io.StringIO()):  # the espeak driver prints each save
                self.engine.save_to_file(text, str(self.tmp))
                self.engine.runAndWait()
            try:
                with wave.open(str(self.tmp), "rb") as w:
                    return w.readframes(w.getnframes())
            except (OSError, EOFError, wave.Error) as e:
                if attempt:
                    raise RuntimeError(
                        f"cannot render speech in {self.folder} ({e}); is it full?"
                    ) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Removes its folder (and the last utterance in it)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def scratch() -> tuple[Path, list[str]]:
    """(a folder of this run's own to render speech in, where 1 MB can be written: the temp
    folder ($TMPDIR), else /dev/shm, else SceneSpeak's cache; why those before it could not
    be used). RuntimeError where none can."""
    from runtime.model.session import cache_root

    tried: list[str] = []
    cache = str(cache_root())
    bases = [os.environ.get("TMPDIR"), tempfile.gettempdir(), "/dev/shm", cache]
    for base in dict.fromkeys(b for b in bases if b):  # Python's gettempdir() passes over a
        # full $TMPDIR without a word: it is tried first, so the user hears of it
        folder = None
        try:
            if base == cache:  # our own; a missing temp folder is not ours to make
                Path(base).mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="scenespeak-tts-", dir=base))
            with open(folder / "probe", "wb") as f:  # room for a long utterance
                f.write(b"\0" * 2**20)
            (folder / "probe").unlink()
            atexit.register(shutil.rmtree, folder, True)  # whoever forgets close()
            return folder, tried
        except OSError as e:
            tried.append(f"{base} is not usable ({e.strerror or e})")
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    raise RuntimeError("no folder to render speech in (" + "; ".join(tried) + ")")


class SpeechWorker:
    """One utterance at a time; `on_event(name, **fields)` hears 'spoken' and 'warning'.

    Each output fails on its own: a recording that cannot be written (a full disk) or a player
    that cannot run is warned about once and dropped, and speech and the log go on. An
    utterance that fails in any other way is dropped with a warning, and a worker thread that
    dies anyway is restarted at the next utterance, with a warning in the log."""

    def __init__(
        self,
        cfg: SpeechConfig,
        on_event: Callable[..., None],
        engine_factory: Callable[[SpeechConfig], object] = Pyttsx3Engine,
    ):
        self.cfg, self.on_event, self.engine_factory = cfg, on_event, engine_factory
        self._cond = threading.Condition()
        self._pending: list[Utterance] = []  # notices in order, then at most one caption
        self._stop = False
        self._busy = False  # an utterance is being rendered or played
        self._player: subprocess.Popen | None = None
        self._playing: Utterance | None = None
        self._aplay = shutil.which("aplay") if cfg.play and audio_device_present() else None
        self._wav: wave.Wave_write | None = None
        self._warned: set[str] = set()
        self.engine: Any = None  # Engine, made in the worker thread
        self.voice = None
        self._start_thread()

    def _start_thread(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speech", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.on_event("warning", message=message)

    def say(
        self,
        text: str,
        kind: str = "caption",
        frame: int = -1,
        interrupt: bool = False,
        t_capture: float | None = None,
    ) -> None:
        u = Utterance(text, kind, time.monotonic(), frame, t_capture)
        with self._cond:
            if kind in ("caption", "repeat"):  # the newest replaces one of its kind waiting
                self._pending = [p for p in self._pending if p.kind != kind]
            if (
                kind == "repeat"
                and self._player
                and self._playing
                and self._playing.kind == "repeat"
            ):
                self._player.terminate()
            self._pending.append(u)
            if interrupt and self._player and self._playing and self._playing.kind == "caption":
                self._player.terminate()
            self._cond.notify()
            dead = not self._thread.is_alive() and not self._stop
        if dead:
            self.on_event("warning", message="the speech worker stopped unexpectedly; restarted")
            with self._cond:
                self._busy = False
                self._player = self._playing = None
            self._start_thread()

    def _open_record(self) -> None:
        if self.cfg.record and self._wav is None and "record" not in self._warned:
            w = wave.open(self.cfg.record, "wb")
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            self._wav = w

    def _run(self) -> None:
        if self.engine is None:
            try:
                self.engine = self.engine_factory(self.cfg)
                self.voice = getattr(self.engine, "voice", None)
                if getattr(self.engine, "warning", None):  # e.g. a full temp folder
                    self._warn_once("scratch", self.engine.warning)
            except (
                Exception
            ) as e:  # no pyttsx3, no espeak-ng, bad voice: speech is off, loop goes on
                self._warn_once("engine", f"speech unavailable: {e}")
        if self._aplay is None and self.cfg.play and self.engine is not None:
            self._warn_once(
                "device",
                "no sound device: speech is written to the log"
                + (" and the WAV file" if self.cfg.record else "")
                + " only",
            )
        try:
            self._open_record()
        except OSError as e:
            self._warn_once(
                "record", f"{self.cfg.record}: cannot record speech ({e.strerror or e})"
            )
        self._ready.set()
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if not self._pending:
                    break
                u = self._pending.pop(0)
                self._busy = True
            try:
                self._speak(u)
            except Exception as e:  # what no output handles: this utterance only is lost
                self.on_event(
                    "warning",
                    message=f"speech failed ({type(e).__name__}: {e}); '{u.text}' was dropped",
                )
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        self._close_record()
        self._close_engine()

    def _close_engine(self) -> None:
        """The engine's own folder goes with it (no scenespeak-tts-* left behind)."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()

    def _render(self, u: Utterance) -> bytes | None:
        for _attempt in range(2):  # an engine that dies mid-utterance is restarted, and the
            if self.engine is None:  # utterance tried once more on the fresh one
                return None
            try:
                return self.engine.render(u.text)
            except Exception as e:
                self.on_event("warning", message=f"speech engine failed ({e}); restarting it")
                self._close_engine()
                try:
                    self.engine = self.engine_factory(self.cfg)
                except Exception as e2:
                    self.on_event("warning", message=f"speech unavailable: {e2}")
                    self.engine = None
        return None

    def _speak(self, u: Utterance) -> None:
        pcm = self._render(u)
        if pcm is None:
            return
        start = time.monotonic()
        latency = {"caption_to_speech": round((start - u.t_request) * 1e3, 2)}
        if u.t_capture is not None:
            latency["capture_to_speech"] = round((start - u.t_capture) * 1e3, 2)
        self.on_event(
            "spoken", caption=u.text, kind=u.kind, source_frame=u.frame, latency_ms=latency
        )
        self._record(pcm)
        if self._aplay:
            self._play(u, pcm)

    def _record(self, pcm: bytes) -> None:
        if self._wav is None:
            return
        try:
            if self._wav.getnframes():
                self._wav.writeframes(b"\0\0" * int(self.cfg.gap_s * RATE))
            self._wav.writeframes(pcm)
        except OSError as e:  # a full disk: the recording stops, speech goes on
            self._warn_once(
                "record",
                f"{self.cfg.record}: cannot record speech ({e.strerror or e}); "
                "the recording stops here, speech goes on",
            )
            self._close_record()

    def _close_record(self) -> None:
        w, self._wav = self._wav, None
        if w is not None:
            try:  # close() forgets its file even when the header cannot be written, so the
                w.close()  # object's __del__ has nothing left to fail on at exit
            except OSError:
                pass

    def _play(self, u: Utterance, pcm: bytes) -> None:
        try:
            with self._cond:
                self._playing = u
                self._player = subprocess.Popen(
                    [
                        str(self._aplay),
                        "-q",
                        "-t",
                        "raw",
                        "-f",
                        "S16_LE",
                        "-c",
                        "1",
                        "-r",
                        str(RATE),
                    ],
                    stdin=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            self._player.communicate(pcm)
        except (BrokenPipeError, ConnectionResetError):
            pass  # cut off by a newer caption
        except OSError as e:
            self._warn_once(
                "play",
                f"cannot play speech ({e.strerror or e}); it is logged "
                + ("and recorded " if self.cfg.record else "")
                + "only",
            )
            self._aplay = None
        finally:
            with self._cond:
                self._player = self._playing = None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything asked for has been said (or `timeout` seconds); True if so."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending or self._busy) and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not self._pending and not self._busy

    def close(self, timeout: float = 10.0) -> None:
        """Speak what is still waiting, then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)
