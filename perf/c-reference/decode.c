/* A plain C decoder for llama2.c checkpoints (legacy format, fp32), used as the C baseline that KvIlgpu's CPU
 * path is measured against side by side. Written for this project: matrix-vector products with OpenMP over
 * output rows (as llama2.c does), everything else scalar. Usage: decode MODEL.bin [tokens]
 * Build: cc -O3 -march=native -fopenmp decode.c -lm -o decode */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { int dim, hidden, layers, heads, kv_heads, vocab, seq; } Config;

static void matvec(float *y, const float *x, const float *w, int n, int d) {
    int i;
#pragma omp parallel for private(i)
    for (i = 0; i < n; i++) {
        const float *row = w + (size_t)i * d;
        float s = 0.0f;
        for (int j = 0; j < d; j++) s += row[j] * x[j];
        y[i] = s;
    }
}

static void rmsnorm(float *o, const float *x, const float *w, int n) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / n + 1e-5f);
    for (int i = 0; i < n; i++) o[i] = w[i] * (ss * x[i]);
}

static void softmax(float *x, int n) {
    float m = x[0], s = 0.0f;
    for (int i = 1; i < n; i++) if (x[i] > m) m = x[i];
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - m); s += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= s;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: decode MODEL.bin [tokens]\n"); return 1; }
    int steps = argc > 2 ? atoi(argv[2]) : 128;
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    Config c;
    if (fread(&c, sizeof(int), 7, f) != 7) return 1;
    int shared = c.vocab > 0; c.vocab = abs(c.vocab);
    int hs = c.dim / c.heads, kv_dim = c.kv_heads * hs, L = c.layers;
    fseek(f, 0, SEEK_END); long size = ftell(f); fseek(f, 7 * sizeof(int), SEEK_SET);
    float *data = malloc(size); if (fread(data, 1, size - 28, f) != (size_t)(size - 28)) return 1; fclose(f);
    float *p = data;
    float *emb = p; p += (size_t)c.vocab * c.dim;
    float *rms_att = p; p += (size_t)L * c.dim;
    float *wq = p; p += (size_t)L * c.dim * c.dim;
    float *wk = p; p += (size_t)L * c.dim * kv_dim;
    float *wv = p; p += (size_t)L * c.dim * kv_dim;
    float *wo = p; p += (size_t)L * c.dim * c.dim;
    float *rms_ffn = p; p += (size_t)L * c.dim;
    float *w1 = p; p += (size_t)L * c.dim * c.hidden;
    float *w2 = p; p += (size_t)L * c.hidden * c.dim;
    float *w3 = p; p += (size_t)L * c.dim * c.hidden;
    float *rms_final = p; p += c.dim;
    p += (size_t)c.seq * hs; /* legacy RoPE tables */
    float *wcls = shared ? emb : p;

    float *x = calloc(c.dim, 4), *xb = calloc(c.dim, 4), *xb2 = calloc(c.dim, 4), *q = calloc(c.dim, 4);
    float *hb = calloc(c.hidden, 4), *hb2 = calloc(c.hidden, 4), *att = calloc((size_t)c.heads * c.seq, 4), *logits = calloc(c.vocab, 4);
    float *kc = calloc((size_t)L * c.seq * kv_dim, 4), *vc = calloc((size_t)L * c.seq * kv_dim, 4);
    int token = 1, warm = 16;
    struct timespec t0, t1;
    for (int pos = 0; pos < steps + warm && pos < c.seq; pos++) {
        if (pos == warm) clock_gettime(CLOCK_MONOTONIC, &t0);
        memcpy(x, emb + (size_t)token * c.dim, c.dim * 4);
        for (int l = 0; l < L; l++) {
            rmsnorm(xb, x, rms_att + (size_t)l * c.dim, c.dim);
            float *k = kc + ((size_t)l * c.seq + pos) * kv_dim, *v = vc + ((size_t)l * c.seq + pos) * kv_dim;
            matvec(q, xb, wq + (size_t)l * c.dim * c.dim, c.dim, c.dim);
            matvec(k, xb, wk + (size_t)l * c.dim * kv_dim, kv_dim, c.dim);
            matvec(v, xb, wv + (size_t)l * c.dim * kv_dim, kv_dim, c.dim);
            for (int i = 0; i < c.dim; i += 2) {
                float fr = 1.0f / powf(10000.0f, (i % hs) / (float)hs), a = pos * fr, cr = cosf(a), ci = sinf(a);
                for (int which = 0; which < (i < kv_dim ? 2 : 1); which++) {
                    float *vec = which == 0 ? q : k, v0 = vec[i], v1 = vec[i + 1];
                    vec[i] = v0 * cr - v1 * ci; vec[i + 1] = v0 * ci + v1 * cr;
                }
            }
            int h;
#pragma omp parallel for private(h)
            for (h = 0; h < c.heads; h++) {
                float *qh = q + h * hs, *ah = att + (size_t)h * c.seq;
                int kvh = h / (c.heads / c.kv_heads);
                for (int t = 0; t <= pos; t++) {
                    float *kt = kc + ((size_t)l * c.seq + t) * kv_dim + kvh * hs, s = 0.0f;
                    for (int i = 0; i < hs; i++) s += qh[i] * kt[i];
                    ah[t] = s / sqrtf(hs);
                }
                softmax(ah, pos + 1);
                float *o = xb + h * hs; memset(o, 0, hs * 4);
                for (int t = 0; t <= pos; t++) {
                    float *vt = vc + ((size_t)l * c.seq + t) * kv_dim + kvh * hs;
                    for (int i = 0; i < hs; i++) o[i] += ah[t] * vt[i];
                }
            }
            matvec(xb2, xb, wo + (size_t)l * c.dim * c.dim, c.dim, c.dim);
            for (int i = 0; i < c.dim; i++) x[i] += xb2[i];
            rmsnorm(xb, x, rms_ffn + (size_t)l * c.dim, c.dim);
            matvec(hb, xb, w1 + (size_t)l * c.dim * c.hidden, c.hidden, c.dim);
            matvec(hb2, xb, w3 + (size_t)l * c.dim * c.hidden, c.hidden, c.dim);
            for (int i = 0; i < c.hidden; i++) hb[i] = hb[i] / (1.0f + expf(-hb[i])) * hb2[i];
            matvec(xb, hb, w2 + (size_t)l * c.hidden * c.dim, c.dim, c.hidden);
            for (int i = 0; i < c.dim; i++) x[i] += xb[i];
        }
        rmsnorm(x, x, rms_final, c.dim);
        matvec(logits, x, wcls, c.vocab, c.dim);
        int best = 0;
        for (int i = 1; i < c.vocab; i++) if (logits[i] > logits[best]) best = i;
        token = best;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"tokens_per_s\": %.2f, \"threads\": %d, \"steps\": %d, \"last_token\": %d}\n", steps / secs, omp_get_max_threads(), steps, token);
    return 0;
}
