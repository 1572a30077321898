// A waveform to look at and seek on: the file decoded by the browser (Web Audio), reduced to one peak per
// canvas column, drawn with the played part in the accent colour.
export async function peaksOf(buffer, columns) {
  const ctx = new (window.OfflineAudioContext || window.webkitOfflineAudioContext)(1, 1, 44100);
  const audio = await ctx.decodeAudioData(buffer);
  const data = audio.getChannelData(0);
  const step = Math.max(1, Math.floor(data.length / columns));
  const peaks = new Float32Array(columns);
  for (let c = 0; c < columns; c++) {
    let peak = 0;
    for (let i = c * step, end = Math.min(data.length, i + step); i < end; i++) peak = Math.max(peak, Math.abs(data[i]));
    peaks[c] = peak;
  }
  const top = Math.max(...peaks, 1e-6);
  return peaks.map((p) => p / top);
}

export function drawWave(canvas, peaks, played) {
  const g = canvas.getContext('2d');
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  if (!peaks) return;
  const mid = height / 2;
  for (let x = 0; x < peaks.length; x++) {
    g.fillStyle = x / peaks.length <= played ? '#3a5bd9' : '#b9c3e6';
    const half = Math.max(1, peaks[x] * (mid - 2));
    g.fillRect(x, mid - half, 1, half * 2);
  }
  g.fillStyle = '#d64545';
  g.fillRect(Math.floor(played * width), 0, 2, height);
  canvas.dataset.played = played.toFixed(3);
}
