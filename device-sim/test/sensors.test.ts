// device-sim/ tests: sensor models: deterministic for a seed, physically
// plausible, and the shapes the README promises (daily cycle,
// anti-correlation, drain), and the per-device seed.
// Imports: node:test, and this package's sensors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Battery, DEFAULT_METRICS, Humidity, Pressure, Temperature, defaultSensors, gaussian, hashId, mulberry32 } from '../src/sensors.ts';

const DAY = Date.UTC(2026, 5, 1);
const H = 3_600_000;

test('sensors - the same seed gives the same readings; another seed, others', () => {
  const run = (seed: number) => { const s = defaultSensors(seed); return Array.from({ length: 500 }, (_, i) => s.map((m) => m.sample(DAY + i * 1000))); };
  assert.deepEqual(run(7), run(7));
  assert.notDeepEqual(run(7), run(8));
  assert.deepEqual(defaultSensors(1).map((s) => ({ name: s.name, unit: s.unit })), DEFAULT_METRICS);
  assert.deepEqual(DEFAULT_METRICS.map((m) => `${m.name}:${m.unit}`), ['temperature:degC', 'humidity:%', 'pressure:hPa', 'battery:V']);
});

test('sensors - mulberry32 is uniform enough and gaussian has mean 0, sd 1', () => {
  const r = mulberry32(123);
  let sum = 0; let sq = 0; let lo = 1; let hi = 0;
  const n = 50_000;
  for (let i = 0; i < n; i++) { const g = gaussian(r); sum += g; sq += g * g; const u = r(); lo = Math.min(lo, u); hi = Math.max(hi, u); }
  assert.ok(Math.abs(sum / n) < 0.03);
  assert.ok(Math.abs(Math.sqrt(sq / n) - 1) < 0.03);
  assert.ok(lo >= 0 && lo < 0.001 && hi < 1 && hi > 0.999);
});

test('sensors - readings stay within physical ranges over a week', () => {
  for (let seed = 0; seed < 20; seed++) {
    const [temp, hum, pres, batt] = defaultSensors(seed) as [Temperature, Humidity, Pressure, Battery];
    for (let t = DAY; t < DAY + 7 * 24 * H; t += 10 * 60_000) {
      const v = [temp.sample(t), hum.sample(t), pres.sample(t), batt.sample(t)] as const;
      assert.ok(v[0] > -20 && v[0] < 80, `temperature ${v[0]}`);
      assert.ok(v[1] >= 0 && v[1] <= 100, `humidity ${v[1]}`);
      assert.ok(v[2] >= 940 && v[2] <= 1085, `pressure ${v[2]}`);
      assert.ok(v[3] >= 3.25 && v[3] <= 4.25, `battery ${v[3]}`);
    }
  }
});

test('sensors - temperature follows a daily cycle, with rare spikes', () => {
  const temp = new Temperature(mulberry32(1), { spikeProbability: 0 });
  const mean = (h: number) => { let s = 0; for (let d = 0; d < 20; d++) s += temp.sample(DAY + d * 24 * H + h * H); return s / 20; };
  assert.ok(mean(17) - mean(5) > 8, `afternoon ${mean(17)} vs early morning ${mean(5)}`);
  assert.ok(Math.abs(mean(11) - temp.mean) < 2, 'crosses the mean late morning');
  const spiky = new Temperature(mulberry32(2), { spikeProbability: 0.01, noiseSd: 0 });
  let spikes = 0;
  for (let i = 0; i < 10_000; i++) if (spiky.sample(DAY + i * 1000) - spiky.baseline(DAY + i * 1000) > 10) spikes++;
  assert.ok(spikes > 50 && spikes < 200, `${spikes} spikes in 10,000 samples at 1 %`);
});

test('sensors - humidity is anti-correlated with temperature', () => {
  const r = mulberry32(5);
  const temp = new Temperature(r, { spikeProbability: 0 });
  const hum = new Humidity(r, temp);
  const xs: number[] = []; const ys: number[] = [];
  for (let t = DAY; t < DAY + 3 * 24 * H; t += 15 * 60_000) { xs.push(temp.sample(t)); ys.push(hum.sample(t)); }
  const mx = xs.reduce((a, b) => a + b) / xs.length;
  const my = ys.reduce((a, b) => a + b) / ys.length;
  let sxy = 0; let sxx = 0; let syy = 0;
  for (let i = 0; i < xs.length; i++) { sxy += (xs[i]! - mx) * (ys[i]! - my); sxx += (xs[i]! - mx) ** 2; syy += (ys[i]! - my) ** 2; }
  const corr = sxy / Math.sqrt(sxx * syy);
  assert.ok(corr < -0.8, `correlation ${corr}`);
});

test('sensors - pressure wanders slowly around 1013 hPa', () => {
  let grand = 0; let n = 0;
  for (let seed = 0; seed < 20; seed++) {
    const p = new Pressure(mulberry32(seed));
    for (let t = DAY; t < DAY + 30 * 24 * H; t += 10 * 60_000) {
      const v = p.sample(t);
      assert.ok(Math.abs(v - 1013) < 40, `seed ${seed}: ${v} hPa`);
      grand += v; n++;
    }
  }
  assert.ok(Math.abs(grand / n - 1013) < 3, `mean ${grand / n}`);
  const p = new Pressure(mulberry32(1));
  let prev = p.sample(DAY); let maxPerMinute = 0;
  for (let t = DAY + 60_000; t < DAY + 2 * 24 * H; t += 60_000) { const v = p.sample(t); maxPerMinute = Math.max(maxPerMinute, Math.abs(v - prev)); prev = v; }
  assert.ok(maxPerMinute < 1, `a minute moved it ${maxPerMinute} hPa`);
});

test('sensors - battery drains from about 4.2 V towards 3.3 V over its lifetime', () => {
  const b = new Battery(mulberry32(3), { lifetimeMs: 10 * 24 * H, noiseSd: 0 });
  const at = (days: number) => b.sample(DAY + days * 24 * H);
  const v = [at(0), at(2), at(5), at(9), at(10), at(20)];
  assert.ok(v[0]! >= 4.1 && v[0]! <= 4.2, `full ${v[0]}`);
  for (let i = 1; i < v.length; i++) assert.ok(v[i]! <= v[i - 1]!, `never rises: ${v.join(', ')}`);
  assert.ok(v[2]! > 3.7, 'a long plateau');
  assert.equal(v[4], 3.3);
  assert.equal(v[5], 3.3, 'empty stays empty');
});

test('sensors - hashId is a stable per-device seed (32-bit FNV-1a of the id)', () => {
  assert.equal(hashId(''), 0x811c9dc5);
  assert.equal(hashId('a'), 0xe40c292c);
  assert.equal(hashId('sim-0001'), hashId('sim-0001'));
  assert.notEqual(hashId('sim-0001'), hashId('sim-0002'));
});
