"""The describe command: a source, the channels and the voice, wired into the describe loop.

    code = describe(source, ModelOptions(), ChannelOptions(), LoopConfig(), SpeechConfig(),
                    DescribeOptions(log="out/run.jsonl"), stop=threading.Event(), echo=print_line)

Options are checked, and a manual run without a terminal refused, before any model loads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from runtime.app.assemble import ChannelOptions, ModelOptions, captioner, channel_set
from runtime.app.eventlog import EventLog
from runtime.app.loop import DescribeLoop, LoopConfig, stdin_fd
from runtime.app.sources import SourceConfig, describe_uri, open_source, sample_clip
from runtime.app.speech import SpeechConfig, SpeechWorker
from runtime.options import OptionError, regular_output

LIVE = ("camera", "stream", "csi")


@dataclass(frozen=True)
class DescribeOptions:
    log: str | None = None  # append one JSON object per line to this file, flushed per event;
    # each run opens with its start event
    fast: bool = False  # read files and folders as fast as possible: every frame, and a
    # folder's next image without waiting for speech
    show: bool = False  # window with the frame, caption and attention (needs a GUI OpenCV)


def describe(
    source: str | None,
    model: ModelOptions,
    chans: ChannelOptions,
    loop: LoopConfig,
    speech: SpeechConfig,
    opts: DescribeOptions,
    stop: threading.Event,
    echo=None,
) -> int:
    """Describe `source` (None: the bundled sample clip) until it ends or `stop` is set; the
    log's lines also go to `echo`. The exit status."""
    if loop.mode == "manual" and stdin_fd() is None:  # before any model loads
        raise OptionError("mode", "manual", "standard input is closed; keys come from the terminal")
    if not regular_output(opts.log):
        raise OptionError(
            "log", opts.log, "not a regular file (a FIFO or socket); give a file's path"
        )
    kind = describe_uri(source)[0] if source is not None else "file"
    warnings: list[str] = []
    cap, where = captioner(model, warnings.append)
    c = where.profile.capture
    src = open_source(
        source,
        SourceConfig(
            realtime=not opts.fast, width=c.width, height=c.height, fps=c.fps, usb=c.usb, csi=c.csi
        ),
        sample_clip(cap.bundle.synthetic),
    )
    try:  # a missing file was refused above, before the channels' models load
        channels = channel_set(cap, where, chans, live=kind in LIVE, find=bool(loop.find))
    except BaseException:
        src.close()
        raise
    names = ",".join(channels.names)
    slideshow = kind == "folder"
    loop = replace(
        loop,
        stable_frames=1 if slideshow else loop.stable_frames,
        each_still=slideshow and not opts.fast,
        stills=slideshow,
    )
    log = EventLog(opts.log, echo=echo)
    preamble = [
        (
            "device",
            dict(profile=where.profile.name, reason=where.reason, channel=names, **cap.startup),
        )
    ] + [("warning", {"message": m}) for m in warnings]

    def on_event(name: str, **kw) -> None:
        log.write(name, kw.pop("source_frame", -1), **kw)

    voice = SpeechWorker(speech, on_event=on_event)
    screen = None
    if opts.show:
        from runtime.app.screen import Screen

        screen = Screen(lambda msg: log.write("warning", message=msg))
    return DescribeLoop(channels, src, voice, log, loop, screen, stop=stop, preamble=preamble).run()
