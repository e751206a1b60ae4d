/**
 * A hand-written SVG line chart: throughput (x) against p99 latency (y), one line per configuration, each point
 * labelled with its load (c=16, 20/s). The y axis turns logarithmic when latencies span more than 20×.
 */

export interface ChartPoint {
  x: number;
  y: number;
  tag: string;
}

export interface ChartSeries {
  label: string;
  points: ChartPoint[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

const COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#7f7f7f',
  '#bcbd22',
];
/** Past the palette, lines repeat colours with a dash pattern. */
const DASHES = ['', '6 3', '2 2'];

export function escapeXml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** About `count` round tick values from lo up to the first one ≥ hi (the axis ends on a tick). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const out: number[] = [];
  const top = Math.ceil(hi / step - 1e-9) * step;
  for (let v = Math.ceil(lo / step) * step; v <= top + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo && v <= hi) out.push(v);
    }
  }
  return out;
}

function fmt(v: number): string {
  if (v >= 1000) return `${Number((v / 1000).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

interface Scale {
  map: (v: number) => number;
  ticks: number[];
}

function linearScale(lo: number, hi: number, from: number, to: number): Scale {
  const ticks = niceTicks(lo, hi);
  const top = Math.max(hi, ticks[ticks.length - 1] ?? hi);
  return { map: (v) => from + ((v - lo) / (top - lo || 1)) * (to - from), ticks };
}

function yScale(values: number[], from: number, to: number): Scale & { log: boolean } {
  const finite = values.filter((v) => Number.isFinite(v) && v > 0);
  const lo = finite.length ? Math.min(...finite) : 1;
  const hi = finite.length ? Math.max(...finite) : 10;
  if (hi / lo > 20) {
    const a = Math.log10(lo / 1.2);
    const b = Math.log10(hi * 1.2);
    return {
      map: (v) => from + ((Math.log10(Math.max(v, 1e-9)) - a) / (b - a)) * (to - from),
      ticks: logTicks(10 ** a, 10 ** b),
      log: true,
    };
  }
  return { ...linearScale(0, hi * 1.1, from, to), log: false };
}

export function throughputLatencySvg(series: readonly ChartSeries[], opts: ChartOptions): string {
  const W = opts.width ?? 860;
  const H = opts.height ?? 440;
  const m = { left: 70, right: 260, top: 40, bottom: 55 };
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xMax = Math.max(1e-9, ...all.map((p) => p.x)) * 1.05;
  const xs = linearScale(0, xMax, m.left, W - m.right);
  const ys = yScale(
    all.map((p) => p.y),
    H - m.bottom,
    m.top,
  );
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - m.right / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(opts.title)}</text>`,
  ];
  for (const t of xs.ticks) {
    const x = xs.map(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${H - m.bottom}" stroke="#eee"/>`);
    out.push(`<text x="${x}" y="${H - m.bottom + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of ys.ticks) {
    const y = ys.map(t).toFixed(1);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${W - m.right}" y2="${y}" stroke="#eee"/>`);
    out.push(
      `<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`,
    );
  }
  out.push(
    `<line x1="${m.left}" y1="${H - m.bottom}" x2="${W - m.right}" y2="${H - m.bottom}" stroke="black"/>`,
  );
  out.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${H - m.bottom}" stroke="black"/>`);
  out.push(
    `<text x="${(m.left + W - m.right) / 2}" y="${H - 15}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`,
  );
  const yl = `${opts.yLabel}${ys.log ? ' (log)' : ''}`;
  out.push(
    `<text x="18" y="${(m.top + H - m.bottom) / 2}" text-anchor="middle" transform="rotate(-90 18 ${(m.top + H - m.bottom) / 2})">${escapeXml(yl)}</text>`,
  );
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const dash = DASHES[Math.floor(i / COLORS.length) % DASHES.length]!;
    const dashAttr = dash ? ` stroke-dasharray="${dash}"` : '';
    const pts = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!ys.log || p.y > 0));
    const coords = pts.map((p) => `${xs.map(p.x).toFixed(1)},${ys.map(p.y).toFixed(1)}`);
    if (coords.length > 1)
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2"${dashAttr} points="${coords.join(' ')}"/>`,
      );
    pts.forEach((p, j) => {
      const [cx, cy] = coords[j]!.split(',');
      out.push(
        `<circle cx="${cx}" cy="${cy}" r="3.5" fill="${color}"><title>${escapeXml(`${s.label} ${p.tag}: ${fmt(p.x)}/s, ${fmt(p.y)} ms`)}</title></circle>`,
      );
      out.push(
        `<text x="${Number(cx) + 5}" y="${Number(cy) - 5}" font-size="10" fill="${color}">${escapeXml(p.tag)}</text>`,
      );
    });
    const ly = m.top + 10 + i * 18;
    out.push(
      `<line x1="${W - m.right + 15}" y1="${ly}" x2="${W - m.right + 35}" y2="${ly}" stroke="${color}" stroke-width="2"${dashAttr}/>`,
    );
    out.push(
      `<text x="${W - m.right + 40}" y="${ly}" dominant-baseline="middle">${escapeXml(s.label)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
