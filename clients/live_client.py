"""`bandmate client live`: the local audio interface, streamed to a server.

    device in -> callback -> input ring -> socket -> server -> socket -> output ring
              -> callback -> device out

The callback only copies between preallocated rings (engine.ringbuffer), as in `bandmate
jam`; the event loop moves blocks between the rings and the socket. The output ring starts
with `prefill_blocks` blocks of silence: the network round trip and the server's compute
must fit in that time, or the callback plays silence and counts an underrun.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from clients.errors import ClientError
from clients.stream import StreamOptions, open_stream
from engine.ringbuffer import RingBuffer
from server.protocol import ErrorMessage, encode_pcm, parse_server_message, pcm_to_float


@dataclass(frozen=True)
class LiveClientOptions:
    input_device: str | None = None
    output_device: str | None = None
    samplerate: int = 48_000
    seconds: float = 0.0  # 0: until Ctrl-C
    prefill_blocks: int = 8


async def run_live_client(options: StreamOptions, live: LiveClientOptions) -> str:
    import sounddevice as sd

    from engine.live_engine import find_device, list_devices
    from engine.portaudio import release

    block = options.blocksize
    inbound, outbound = RingBuffer(live.samplerate * 4), RingBuffer(live.samplerate * 4)
    outbound.write(np.zeros(live.prefill_blocks * block, np.float32))
    underruns = 0

    def callback(indata: np.ndarray, outdata: np.ndarray, frames: int, *_: Any) -> None:
        nonlocal underruns
        inbound.write(indata[:, 0])
        got = outbound.read_into(outdata[:, 0])
        if got < frames:
            outdata[got:, 0] = 0.0
            underruns += frames - got

    found = list_devices()
    devices = (find_device(found, live.input_device, "input").index,
               find_device(found, live.output_device, "output").index)  # fmt: skip
    socket, ready = await open_stream(options, live.samplerate)
    try:
        stream = sd.Stream(samplerate=live.samplerate, blocksize=block, channels=1,
                           dtype="float32", device=devices, callback=callback)  # fmt: skip
    except sd.PortAudioError as exc:
        await socket.close()
        raise ClientError(f"cannot open the audio device: {exc}") from None

    async def send() -> None:
        chunk = np.zeros(block, np.float32)
        while True:
            while inbound.available() >= block:
                inbound.read_into(chunk)
                await socket.send(encode_pcm(chunk, options.format))
            await asyncio.sleep(block / live.samplerate / 4)

    async def receive() -> None:
        async for message in socket:
            if isinstance(message, bytes):
                outbound.write(pcm_to_float(message, options.format))
            else:
                with contextlib.suppress(ValidationError):  # a newer server's message: skipped
                    if isinstance(parse_server_message(message), ErrorMessage):
                        print(f"server error: {message}")

    with stream:
        tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
        try:
            await asyncio.wait(tasks, timeout=live.seconds or None)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await socket.close()
    release()
    return f"streamed to {options.url} (session {ready.session}); {underruns} samples late"
