# Draws trained projections' KL to the full model as a share of PCA's, at each dim budget, one line per model and
# recipe, against issue 16's target (a third of PCA's KL), from eval's results.csv files (rows with the full token set).
# Prints the same numbers as a markdown table.
# Usage, from the repository root:
#   python3 docs/eval-projection/plot_share_of_pca_kl.py OUT.svg "TITLE" "LABEL|PCA_CSV:NAME|CSV:NAME[,CSV:NAME...]" ...
# Each series divides the lowest KL its trained sources reach at a dim budget by the PCA row's KL at that budget; a
# budget that none of its sources measured is left out of the line.
import csv, sys

out, title = sys.argv[1], sys.argv[2]
budgets = [0.25, 0.375, 0.5, 0.75]
labels = {0.25: '1/4', 0.375: '3/8', 0.5: '1/2', 0.75: '3/4'}


def kl(source):
    path, name = source.rsplit(':', 1)
    found = {}
    for row in csv.DictReader(open(path)):
        if row['policy'] == 'full' and row['projection'] == name:
            found[float(row['dim_budget'])] = float(row['kl_to_full'])
    if not found:
        sys.exit(f'{path}: no full-cache rows of projection {name}')
    return found


series = []
for arg in sys.argv[3:]:
    label, pca_source, trained = arg.split('|')
    pca = kl(pca_source)
    sources = [kl(s) for s in trained.split(',')]
    points = []
    for b in budgets:
        measured = [s[b] for s in sources if b in s]
        if measured and b in pca:
            points.append((b, min(measured) / pca[b], min(measured), pca[b]))
    series.append((label, points))

W, H, L, R, T, B = 760, 420, 60, 20, 40, 55
ymax = 1.0
X = lambda b: L + (W - L - R) * (b - 0.2) / (0.8 - 0.2)
Y = lambda y: T + (H - T - B) * (1 - min(y, ymax) / ymax)
colours = ['#1f77b4', '#d62728', '#ff7f0e', '#2ca02c', '#9467bd']
o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
     f'<rect width="{W}" height="{H}" fill="white"/>',
     f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
for v in [0, 0.2, 0.4, 0.6, 0.8, 1.0]:
    o.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W - R}" y2="{Y(v):.1f}" stroke="#ddd"/>'
             f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
for b in budgets:
    o.append(f'<text x="{X(b):.1f}" y="{H - B + 16}" text-anchor="middle">{labels[b]}</text>')
o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">kept fraction of feature dims (K and V)</text>')
o.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">'
         'KL to full, as a share of PCA\'s</text>')
o.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>'
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>')
o.append(f'<line x1="{L}" y1="{Y(1 / 3):.1f}" x2="{W - R}" y2="{Y(1 / 3):.1f}" stroke="black" stroke-dasharray="6,4"/>'
         f'<text x="{X(0.44):.1f}" y="{Y(1 / 3) - 6:.1f}" text-anchor="middle">target: a third of PCA\'s KL</text>')
for i, (label, points) in enumerate(series):
    c = colours[i % len(colours)]
    o.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
             + ' '.join(f'{X(b):.1f},{Y(r):.1f}' for b, r, _, _ in points) + '"/>')
    o.extend(f'<circle cx="{X(b):.1f}" cy="{Y(r):.1f}" r="3.5" fill="{c}"/>' for b, r, _, _ in points)
    y = H - B - 18 * (len(series) - i) - 4  # the legend sits bottom right, below every line
    o.append(f'<line x1="{W - R - 400}" y1="{y}" x2="{W - R - 380}" y2="{y}" stroke="{c}" stroke-width="2"/>'
             f'<text x="{W - R - 375}" y="{y + 4}">{label}</text>')
o.append('</svg>')
open(out, 'w').write('\n'.join(o))

print('| series | ' + ' | '.join(labels[b] for b in budgets) + ' |')
print('|---|' + '---|' * len(budgets))
for label, points in series:
    cells = {b: f'{r:.2f} ({k:.4f} / {p:.4f})' for b, r, k, p in points}
    print(f'| {label} | ' + ' | '.join(cells.get(b, '') for b in budgets) + ' |')
