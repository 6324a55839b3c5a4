// Audio thread side of the browser client: hands microphone frames to the page and plays
// the accompaniment from a FIFO the page fills. It only copies; it never waits.
class BandmateIO extends AudioWorkletProcessor {
  constructor() {
    super();
    this.fifo = new Float32Array(48000 * 4); // 4 s at 48 kHz: far more than any jitter
    this.readAt = 0;
    this.writeAt = 0;
    this.underruns = 0;
    this.started = false;
    this.prefill = 0;
    this.port.onmessage = (event) => {
      const data = event.data;
      if (data.prefill !== undefined) {
        this.prefill = data.prefill;
        return;
      }
      for (let i = 0; i < data.length; i++) {
        this.fifo[this.writeAt % this.fifo.length] = data[i];
        this.writeAt++;
      }
    };
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) this.port.postMessage(input.slice(0));
    const out = outputs[0][0];
    // Wait until `prefill` samples are buffered, so network jitter does not starve playback.
    if (!this.started && this.writeAt - this.readAt >= this.prefill) this.started = true;
    for (let i = 0; i < out.length; i++) {
      if (this.started && this.readAt < this.writeAt) {
        out[i] = this.fifo[this.readAt % this.fifo.length];
        this.readAt++;
      } else {
        out[i] = 0;
        if (this.started) this.underruns++;
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("bandmate-io", BandmateIO);
