# Summarises the protected-window sweep: for each window share and each KV-Compress metric, how its KL and passkey
# accuracy compare with the best baseline at every budget. Reads DIR/results.csv of each run, writes two SVG plots
# (KV-Compress's KL over the best baseline's, and its passkey accuracy minus the best baseline's, against the
# compression ratio, one line per window) and prints a markdown table.
# Usage, from the repository root: python3 docs/eval-window/summarize.py docs/eval-window 1/4=docs/eval 1/2=DIR 3/4=DIR ...
import csv, math, sys

BASELINES = ['streamingllm', 'h2o', 'snapkv', 'pyramidkv', 'adakv']
VARIANTS = ['kvcompress', 'kvcompress:squared-average', 'kvcompress:plain-average']
out, runs = sys.argv[1], [a.split('=', 1) for a in sys.argv[2:]]

def load(d):
    rows = {}
    for r in csv.DictReader(open(f'{d}/results.csv')):
        rows[(r['policy'], r['budget'])] = r
    return rows

data = [(w, load(d)) for w, d in runs]
budgets = ['1/2', '1/4', '1/8', '1/16', '1/32']

def best(rows, b, key, pick):
    vals = [float(rows[(p, b)][key]) for p in BASELINES if (p, b) in rows and rows[(p, b)][key] != '']
    return pick(vals), [p for p in BASELINES if (p, b) in rows and rows[(p, b)][key] != '' and float(rows[(p, b)][key]) == pick(vals)]

print('| window | metric | KL: KV-Compress / best baseline at ' + ', '.join(budgets) + ' | passkey: KV-Compress - best baseline (points) |')
print('|---|---|---|---|')
series_kl, series_pk = {}, {}
for w, rows in data:
    for v in VARIANTS:
        if (v, '1/2') not in rows: continue
        kl, pk, xs = [], [], []
        for b in budgets:
            r = rows[(v, b)]
            bkl, _ = best(rows, b, 'kl_to_full', min)
            bpk, _ = best(rows, b, 'passkey_accuracy', max)
            kl.append(float(r['kl_to_full']) / bkl)
            pk.append(100 * (float(r['passkey_accuracy']) - bpk))
            xs.append(float(r['compression_ratio']))
        print(f'| {w} | {v.split(":")[1] if ":" in v else "squared (SPEC)"} | ' + ' / '.join(f'{x:.2f}' for x in kl)
              + ' | ' + ' / '.join(f'{x:+.0f}' for x in pk) + ' |')
        if v == 'kvcompress':
            series_kl[f'window {w}'] = list(zip(xs, kl))
            series_pk[f'window {w}'] = list(zip(xs, pk))

COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b']
def plot(path, title, ylabel, series, ref):
    W, H, L, R, T, B = 680, 420, 70, 150, 40, 55
    pts = [p for s in series.values() for p in s]
    xmin, xmax = math.log2(min(p[0] for p in pts)), math.log2(max(p[0] for p in pts))
    ymin, ymax = min([ref] + [p[1] for p in pts]), max([ref] + [p[1] for p in pts])
    raw = (ymax - ymin) / 5 or 1
    step = min(m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10) if m * 10 ** math.floor(math.log10(raw)) >= raw)
    ymin, ymax = math.floor(ymin / step) * step, math.ceil(ymax / step) * step
    ticks = [ymin + i * step for i in range(round((ymax - ymin) / step) + 1)]
    X = lambda x: L + (math.log2(x) - xmin) / (xmax - xmin) * (W - L - R)
    Y = lambda y: H - B - (y - ymin) / (ymax - ymin) * (H - T - B)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{(W - R + L) / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for y in ticks:
        o.append(f'<line x1="{L - 4}" y1="{Y(y):.1f}" x2="{W - R}" y2="{Y(y):.1f}" stroke="#ddd"/><text x="{L - 8}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:.4g}</text>')
    o.append(f'<line x1="{L}" y1="{Y(ref):.1f}" x2="{W - R}" y2="{Y(ref):.1f}" stroke="black" stroke-dasharray="5,4"/>')
    for x in [2, 4, 8, 16, 32]:
        o.append(f'<text x="{X(x):.1f}" y="{H - B + 18}" text-anchor="middle">{x}</text>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">compression ratio (full KVs / kept KVs)</text>')
    o.append(f'<text transform="translate(18,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">{ylabel}</text>')
    for k, (name, s) in enumerate(series.items()):
        c = COLORS[k % len(COLORS)]
        o.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="' + ' '.join(f'{X(x):.1f},{Y(y):.1f}' for x, y in s) + '"/>')
        o += [f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3.5" fill="{c}"/>' for x, y in s]
        o.append(f'<rect x="{W - R + 12}" y="{T + 18 * k - 9}" width="12" height="4" fill="{c}"/><text x="{W - R + 30}" y="{T + 18 * k - 3}">{name}</text>')
    o.append('</svg>')
    open(path, 'w').write('\n'.join(o) + '\n')

plot(f'{out}/kl-ratio-vs-window.svg', 'KV-Compress KL / best baseline KL (below the line: ahead)', 'KL ratio', series_kl, 1.0)
plot(f'{out}/passkey-gap-vs-window.svg', 'KV-Compress passkey - best baseline (above the line: ahead)', 'percentage points', series_pk, 0.0)
