# Draws a model's loss over all its training stages, end to end, from the stages' training_log.csv files.
# Usage, from the repository root after training the stages:
#   python3 weights/plot_loss.py OUT.svg "TITLE" LABEL=RUN_FOLDER ...
# e.g. the default model: python3 weights/plot_loss.py weights/default/loss-all-stages.svg "Default model (64-wide heads)" \
#   1=runs/wide1 1b=runs/wide1b 2=runs/wide2 3=runs/wide3 4=runs/wide4
import csv, sys
out, title = sys.argv[1], sys.argv[2]
stages = [a.split('=', 1) for a in sys.argv[3:]]
pts, val, bounds = [], [], []
x0 = 0
for s, folder in stages:
    rows = list(csv.DictReader(open(f'{folder}/training_log.csv')))
    losses = [float(r['loss']) for r in rows]
    for i in range(len(rows)):
        w = losses[max(0, i-9):i+1]
        pts.append((x0 + i + 1, sum(w)/len(w), s))
        if rows[i]['validation_loss']: val.append((x0 + i + 1, float(rows[i]['validation_loss'])))
    bounds.append((x0, s)); x0 += len(rows)
W, H, L, R, T, B = 760, 420, 60, 20, 40, 55
ymin, ymax = 3.0, 7.0
X = lambda x: L + (W-L-R) * x / x0
Y = lambda y: T + (H-T-B) * (1 - (min(max(y, ymin), ymax) - ymin) / (ymax - ymin))
o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
     f'<rect width="{W}" height="{H}" fill="white"/>',
     f'<text x="{W/2}" y="22" text-anchor="middle" font-size="15">{title}: loss over all training stages (steps end to end)</text>']
for v in [3,4,5,6,7]:
    o.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W-R}" y2="{Y(v):.1f}" stroke="#ddd"/><text x="{L-6}" y="{Y(v)+4:.1f}" text-anchor="end">{v}</text>')
for i, (b, s) in enumerate(bounds):
    o.append(f'<line x1="{X(b):.1f}" y1="{T}" x2="{X(b):.1f}" y2="{H-B}" stroke="#eee"/>')
    nxt = bounds[i+1][0] if i+1 < len(bounds) else x0
    o.append(f'<text x="{X((b+nxt)/2):.1f}" y="{H-B+14}" text-anchor="middle" font-size="10">{s}</text>')
o.append(f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle">stage (width: its steps)</text>')
o.append(f'<text x="16" y="{(T+H-B)/2}" text-anchor="middle" transform="rotate(-90 16 {(T+H-B)/2})">loss (nats/token)</text>')
o.append(f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>')
for s, _ in stages:
    seg = [p for p in pts if p[2] == s]
    o.append('<polyline fill="none" stroke="#1f77b4" stroke-width="1" points="' + ' '.join(f'{X(x):.1f},{Y(y):.1f}' for x, y, _ in seg) + '"/>')
for x, y in val: o.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.5" fill="#d62728"/>')
o.append(f'<line x1="{W-250}" y1="{T+12}" x2="{W-230}" y2="{T+12}" stroke="#1f77b4"/><text x="{W-225}" y="{T+16}">training loss (mean of 10 steps)</text>')
o.append(f'<circle cx="{W-240}" cy="{T+30}" r="2.5" fill="#d62728"/><text x="{W-225}" y="{T+34}">validation loss (held-out Brown)</text>')
o.append('</svg>')
open(out, 'w').write('\n'.join(o))
print(x0, 'steps', min(v for _, v in val))
