"""The programs around the model and its channels: the describe loop and its speech policies
(loop, policies), sources, the voice (speech), the event log, the screen, systemd notification
(service), the device profiles, doctor and the benchmark."""
