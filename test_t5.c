// test_t5.c — the CPU engine against Hugging Face fixtures (dev/make_fixtures.py), plus checks that
// need no PyTorch: finite differences, gradient accumulation, file round trips and bad input.
// One line per compared tensor: name, max abs diff, max rel diff (relative to the reference
// tensor's largest magnitude), OK/FAIL. The exit code is the verdict.
//
// Tolerances (fp32 engine vs fp32 PyTorch on the same weights and batch; the only differences are
// summation order and libm vs PyTorch's vectorised exp/tanh/erf, each a few ulp = ~1e-7 relative):
//   logits, loss:       1e-5 relative — ~100 ulp of headroom for sums over a few hundred terms
//   gradients:          1e-4 relative to the tensor's scale — the backward pass chains ~3× more
//                       roundings than the forward, and rows with tiny gradients amplify cancellation
//   AdamW trajectory:   losses 1e-5 rel, each step's gradients 1e-4; the update itself is driven
//                       by HF's gradients, so parameters after 4 steps must agree to 1e-6 (see there)
#define TESTING
#include "train_t5.c"
#include "dev/testing.h"  // defines: check_close, check_true, verdict, Fixture, fx_f32, fx_i32, fx_meta, run_cmd

// the fixture batch, with the source lengths read off the attention mask (must be a prefix mask)
typedef struct { T5Batch b; int* dec_hf; } FxBatch;

static FxBatch fx_batch(Fixture* f, const T5Config* c) {
    FxBatch x;
    int B, Ts, Tt, r, cc;
    x.b.src = fx_i32(f, "input_ids", &B, &Ts);
    int* mask = fx_i32(f, "attention_mask", &r, &cc);
    x.b.labels = fx_i32(f, "labels", &r, &Tt);
    x.dec_hf = fx_i32(f, "decoder_input_ids", &r, &cc);
    x.b.B = B; x.b.Ts = Ts; x.b.Tt = Tt;
    x.b.src_len = (int*)mallocCheck((size_t)B * sizeof(int));
    x.b.dec_in = (int*)mallocCheck((size_t)B * Tt * sizeof(int));
    int prefix = 1;
    for (int b = 0; b < B; b++) {
        int n = 0;
        while (n < Ts && mask[b * Ts + n]) n++;
        for (int j = n; j < Ts; j++) prefix &= mask[b * Ts + j] == 0;
        x.b.src_len[b] = n;
        for (int j = 0; j < Tt; j++)
            x.b.dec_in[b * Tt + j] = dec_input(j == 0 ? c->decoder_start_id : x.b.labels[b * Tt + j - 1], c->pad_id);
    }
    check_true("attention mask is a prefix mask", prefix);
    check_true("labels shifted right == HF decoder_input_ids", memcmp(x.b.dec_in, x.dec_hf, (size_t)B * Tt * sizeof(int)) == 0);
    free(mask);
    return x;
}

static void fx_batch_free(FxBatch* x) { free(x->b.src); free(x->b.src_len); free(x->b.dec_in); free(x->b.labels); free(x->dec_hf); }

// calls fn(fixture tensor PREFIX<hf name>, its slot in a parameter-shaped buffer) for every layout
// tensor copy; the fixture tensor must have the copy's size
typedef void (*TensorVisit)(const char* key, float* slot, const float* fixture_values, size_t n, float tol);

static void visit_all_tensors(Fixture* f, const T5* m, float* buf, const char* prefix, TensorVisit fn, float tol) {
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &m->layout.t[i];
        for (int l = 0; l < t->layers && t->size; l++) {
            char name[160], key[200];
            t5_tensor_name(&m->layout, i, l, name, sizeof(name));
            snprintf(key, sizeof(key), "%s%s", prefix, name);
            size_t n, per = t5_tensor_copy_size(t);
            float* want = fx_f32(f, key, &n);
            if (n != per) { printf("fixture tensor %s has %zu values, want %zu\n", key, n, per); check_true(key, 0); }
            else fn(key, buf + t->offset + (size_t)l * per, want, n, tol);
            free(want);
        }
    }
}

static void visit_compare(const char* key, float* slot, const float* want, size_t n, float tol) { check_close(key, slot, want, n, tol); }
static void visit_copy(const char* key, float* slot, const float* src, size_t n, float tol) {
    (void)key; (void)tol;
    memcpy(slot, src, n * sizeof(float));
}

// compares every parameter-shaped buffer (gradients or parameters) with the fixture's PREFIX<hf name>
static void check_all_tensors(Fixture* f, const T5* m, const float* buf, const char* prefix, float tol) {
    visit_all_tensors(f, m, (float*)buf, prefix, visit_compare, tol);
}

// reads every parameter-shaped fixture tensor PREFIX<hf name> into buf (layout order)
static void load_all_tensors(Fixture* f, const T5* m, float* buf, const char* prefix) {
    visit_all_tensors(f, m, buf, prefix, visit_copy, 0.0f);
}

// ----------------------------------------------------------------------------
// against the fixtures

static T5 load_fixture_model(const char* dir) {
    char path[600], err[1024];
    snprintf(path, sizeof(path), "%s/model", dir);
    T5 m;
    if (t5_build_from_hf(&m, path, err, sizeof(err))) { printf("error: %s\n", err); exit(EXIT_FAILURE); }
    return m;
}

static void test_forward_backward(Fixture* f, T5* m, FxBatch* x) {
    check_true("fixture batch passes t5_check_batch", t5_check_batch(m, &x->b) == NULL);
    float loss = t5_forward(m, &x->b, 1, 7); // dropout 0 in the fixture config: train mode is exact too
    size_t n;
    float* logits = fx_f32(f, "logits", &n);
    check_close("logits", m->acts.logits, logits, n, 1e-5f);
    float* want_loss = fx_f32(f, "loss", NULL);
    check_close("loss", &loss, want_loss, 1, 1e-5f);
    t5_zero_grad(m);
    t5_backward(m, &x->b, 1, 1.0f / (float)m->num_counted);
    check_all_tensors(f, m, m->grads_memory, "grad.", 1e-4f);
    free(logits); free(want_loss);
}

static void test_buckets(Fixture* f, const T5Config* c) {
    const char* names[4] = { "buckets.bidirectional", "buckets.causal", "buckets32.bidirectional", "buckets32.causal" };
    int off = (int)fx_meta(f, "buckets_offset");
    for (int k = 0; k < 4; k++) {
        int n, one;
        int* want = fx_i32(f, names[k], &n, &one);
        int nb = k < 2 ? c->num_buckets : 32, md = k < 2 ? c->max_distance : 128, bidir = (k % 2) == 0, bad = 0;
        for (int i = 0; i < n; i++) bad += t5_relative_bucket(i - off, bidir, nb, md) != want[i];
        char name[96];
        snprintf(name, sizeof(name), "%s (rel %d..%d, %d mismatches)", names[k], -off, n - 1 - off, bad);
        check_true(name, bad == 0);
        free(want);
    }
}

static void test_schedules(Fixture* f) {
    const char* names[3] = { "sched.linear", "sched.cosine", "sched.constant_warmup" };
    LrScheduleKind kinds[3] = { SCHED_LINEAR, SCHED_COSINE, SCHED_CONSTANT };
    for (int k = 0; k < 3; k++) {
        size_t n;
        float* want = fx_f32(f, names[k], &n);
        LrSchedule s = { kinds[k], (long long)fx_meta(f, "sched_warmup_steps"), (long long)fx_meta(f, "sched_total_steps") };
        float got[64];
        for (size_t i = 0; i < n && i < 64; i++) got[i] = (float)lr_multiplier(&s, (long long)i);
        check_close(names[k], got, want, n, 1e-6f); // double formula vs Python double, stored as fp32
        free(want);
    }
}

// K AdamW steps with clipping and the linear schedule, as the fixture script ran them. Each step's
// gradients are compared with HF's, then HF's own gradients drive the update: Adam divides every
// entry by its own magnitude, so fp32 noise in near-zero gradients (1e-7 absolute) would otherwise
// grow into lr-sized differences and hide the optimizer arithmetic under test. With identical
// gradients the parameters may only differ by update rounding: 1e-6 relative to scale.
static void test_adamw_trajectory(Fixture* f, const char* dir, FxBatch* x) {
    T5 m = load_fixture_model(dir);
    AdamW o = { fx_meta(f, "lr"), fx_meta(f, "beta1"), fx_meta(f, "beta2"), fx_meta(f, "eps"), fx_meta(f, "weight_decay"), 1 };
    LrSchedule s = { SCHED_LINEAR, (long long)fx_meta(f, "warmup_steps"), (long long)fx_meta(f, "total_steps") };
    int K = (int)fx_meta(f, "steps");
    for (int k = 0; k < K; k++) {
        char key[64], prefix[64];
        float loss = t5_forward(&m, &x->b, 1, 7);
        t5_zero_grad(&m);
        t5_backward(&m, &x->b, 1, 1.0f / (float)m.num_counted);
        snprintf(key, sizeof(key), "step%d.loss", k);
        float* want = fx_f32(f, key, NULL);
        check_close(key, &loss, want, 1, 1e-5f); free(want);
        snprintf(prefix, sizeof(prefix), k == 0 ? "grad." : "step%d.grad.", k);
        if (k > 0) check_all_tensors(f, &m, m.grads_memory, prefix, 1e-4f);
        load_all_tensors(f, &m, m.grads_memory, prefix);
        float norm = t5_grad_norm(&m), lr = (float)(o.lr * lr_multiplier(&s, k));
        snprintf(key, sizeof(key), "step%d.grad_norm", k);
        want = fx_f32(f, key, NULL);
        check_close(key, &norm, want, 1, 1e-6f); free(want); // same gradients: only summation order differs
        snprintf(key, sizeof(key), "step%d.lr", k);
        want = fx_f32(f, key, NULL);
        check_close(key, &lr, want, 1, 1e-6f); free(want);
        t5_clip_grads(&m, norm, fx_meta(f, "max_grad_norm"));
        t5_update(&m, &o, lr);
    }
    check_all_tensors(f, &m, m.params_memory, "final.", 1e-6f);
    t5_free(&m);
}

// the other input forms of the same weights: BF16 tensors (= fp32 rounded to bf16) and a sharded index
static void test_load_variants(const char* dir, const T5* m) {
    char path[600], err[1024];
    snprintf(path, sizeof(path), "%s/model_sharded", dir);
    struct stat st;
    if (stat(path, &st) != 0) return;
    T5 r;
    int ok = t5_build_from_hf(&r, path, err, sizeof(err)) == 0;
    if (!ok) printf("  %s\n", err);
    check_true("sharded safetensors (index.json + 3 shards): identical parameters",
               ok && memcmp(r.params_memory, m->params_memory, m->layout.total * sizeof(float)) == 0);
    if (ok) t5_free(&r);
    snprintf(path, sizeof(path), "%s/model_bf16", dir);
    ok = t5_build_from_hf(&r, path, err, sizeof(err)) == 0;
    if (!ok) { printf("  %s\n", err); check_true("bf16 safetensors load", 0); return; }
    // bf16 keeps 8 significant bits (7 stored): round-to-nearest error ≤ half an ulp = 2^-8 relative
    double worst = 0.0;
    for (size_t i = 0; i < m->layout.total; i++) {
        double a = m->params_memory[i], d = fabs(r.params_memory[i] - a);
        if (d > fabs(a) * (1.0 / 256.0)) worst = fmax(worst, d / fabs(a));
    }
    check_true("bf16 safetensors: every value = fp32 rounded to bf16 (rel err <= 2^-8)", worst == 0.0);
    t5_free(&r);
}

// C-side round trips: HF directory and native checkpoint give back identical parameters
static void test_round_trips(T5* m, const char* tmpdir) {
    char dir[600], path[600], err[1024];
    snprintf(dir, sizeof(dir), "%s/export", tmpdir);
    int ok = t5_save_hf_dir(dir, &m->config, m->params_memory, err, sizeof(err)) == 0;
    T5 r;
    ok = ok && t5_build_from_hf(&r, dir, err, sizeof(err)) == 0;
    if (!ok) printf("  %s\n", err);
    check_true("HF export -> import: identical config and parameters",
               ok && memcmp(&r.config, &m->config, sizeof(T5Config)) == 0 &&
               memcmp(r.params_memory, m->params_memory, m->layout.total * sizeof(float)) == 0);
    if (ok) t5_free(&r);
    snprintf(path, sizeof(path), "%s/model.ckpt", tmpdir);
    ok = t5_save_checkpoint(m, path, NULL, err, sizeof(err)) == 0 && t5_build_from_checkpoint(&r, path, NULL, err, sizeof(err)) == 0;
    if (!ok) printf("  %s\n", err);
    check_true("checkpoint save -> load: identical config and parameters",
               ok && memcmp(&r.config, &m->config, sizeof(T5Config)) == 0 &&
               memcmp(r.params_memory, m->params_memory, m->layout.total * sizeof(float)) == 0 && r.step == m->step);
    if (ok) t5_free(&r);
}

static void test_fixture(const char* dir, const char* tmpdir) {
    printf("\n=== fixture %s\n", dir);
    Fixture f;
    char err[1024];
    snprintf(f.path, sizeof(f.path), "%s/fixture.safetensors", dir);
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("error: %s (run `make fixtures`)\n", err); exit(EXIT_FAILURE); }
    T5 m = load_fixture_model(dir);
    FxBatch x = fx_batch(&f, &m.config);
    test_forward_backward(&f, &m, &x);
    test_buckets(&f, &m.config);
    test_schedules(&f);
    test_adamw_trajectory(&f, dir, &x);
    test_load_variants(dir, &m);
    test_round_trips(&m, tmpdir);
    fx_batch_free(&x);
    t5_free(&m);
    st_close(&f.st);
}

// files written byte by byte, and refusals that must name the problem
static void write_bytes(const char* path, const void* data, size_t n) {
    FILE* f = fopenCheck(path, "wb");
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void expect_error(const char* what, int rc, const char* err, const char* must_contain) {
    int ok = rc != 0 && strstr(err, must_contain) != NULL;
    printf("%-62s %s\n      -> %s\n", what, ok ? "OK" : "FAIL", rc ? err : "(accepted!)");
    verdict(ok, what);
}

// ----------------------------------------------------------------------------
// model directories as each transformers version writes them (dev/make_format_fixtures.py): the head
// (tied? scaled?) must be what transformers 5 made of the directory, the loss, logits and gradients
// what it computed (tolerances as test_forward_backward), and every export form must read back as
// the same model

// DIR exported with opt, read back: the same config, parameters within `rel` (0: bit-identical)
static void check_export_form(const T5* m, const char* dir, const HfWeightsOptions* opt, const char* label, double rel) {
    char err[1024];
    T5 r;
    int ok = t5_save_hf_weights(dir, &m->config, m->params_memory, opt, err, sizeof(err)) == 0 &&
             t5_build_from_hf(&r, dir, err, sizeof(err)) == 0;
    if (!ok) { printf("  %s\n", err); check_true(label, 0); return; }
    int same = memcmp(&r.config, &m->config, sizeof(T5Config)) == 0;
    for (size_t i = 0; same && i < m->layout.total; i++)
        same = fabs((double)r.params_memory[i] - m->params_memory[i]) <= rel * fabs((double)m->params_memory[i]);
    check_true(label, same);
    t5_free(&r);
}

static void test_format_fixture(const char* name, const char* tmp) {
    char dir[600], path[700], err[1024];
    snprintf(dir, sizeof(dir), "dev/fixtures/formats/%s", name);
    printf("\n=== format %s\n", dir);
    Fixture f;
    snprintf(f.path, sizeof(f.path), "%s/expected.safetensors", dir);
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("error: %s (run `make fixtures`)\n", err); exit(EXIT_FAILURE); }
    T5 m = load_fixture_model(dir);
    char label[200];
    snprintf(label, sizeof(label), "head as transformers %s reads it: tied %d, output scaled %d", st_metadata(&f.st, "writer") ? "5" : "?",
             (int)fx_meta(&f, "tied"), (int)fx_meta(&f, "scale"));
    check_true(label, m.config.tied == (int)fx_meta(&f, "tied") && m.config.scale_out == (int)fx_meta(&f, "scale"));
    FxBatch x = fx_batch(&f, &m.config);
    test_forward_backward(&f, &m, &x);
    snprintf(path, sizeof(path), "%s/fmt_%s", tmp, name);
    HfWeightsOptions fp32 = { ST_F32, 0 }, shards = { ST_F32, 4000 }, bf16 = { ST_BF16, 0 };
    check_export_form(&m, path, &fp32, "export F32 -> read: same head, bit-identical parameters", 0.0);
    check_export_form(&m, path, &shards, "export in 4 kB shards + index -> read: bit-identical (old single file removed)", 0.0);
    // bf16 keeps 8 significant bits: round-to-nearest error <= half an ulp <= 2^-8 relative
    check_export_form(&m, path, &bf16, "export BF16 -> read: same head, values within bf16 rounding (2^-8)", 1.0 / 256);
    fx_batch_free(&x);
    t5_free(&m);
    st_close(&f.st);
}

// DIR/model.safetensors = the untied model m's tensors in state order, with tensor `drop` left out and
// (extra_name, m's lm_head values) added; DIR/config.json = m's config
static int write_variant(const T5* m, const char* dir, const char* drop, const char* extra_name, char* err, size_t errlen) {
    StWriteTensor ts[128];
    char names[128][128], path[700];
    int n = hf_state_order(&m->config, &m->layout, m->params_memory, ts, names), k = 0;
    for (int i = 0; i < n; i++) if (!drop || strcmp(ts[i].name, drop) != 0) ts[k++] = ts[i];
    if (extra_name) { ts[k] = ts[n - 1]; ts[k].name = extra_name; k++; } // ts[n - 1]: lm_head
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if (mkdir_p(dir, err, errlen) || st_write_f32(path, ts, k, NULL, 0, err, errlen)) return -1;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    return t5_config_write(path, &m->config, err, errlen);
}

// what transformers 5 does with the embedding and head names in odd files, and what it would refuse
static void test_head_cases(const char* tmp) {
    printf("\n=== the head and embedding copies in odd directories\n");
    T5 m = load_fixture_model("dev/fixtures/formats/v4_flan"); // untied: lm_head differs from shared
    char dir[600], path[700], err[1024];
    T5Config c;
    float* p;
    snprintf(dir, sizeof(dir), "%s/heads", tmp);
    int rc = write_variant(&m, dir, NULL, "encoder.embed_tokens.weight", err, sizeof(err)) ? -2 : t5_load_hf_dir(dir, &c, &p, err, sizeof(err));
    expect_error("an encoder.embed_tokens copy that differs from shared.weight", rc, err, "hold different values");
    rc = write_variant(&m, dir, "shared.weight", NULL, err, sizeof(err)) ? -2 : t5_load_hf_dir(dir, &c, &p, err, sizeof(err));
    int ok = rc == 0 && c.tied == 1 && memcmp(p, m.params.lm_head, m.layout.t[P_LM_HEAD].size * sizeof(float)) == 0;
    check_true("no embedding, only lm_head.weight: tied, the embedding is the head (as transformers ties it)", ok);
    if (rc == 0) free(p);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    const char* bad = "{\"model_type\": \"t5\", \"vocab_size\": 64, \"d_model\": 16, \"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 24, "
                      "\"num_layers\": 1, \"scale_decoder_outputs\": \"yes\"}";
    write_bytes(path, bad, strlen(bad));
    rc = t5_config_read(path, &c, err, sizeof(err));
    expect_error("scale_decoder_outputs that is not a boolean", rc, err, "'scale_decoder_outputs' must be");
    const char* acts[4][2] = { // dense_act_fn / is_gated_act override feed_forward_proj, as in transformers
        { ", \"feed_forward_proj\": \"gated-gelu\", \"dense_act_fn\": \"relu\"", "1 0" },
        { ", \"feed_forward_proj\": \"relu\", \"is_gated_act\": true", "1 0" },
        { ", \"feed_forward_proj\": \"gated-gelu\", \"is_gated_act\": false, \"dense_act_fn\": \"gelu_pytorch_tanh\"", "0 2" },
        { ", \"feed_forward_proj\": \"gated-gelu\", \"dense_act_fn\": \"gelu\"", "1 1" } };
    for (int i = 0; i < 4; i++) {
        char text[400], got[8], label[240];
        int len = snprintf(text, sizeof(text), "{\"model_type\": \"t5\", \"vocab_size\": 64, \"d_model\": 16, \"d_kv\": 4, "
                           "\"num_heads\": 2, \"d_ff\": 24, \"num_layers\": 1%s}", acts[i][0]);
        write_bytes(path, text, (size_t)len);
        rc = t5_config_read(path, &c, err, sizeof(err));
        snprintf(got, sizeof(got), "%d %d", c.gated, (int)c.act);
        snprintf(label, sizeof(label), "config {%s}: gated, act = %s", acts[i][0] + 2, acts[i][1]);
        check_true(label, rc == 0 && strcmp(got, acts[i][1]) == 0);
    }
    const char* dflt[2][2] = { // what transformers fills in where config.json is silent (T5Config's and MT5Config's defaults)
        { "{\"model_type\": \"t5\"}", "32128 512 64 8 2048 6 6 0 1 1" }, { "{\"model_type\": \"mt5\"}", "250112 512 64 6 1024 8 8 1 1 0" } };
    for (int i = 0; i < 2; i++) {
        char got[96], label[200];
        write_bytes(path, dflt[i][0], strlen(dflt[i][0]));
        rc = t5_config_read(path, &c, err, sizeof(err));
        snprintf(got, sizeof(got), "%d %d %d %d %d %d %d %d %d %d", c.vocab_size, c.d_model, c.d_kv, c.num_heads, c.d_ff, c.num_layers,
                 c.num_decoder_layers, c.gated, c.tied, c.scale_out);
        snprintf(label, sizeof(label), "config %s: transformers' defaults (V C D H F Le Ld gated tied scaled = %s)", dflt[i][0], dflt[i][1]);
        check_true(label, rc == 0 && strcmp(got, dflt[i][1]) == 0);
    }
    // eos_token_id as a list (transformers stops at any of them): the engines keep the first, with a warning on
    // stderr when the list holds another id (printed just above this check's line)
    const char* eos = "{\"model_type\": \"t5\", \"vocab_size\": 64, \"d_model\": 16, \"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 24, "
                      "\"num_layers\": 1, \"eos_token_id\": [5, 1]}";
    write_bytes(path, eos, strlen(eos));
    rc = t5_config_read(path, &c, err, sizeof(err));
    check_true("eos_token_id [5, 1]: the first id is the end id (a warning names the others)", rc == 0 && c.eos_id == 5);
    // dense_act_fn wins over feed_forward_proj: silu is read as silu; mish, which the engine lacks, is refused
    const char* silu = "{\"model_type\": \"t5\", \"vocab_size\": 64, \"d_model\": 16, \"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 24, "
                       "\"num_layers\": 1, \"feed_forward_proj\": \"gated-gelu\", \"dense_act_fn\": \"silu\"}";
    write_bytes(path, silu, strlen(silu));
    rc = t5_config_read(path, &c, err, sizeof(err));
    check_true("dense_act_fn silu over feed_forward_proj gated-gelu: a gated SiLU FFN", rc == 0 && c.act == ACT_SILU && c.gated);
    const char* mish = "{\"model_type\": \"t5\", \"vocab_size\": 64, \"d_model\": 16, \"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 24, "
                       "\"num_layers\": 1, \"feed_forward_proj\": \"gated-gelu\", \"dense_act_fn\": \"mish\"}";
    write_bytes(path, mish, strlen(mish));
    rc = t5_config_read(path, &c, err, sizeof(err));
    expect_error("dense_act_fn mish (it would override gated-gelu in transformers)", rc, err, "unsupported dense_act_fn 'mish'");
    const char* cases[4][2] = { { "", "1 1" }, { ", \"tie_word_embeddings\": false", "0 0" },
                                { ", \"tie_word_embeddings\": true, \"scale_decoder_outputs\": false", "1 0" },
                                { ", \"tie_word_embeddings\": false, \"scale_decoder_outputs\": true", "0 1" } };
    for (int i = 0; i < 4; i++) { // config alone: tied = the flag as written, scaled as transformers 5 reads it
        char text[400], got[8], label[200];
        int len = snprintf(text, sizeof(text), "{\"model_type\": \"t5\", \"vocab_size\": 64, \"d_model\": 16, \"d_kv\": 4, "
                           "\"num_heads\": 2, \"d_ff\": 24, \"num_layers\": 1%s}", cases[i][0]);
        write_bytes(path, text, (size_t)len);
        rc = t5_config_read(path, &c, err, sizeof(err));
        snprintf(got, sizeof(got), "%d %d", c.tied, c.scale_out);
        snprintf(label, sizeof(label), "config {%s}: tied, scaled = %s", i ? cases[i][0] + 2 : "no head fields", cases[i][1]);
        check_true(label, rc == 0 && strcmp(got, cases[i][1]) == 0);
    }
    t5_free(&m);
}

static void test_formats(const char* tmp) {
    const char* names[] = { "v4_flan", "v4_t5", "v5_fresh_flan", "v5_mt5", "v5_resaved_flan", "v5_resaved_flan_bf16", "v5_resaved_flan_sharded" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) test_format_fixture(names[i], tmp);
    test_head_cases(tmp);
}

// ----------------------------------------------------------------------------
// LoRA against peft (dev/make_lora_fixtures.py): the adapted model's logits, loss and adapter
// gradients, K AdamW steps over the adapter, the merge, and the adapter format's round trip.
// Tolerances: those of the full fine-tune above (same arithmetic, two more small products per Linear).

// calls fn(fixture tensor PREFIX<peft key>, its slot in an adapter-shaped buffer) for every A and B
static void visit_lora_tensors(Fixture* f, const T5* m, float* buf, const char* prefix, TensorVisit fn, float tol) {
    const LoraLayout* L = &m->lora_layout;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++)
        for (int l = 0; L->t[i].on && l < L->t[i].layers; l++)
            for (int ab = 0; ab < 2; ab++) {
                char name[200], key[240];
                lora_key(&m->layout, i, l, ab ? 'B' : 'A', name, sizeof(name));
                snprintf(key, sizeof(key), "%s%s", prefix, name);
                size_t n, per = ab ? (size_t)L->t[i].out * L->r : (size_t)L->r * L->t[i].in;
                float* want = fx_f32(f, key, &n);
                if (n != per) { printf("fixture tensor %s has %zu values, want %zu\n", key, n, per); check_true(key, 0); }
                else fn(key, ab ? lora_B(L, buf, i, l) : lora_A(L, buf, i, l), want, n, tol);
                free(want);
            }
}

// the fixture's base model with its peft adapter attached
static T5 load_lora_fixture(const char* dir, const char* base) {
    char path[600], err[1024];
    snprintf(path, sizeof(path), "dev/fixtures/%s", base);
    T5 m = load_fixture_model(path);
    LoraConfig c;
    float* adapter;
    snprintf(path, sizeof(path), "%s/adapter", dir);
    if (lora_load_dir(path, &m.config, &c, &adapter, err, sizeof(err))) { printf("error: %s\n", err); exit(EXIT_FAILURE); }
    t5_lora_attach(&m, &c, adapter, 0);
    return m;
}

static void test_lora_forward_backward(Fixture* f, T5* m, FxBatch* x) {
    float loss = t5_forward(m, &x->b, 1, 7); // lora_dropout 0 and dropout_rate 0: train mode is exact
    size_t n;
    float* logits = fx_f32(f, "logits", &n);
    check_close("lora logits", m->acts.logits, logits, n, 1e-5f);
    float* want = fx_f32(f, "loss", NULL);
    check_close("lora loss", &loss, want, 1, 1e-5f);
    t5_zero_grad(m);
    t5_backward(m, &x->b, 1, 1.0f / (float)m->num_counted);
    visit_lora_tensors(f, m, m->lora_grads, "grad.", visit_compare, 1e-4f);
    check_true("lora: no base gradient buffer (frozen base)", m->grads_memory == NULL);
    free(logits); free(want);
}

// as test_adamw_trajectory: each step's adapter gradients compared, then peft's drive the update
static void test_lora_trajectory(Fixture* f, const char* dir, const char* base, FxBatch* x) {
    T5 m = load_lora_fixture(dir, base);
    float* base_before = (float*)mallocCheck(m.layout.total * sizeof(float));
    memcpy(base_before, m.params_memory, m.layout.total * sizeof(float));
    AdamW o = { fx_meta(f, "lr"), fx_meta(f, "beta1"), fx_meta(f, "beta2"), fx_meta(f, "eps"), fx_meta(f, "weight_decay"), 1 };
    LrSchedule s = { SCHED_LINEAR, (long long)fx_meta(f, "warmup_steps"), (long long)fx_meta(f, "total_steps") };
    int K = (int)fx_meta(f, "steps");
    for (int k = 0; k < K; k++) {
        char key[64], prefix[64];
        float loss = t5_forward(&m, &x->b, 1, 7);
        t5_zero_grad(&m);
        t5_backward(&m, &x->b, 1, 1.0f / (float)m.num_counted);
        snprintf(key, sizeof(key), "lora step%d.loss", k);
        float* want = fx_f32(f, key + 5, NULL);
        check_close(key, &loss, want, 1, 1e-5f); free(want);
        snprintf(prefix, sizeof(prefix), k == 0 ? "grad." : "step%d.grad.", k);
        if (k > 0) visit_lora_tensors(f, &m, m.lora_grads, prefix, visit_compare, 1e-4f);
        visit_lora_tensors(f, &m, m.lora_grads, prefix, visit_copy, 0.0f);
        float norm = t5_grad_norm(&m), lr = (float)(o.lr * lr_multiplier(&s, k));
        snprintf(key, sizeof(key), "lora step%d.grad_norm", k);
        want = fx_f32(f, key + 5, NULL);
        check_close(key, &norm, want, 1, 1e-6f); free(want); // same gradients: only summation order differs
        t5_clip_grads(&m, norm, fx_meta(f, "max_grad_norm"));
        t5_update(&m, &o, lr);
    }
    visit_lora_tensors(f, &m, m.lora_memory, "final.", visit_compare, 1e-6f);
    check_true("lora training leaves the base weights bit-identical",
               memcmp(base_before, m.params_memory, m.layout.total * sizeof(float)) == 0);
    free(base_before);
    t5_free(&m);
}

// merge_and_unload() of the initial adapter: the wrapped tensors to 1e-6 of their scale (one fp32
// product of r terms, then the add), every other tensor bit-identical; unmerge restores the base
static void test_lora_merge(Fixture* f, T5* m) {
    float* before = (float*)mallocCheck(m->layout.total * sizeof(float));
    memcpy(before, m->params_memory, m->layout.total * sizeof(float));
    float* saved = t5_lora_merge(m);
    int untouched = 1;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &m->layout.t[i];
        for (int l = 0; l < t->layers && t->size; l++) {
            char name[160], key[200];
            t5_tensor_name(&m->layout, i, l, name, sizeof(name));
            snprintf(key, sizeof(key), "merged.%s", name);
            size_t per = t5_tensor_copy_size(t), off = t->offset + (size_t)l * per;
            if (!st_find(&f->st, key)) { untouched &= memcmp(before + off, m->params_memory + off, per * sizeof(float)) == 0; continue; }
            float* want = fx_f32(f, key, NULL);
            check_close(key, m->params_memory + off, want, per, 1e-6f);
            free(want);
        }
    }
    check_true("lora merge: tensors peft leaves alone are bit-identical", untouched);
    t5_lora_unmerge(m, saved);
    check_true("lora unmerge: the base weights come back bit for bit", memcmp(before, m->params_memory, m->layout.total * sizeof(float)) == 0);
    free(before);
}

// our writer -> our reader gives back the same config and adapter bits; the file's keys are peft's
static void test_lora_round_trip(const T5* m, const char* tmpdir) {
    char dir[600], err[1024];
    snprintf(dir, sizeof(dir), "%s/adapter_rt", tmpdir);
    LoraConfig c;
    float* back = NULL;
    int ok = lora_save_dir(dir, &m->lora, &m->layout, &m->lora_layout, m->lora_memory, "base", err, sizeof(err)) == 0 &&
             lora_load_dir(dir, &m->config, &c, &back, err, sizeof(err)) == 0;
    if (!ok) printf("  %s\n", err);
    check_true("lora adapter save -> load: identical config and A, B",
               ok && memcmp(&c, &m->lora, sizeof(c)) == 0 && memcmp(back, m->lora_memory, m->lora_layout.total * sizeof(float)) == 0);
    free(back);
}

// generation with the adapter (merged per call) == generation with peft's merged weights built by hand
static void test_lora_generate(T5* m) {
    T5 merged = load_fixture_model("dev/fixtures/flan_gated");
    if (merged.layout.total != m->layout.total) { t5_free(&merged); return; } // only for the gated base
    lora_merge(merged.params_memory, &merged.layout, &m->lora_layout, m->lora_memory, lora_scale(&m->lora));
    int s0[] = { 5, 9, 17, 33, 2, 1 }, s1[] = { 7, 7, 40, 1 };
    const int* src[2] = { s0, s1 };
    int len[2] = { 6, 4 }, out_a[2 * 12], out_b[2 * 12], la[2], lb[2];
    GenConfig g = gen_config_default();
    g.max_new_tokens = 12; g.num_beams = 2;
    char err[256];
    int ok = t5_generate(m, src, len, 2, &g, out_a, la, err, sizeof(err)) == 0 &&
             t5_generate(&merged, src, len, 2, &g, out_b, lb, err, sizeof(err)) == 0;
    check_true("lora generate (beam 2) == generate with the merged weights",
               ok && memcmp(out_a, out_b, sizeof(out_a)) == 0 && memcmp(la, lb, sizeof(la)) == 0 && !m->lora_merged);
    t5_free(&merged);
}

static void test_lora_fixture(const char* dir, const char* tmpdir) {
    printf("\n=== LoRA fixture %s\n", dir);
    Fixture f;
    char err[1024], base[64];
    snprintf(f.path, sizeof(f.path), "%s/fixture.safetensors", dir);
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("error: %s (run `make fixtures`)\n", err); exit(EXIT_FAILURE); }
    snprintf(base, sizeof(base), "%s", st_metadata(&f.st, "base"));
    T5 m = load_lora_fixture(dir, base);
    FxBatch x = fx_batch(&f, &m.config);
    test_lora_forward_backward(&f, &m, &x);
    test_lora_trajectory(&f, dir, base, &x);
    test_lora_merge(&f, &m);
    test_lora_round_trip(&m, tmpdir);
    test_lora_generate(&m);
    fx_batch_free(&x);
    t5_free(&m);
    st_close(&f.st);
}

// ----------------------------------------------------------------------------
// checks that need no fixture

static T5Config tiny_config(int tied, T5Act act, int gated) {
    return (T5Config){ .vocab_size = 20, .d_model = 8, .d_kv = 4, .num_heads = 2, .d_ff = 12, .num_layers = 2,
                       .num_decoder_layers = 2, .num_buckets = 8, .max_distance = 16, .eps = 1e-6f, .dropout = 0.1f,
                       .act = act, .gated = gated, .tied = tied, .scale_out = tied, .pad_id = 0, .eos_id = 1, .decoder_start_id = 0 };
}

// a fixed batch: B = 2, sources of 7 and 4 tokens, targets of 5 and 3
static T5Batch tiny_batch(void) {
    static int src[14] = { 3, 5, 7, 9, 11, 13, 1, 4, 6, 8, 1, 0, 0, 0 };
    static int src_len[2] = { 7, 4 };
    static int labels[10] = { 2, 4, 6, 8, 1, 10, 12, 1, -100, -100 };
    static int dec_in[10] = { 0, 2, 4, 6, 8, 0, 10, 12, 1, 0 };
    return (T5Batch){ 2, 7, 5, src, src_len, dec_in, labels };
}

static float loss_at(T5* m, const T5Batch* b) { return t5_forward(m, b, 1, 99); }

// central differences of the loss in the 3 largest-|gradient| entries of p (n values) against their
// gradients g; the checked entries of g are zeroed, so each pick is new. Passes at 2e-2 relative.
static void check_finite_differences(T5* m, const T5Batch* b, float* p, float* g, size_t n, float h, const char* name) {
    double worst = 0.0;
    for (int pick = 0; pick < 3; pick++) {
        size_t best = 0; float bv = -1.0f;
        for (size_t j = 0; j < n; j++) if (fabsf(g[j]) > bv) { bv = fabsf(g[j]); best = j; }
        float saved = p[best];
        p[best] = saved + h; float lp = loss_at(m, b);
        p[best] = saved - h; float lm = loss_at(m, b);
        p[best] = saved;
        double fd = ((double)lp - lm) / (2.0 * h);
        double e = fabs(fd - g[best]) / fmax(fabs(g[best]), 1e-3);
        if (e > worst) worst = e;
        g[best] = 0.0f;
    }
    int ok = worst < 2e-2;
    printf("%-62s max rel err %.3e  tol 2e-02  %s\n", name, worst, ok ? "OK" : "FAIL");
    verdict(ok, name);
}

// central differences in fp32 with h = 1e-2 on the largest-gradient entries of every tensor. Error
// budget: truncation O(h²·f''') ~ 1e-4 relative; fp32 loss noise ~1e-6 / 2h = 5e-5 absolute. The
// check uses dropout 0.1 with a fixed seed, so the dropout masks' backward is covered too.
static void test_finite_differences(int tied, T5Act act, int gated, const char* label) {
    T5 m;
    T5Config c = tiny_config(tied, act, gated);
    t5_build_from_config(&m, &c);
    t5_init_random(&m, 5);
    T5Batch b = tiny_batch();
    loss_at(&m, &b);
    t5_zero_grad(&m);
    t5_backward(&m, &b, 1, 1.0f / (float)m.num_counted);
    const float h = 1e-2f;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &m.layout.t[i];
        if (!t->size) continue;
        char name[160];
        snprintf(name, sizeof(name), "finite differences %s: %s", label, t->name);
        check_finite_differences(&m, &b, m.params_memory + t->offset, m.grads_memory + t->offset, t->size, h, name);
    }
    t5_free(&m);
}

// a random tiny gated model without dropout
static void tiny_model_nodrop(T5* m, uint64_t seed) {
    T5Config c = tiny_config(0, ACT_GELU_TANH, 1);
    c.dropout = 0.0f;
    t5_build_from_config(m, &c);
    t5_init_random(m, seed);
}

// micro-batches [0] + [1] with loss_scale 1/(all counted tokens) == the full batch
static void test_grad_accumulation(void) {
    T5 m;
    tiny_model_nodrop(&m, 11);
    T5Batch full = tiny_batch();
    t5_zero_grad(&m);
    t5_forward(&m, &full, 1, 1);
    int total = m.num_counted;
    t5_backward(&m, &full, 1, 1.0f / (float)total);
    float* want = (float*)mallocCheck(m.layout.total * sizeof(float));
    memcpy(want, m.grads_memory, m.layout.total * sizeof(float));
    t5_zero_grad(&m);
    for (int i = 0; i < 2; i++) {
        T5Batch one = { 1, full.Ts, full.Tt, full.src + i * full.Ts, full.src_len + i, full.dec_in + i * full.Tt, full.labels + i * full.Tt };
        t5_forward(&m, &one, 1, 1);
        t5_backward(&m, &one, 1, 1.0f / (float)total);
    }
    check_close("gradient accumulation (2 micro-batches == full batch)", m.grads_memory, want, m.layout.total, 1e-5f);
    free(want);
    t5_free(&m);
}

// batch_repad (the CUDA trainer pads its batches to multiples of 64 for cuDNN attention): the same
// batch with 13 more source and 7 more target positions of padding gives the same loss and the same
// gradients (the extra positions are masked keys and ignored labels; the only change is the number
// of rows in the blocked sums, so 1e-6 rather than bit-identity). Dropout off: the masks are drawn by
// position index, so padding draws other (equally distributed) masks
static void test_repad(void) {
    T5 m;
    tiny_model_nodrop(&m, 12);
    T5Batch b = tiny_batch();
    BatchBuf pb;
    memset(&pb, 0, sizeof(pb));
    const T5Batch* p = batch_repad(&pb, &b, b.Ts + 13, b.Tt + 7, m.config.pad_id);
    check_true("repad: real tokens unchanged", batch_real_tokens(p) == batch_real_tokens(&b));
    float* want = (float*)mallocCheck(m.layout.total * sizeof(float));
    float loss[2];
    for (int v = 0; v < 2; v++) {
        t5_zero_grad(&m);
        loss[v] = t5_forward(&m, v ? p : &b, 1, 3);
        t5_backward(&m, v ? p : &b, 1, 1.0f / (float)m.num_counted);
        if (!v) memcpy(want, m.grads_memory, m.layout.total * sizeof(float));
    }
    check_close("repad: loss", &loss[1], &loss[0], 1, 1e-6f);
    check_close("repad: gradients", m.grads_memory, want, m.layout.total, 1e-6f);
    free(want);
    batch_free(&pb);
    t5_free(&m);
}

// dropout: masks differ by seed, the kept fraction is ~1-p, eval mode is deterministic
static void test_dropout(void) {
    size_t n = 200000, kept = 0;
    for (size_t i = 0; i < n; i++) kept += dropout_keep(123, 7, i, 0.1f);
    double frac = (double)kept / n; // binomial sd = sqrt(0.09/n) ≈ 6.7e-4: 5 sd = 3.4e-3
    printf("%-62s %.4f (want 0.9 ± 0.0034)\n", "dropout keep fraction p=0.1", frac);
    check_true("dropout keep fraction within 5 sd", fabs(frac - 0.9) < 3.4e-3);
    T5 m;
    T5Config c = tiny_config(0, ACT_GELU_TANH, 1);
    t5_build_from_config(&m, &c);
    t5_init_random(&m, 3);
    T5Batch b = tiny_batch();
    float e1 = t5_forward(&m, &b, 0, 1), e2 = t5_forward(&m, &b, 0, 2);
    float t1 = t5_forward(&m, &b, 1, 1), t1b = t5_forward(&m, &b, 1, 1), t2 = t5_forward(&m, &b, 1, 2);
    check_true("eval mode ignores the dropout seed", e1 == e2);
    check_true("train mode: same seed same loss, other seed other loss", t1 == t1b && t1 != t2 && t1 != e1);
    t5_free(&m);
}

// HF Trainer's weight-decay groups (found by dev/sweep_hf.py: the relative bias tables were decayed).
// Trainer.get_decay_parameter_names drops the names matching "bias" or "_norm(.|$)"; t5_no_decay must say the
// same of every tensor's HF name. Then one AdamW step with zero gradients, decay_norms 0: m = v = 0, so
// θ ← θ·(1 − lr·wd) for the decayed tensors and θ unchanged for the others, bit for bit.
static void test_decay_groups(void) {
    T5 m;
    T5Config c = tiny_config(0, ACT_GELU_TANH, 1); // gated, untied: every tensor of the layout present
    t5_build_from_config(&m, &c);
    t5_init_random(&m, 5);
    int agree = 1, kept = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        char name[256];
        t5_tensor_name(&m.layout, i, 0, name, sizeof(name));
        int hf_keeps = strstr(name, "bias") != NULL || strstr(name, "_norm.") != NULL;
        agree = agree && hf_keeps == t5_no_decay(i);
        kept += hf_keeps;
    }
    printf("%-62s %d of %d tensors without decay\n", "weight-decay groups against HF Trainer's name rule", kept, NUM_PARAM_TENSORS);
    check_true("t5_no_decay = HF Trainer's rule (norms and relative bias tables)", agree && kept == 9);
    float* before = (float*)mallocCheck(m.layout.total * sizeof(float));
    memcpy(before, m.params_memory, m.layout.total * sizeof(float));
    t5_zero_grad(&m);
    AdamW o = { 0.5f, 0.9f, 0.999f, 1e-8f, 0.1f, 0 };
    t5_update(&m, &o, o.lr);
    float decay = (float)(1.0 - 0.5 * 0.1);
    int exact = 1;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &m.layout.t[i];
        for (size_t j = 0; j < t->size; j++) {
            float want = t5_no_decay(i) ? before[t->offset + j] : before[t->offset + j] * decay;
            exact = exact && m.params_memory[t->offset + j] == want;
        }
    }
    check_true("AdamW, --decay-norms 0, zero gradients: only the decayed tensors shrink, by 1 - lr*wd", exact);
    free(before);
    t5_free(&m);
}

// ----------------------------------------------------------------------------
// bad input: every loader refuses with a message naming the file, never crashes

static void test_bad_config(const char* tmp) {
    const char* cases[][3] = {
        { "config.json num_layers null and 0 heads", "{\"vocab_size\": 32, \"num_heads\": 0, \"num_layers\": null}", "num_heads" },
        { "config.json d_model not a number", "{\"vocab_size\": 32, \"d_model\": \"8\", \"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 8, \"num_layers\": 1}", "must be an integer" },
        { "config.json num_heads = 0", "{\"vocab_size\": 32, \"d_model\": 8, \"d_kv\": 4, \"num_heads\": 0, \"d_ff\": 8, \"num_layers\": 1}", "num_heads" },
        { "config.json fractional d_ff", "{\"vocab_size\": 32, \"d_model\": 8, \"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 8.5, \"num_layers\": 1}", "must be an integer" },
        { "config.json unknown activation", "{\"vocab_size\": 32, \"d_model\": 8, \"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 8, \"num_layers\": 1, \"feed_forward_proj\": \"quick_gelu\"}", "unsupported feed_forward_proj" },
        { "config.json wrong model_type", "{\"model_type\": \"bert\", \"vocab_size\": 32, \"d_model\": 8, \"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 8, \"num_layers\": 1}", "model_type" },
        { "config.json 2 relative buckets (the encoder's half would have no exact bucket)", "{\"vocab_size\": 32, \"d_model\": 8, "
          "\"d_kv\": 4, \"num_heads\": 2, \"d_ff\": 8, \"num_layers\": 1, \"relative_attention_num_buckets\": 2}", "must be in [4, 4096]" },
        { "config.json not JSON", "{\"vocab_size\": 32,, }", "config.json" },
        { "config.json empty", "", "config.json" },
    };
    char path[600], err[1024];
    snprintf(path, sizeof(path), "%s/config.json", tmp);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_bytes(path, cases[i][1], strlen(cases[i][1]));
        T5Config c;
        err[0] = 0;
        int rc = t5_config_read(path, &c, err, sizeof(err));
        expect_error(cases[i][0], rc, err, cases[i][2]);
        if (rc == 0 || strstr(err, path) == NULL) { check_true("  ... and the message names the file", 0); }
    }
}

// an HF directory whose safetensors lacks a tensor, or has one with the wrong shape
static void test_bad_weights(const char* tmp) {
    char dir[600], path[700], err[1024];
    snprintf(dir, sizeof(dir), "%s/badmodel", tmp);
    T5Config c = tiny_config(1, ACT_RELU, 0);
    T5 m;
    t5_build_from_config(&m, &c);
    t5_init_random(&m, 1);
    if (t5_save_hf_dir(dir, &c, m.params_memory, err, sizeof(err))) { printf("%s\n", err); exit(EXIT_FAILURE); }
    float* p;
    T5Config got;
    // wrong shape: the config claims a wider d_ff than the weights have
    snprintf(path, sizeof(path), "%s/config.json", dir);
    T5Config wider = c; wider.d_ff = 16;
    t5_config_write(path, &wider, err, sizeof(err));
    int rc = t5_load_hf_dir(dir, &got, &p, err, sizeof(err));
    expect_error("safetensors tensor with the wrong shape", rc, err, "has shape");
    // missing tensor: the config claims a gated FFN (needs wi_0, wi_1)
    T5Config gated = c; gated.gated = 1; gated.act = ACT_GELU_TANH;
    t5_config_write(path, &gated, err, sizeof(err));
    rc = t5_load_hf_dir(dir, &got, &p, err, sizeof(err));
    expect_error("safetensors missing a tensor", rc, err, "missing tensor");
    // truncated weights file
    t5_config_write(path, &c, err, sizeof(err));
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if (truncate(path, 100) != 0) perror("truncate");
    rc = t5_load_hf_dir(dir, &got, &p, err, sizeof(err));
    expect_error("truncated model.safetensors", rc, err, "model.safetensors");
    unlink(path);
    rc = t5_load_hf_dir(dir, &got, &p, err, sizeof(err));
    expect_error("model directory without weights", rc, err, dir);
    t5_free(&m);
}

static void test_bad_checkpoint(const char* tmp) {
    char path[600], err[1024];
    snprintf(path, sizeof(path), "%s/bad.ckpt", tmp);
    T5Config c = tiny_config(0, ACT_GELU_TANH, 1);
    T5 m, r;
    t5_build_from_config(&m, &c);
    t5_init_random(&m, 2);
    t5_save_checkpoint(&m, path, NULL, err, sizeof(err));
    FILE* f = fopenCheck(path, "r+b");
    int64_t magic = 0x1234;
    fwrite(&magic, 8, 1, f); fclose(f);
    expect_error("checkpoint with the wrong magic", t5_build_from_checkpoint(&r, path, NULL, err, sizeof(err)), err, "bad magic");
    t5_save_checkpoint(&m, path, NULL, err, sizeof(err));
    f = fopenCheck(path, "r+b");
    int64_t hdr[2] = { CKPT_MAGIC, 99 };
    fwrite(hdr, 8, 2, f); fclose(f);
    expect_error("checkpoint with an unknown version", t5_build_from_checkpoint(&r, path, NULL, err, sizeof(err)), err, "version");
    t5_save_checkpoint(&m, path, NULL, err, sizeof(err));
    if (truncate(path, 512 + 40) != 0) perror("truncate");
    expect_error("truncated checkpoint", t5_build_from_checkpoint(&r, path, NULL, err, sizeof(err)), err, "file size");
    t5_save_checkpoint(&m, path, NULL, err, sizeof(err));
    f = fopenCheck(path, "r+b");
    fseek(f, 8 * 6, SEEK_SET); int64_t dm = 9; fwrite(&dm, 8, 1, f); fclose(f); // d_model 8 → 9
    expect_error("checkpoint whose config disagrees with its size", t5_build_from_checkpoint(&r, path, NULL, err, sizeof(err)), err, "parameter count");
    write_bytes(path, "short", 5);
    expect_error("checkpoint shorter than its header", t5_build_from_checkpoint(&r, path, NULL, err, sizeof(err)), err, "too short");
    t5_free(&m);
}

static void test_bad_examples(const char* tmp) {
    char path[600], err[1024];
    snprintf(path, sizeof(path), "%s/ex.bin", tmp);
    uint32_t s0[3] = { 5, 6, 1 }, t0[2] = { 7, 1 }, s1[2] = { 50, 1 }, t1[1] = { 1 };
    const uint32_t* src[2] = { s0, s1 };
    const uint32_t* tgt[2] = { t0, t1 };
    int32_t ls[2] = { 3, 2 }, lt[2] = { 2, 1 };
    ExampleFile e;
    int rc = examples_write(path, 2, src, ls, tgt, lt, err, sizeof(err)) || examples_open(&e, path, err, sizeof(err));
    check_true("example file write -> read", rc == 0 && e.n == 2 && examples_tgt(&e, 1)[0] == 1 && examples_src(&e, 1)[0] == 50);
    if (rc == 0) {
        expect_error("example token id outside the vocabulary", examples_check_vocab(&e, 32, path, err, sizeof(err)), err, "outside the model's vocabulary");
        examples_free(&e);
    }
    if (truncate(path, 256 + 16 + 12) != 0) perror("truncate");
    expect_error("truncated example file", examples_open(&e, path, err, sizeof(err)), err, "file size");
    examples_write(path, 2, src, ls, tgt, lt, err, sizeof(err));
    FILE* f = fopenCheck(path, "r+b");
    fseek(f, 256, SEEK_SET); int32_t zero = 0; fwrite(&zero, 4, 1, f); fclose(f);
    expect_error("example with length 0", examples_open(&e, path, err, sizeof(err)), err, "length");
    write_bytes(path, "not an example file at all, but long enough? no", 47);
    expect_error("example file too short / bad header", examples_open(&e, path, err, sizeof(err)), err, path);
    // a batch with an id outside the vocabulary is refused before any compute
    T5 m;
    T5Config c = tiny_config(0, ACT_GELU_TANH, 1);
    t5_build_from_config(&m, &c);
    T5Batch b = tiny_batch();
    int saved = b.src[2];
    b.src[2] = 20; // vocab is 20
    const char* bad = t5_check_batch(&m, &b);
    expect_error("batch token id outside the vocabulary", bad != NULL, bad ? bad : "", "outside the vocabulary");
    b.src[2] = saved;
    b.labels[3] = -5;
    bad = t5_check_batch(&m, &b);
    expect_error("batch label id negative (not -100)", bad != NULL, bad ? bad : "", "label id");
    b.labels[3] = 8;
    t5_free(&m);
}


// ----------------------------------------------------------------------------
// the train_t5 command line, run as a user runs it (parse_losses: dev/testing.h)

// HF dir in → train 4 steps with the fixture's optimizer settings → step losses match transformers + torch
// AdamW → export → the exported directory loads back with the trained parameters of a checkpoint
static void test_cli_fixture_run(const char* bin, const char* tmp, const char* fx) {
    static char out[1 << 16];
    char cmd[2048], path[600], err[1024];
    snprintf(cmd, sizeof(cmd), "%s --model %s/model --train-file %s/examples.bin --steps 4 --batch-size 3 --shuffle 0 --bucket 0 "
             "--lr 1e-2 --schedule linear --warmup 2 --schedule-steps 6 --weight-decay 0.01 --decay-norms 1 --clip 1 "
             "--dropout 0 --save-hf %s/new/dirs/cli_hf --save-checkpoint %s/new/ckpt/cli.ckpt", bin, fx, fx, tmp, tmp);
    int rc = run_cmd(cmd, out, sizeof(out));
    float got[8];
    int n = parse_losses(out, got, 8);
    snprintf(path, sizeof(path), "train_t5 on %s: exit 0 with 4 step lines", fx);
    check_true(path, rc == 0 && n == 4);
    if (rc != 0 || n != 4) { printf("%s\n", out); return; }
    Fixture f;
    snprintf(f.path, sizeof(f.path), "%s/fixture.safetensors", fx);
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("%s\n", err); exit(EXIT_FAILURE); }
    for (int k = 0; k < 4; k++) {
        char key[64], name[96];
        snprintf(key, sizeof(key), "step%d.loss", k);
        float* want = fx_f32(&f, key, NULL);
        snprintf(name, sizeof(name), "train_t5 CLI %s (6 decimals printed)", key);
        check_close(name, &got[k], want, 1, 1e-5f);
        free(want);
    }
    // the same run on the shape ladder: more padding, the same losses (padding is masked out exactly)
    snprintf(cmd, sizeof(cmd), "%s --model %s/model --train-file %s/examples.bin --steps 4 --batch-size 3 --shuffle 0 --bucket 0 "
             "--lr 1e-2 --schedule linear --warmup 2 --schedule-steps 6 --weight-decay 0.01 --decay-norms 1 --clip 1 "
             "--dropout 0 --shape-ladder 16,8", bin, fx, fx);
    rc = run_cmd(cmd, out, sizeof(out));
    float lad[8];
    n = parse_losses(out, lad, 8);
    snprintf(path, sizeof(path), "train_t5 --shape-ladder 16,8: exit 0, the table names the ladder");
    check_true(path, rc == 0 && n == 4 && strstr(out, "multiples of 16"));
    if (n == 4) check_close("train_t5 --shape-ladder 16,8: the 4 losses of dynamic padding", lad, got, 4, 1e-5f);
    st_close(&f.st);
    T5 a, b;
    snprintf(path, sizeof(path), "%s/new/dirs/cli_hf", tmp); // parent directories created on demand
    int ok = t5_build_from_hf(&a, path, err, sizeof(err)) == 0;
    snprintf(path, sizeof(path), "%s/new/ckpt/cli.ckpt", tmp);
    ok = ok && t5_build_from_checkpoint(&b, path, NULL, err, sizeof(err)) == 0;
    check_true("CLI --save-hf and --save-checkpoint hold the same trained parameters",
               ok && a.layout.total == b.layout.total && b.step == 4 && b.m_memory != NULL &&
               memcmp(a.params_memory, b.params_memory, a.layout.total * sizeof(float)) == 0);
    if (ok) { t5_free(&a); t5_free(&b); }
}

// a small random model learns the 3 fixture examples: the loss falls; then resumes from its checkpoint
static void test_cli_loss_falls(const char* bin, const char* tmp) {
    static char out[1 << 16];
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s --model flan-t5-small --vocab-size 128 --d-model 64 --num-heads 4 --d-kv 16 "
             "--d-ff 128 --num-layers 2 --train-file dev/fixtures/flan_gated/examples.bin --steps 40 --batch-size 3 "
             "--lr 3e-3 --warmup 5 --schedule cosine --dropout 0.1 --grad-accum 2 --save-checkpoint %s/small.ckpt", bin, tmp);
    int rc = run_cmd(cmd, out, sizeof(out));
    float l[64];
    int n = parse_losses(out, l, 64);
    printf("%-62s first %.4f last %.4f\n", "CLI random model: loss over 40 steps", n ? (double)l[0] : 0.0, n ? (double)l[n - 1] : 0.0);
    check_true("CLI training lowers the loss by more than half", rc == 0 && n == 40 && l[n - 1] < 0.5f * l[0]);
    snprintf(cmd, sizeof(cmd), "%s --model %s/small.ckpt --train-file dev/fixtures/flan_gated/examples.bin --steps 2 "
             "--batch-size 3 --lr 1e-4", bin, tmp);
    rc = run_cmd(cmd, out, sizeof(out));
    float r[4];
    int nr = parse_losses(out, r, 4);
    check_true("CLI continues from a native checkpoint with the loss it reached", rc == 0 && nr == 2 && n > 0 && r[0] < 0.6f * l[0]);
    // dimension flags that do not describe the checkpoint are refused, not ignored (d_model 32 vs its 64)
    snprintf(cmd, sizeof(cmd), "%s --model flan-t5-small --vocab-size 128 --d-model 32 --num-heads 4 --d-kv 16 --d-ff 128 "
             "--num-layers 2 --train-file dev/fixtures/flan_gated/examples.bin --steps 2 --out-dir %s/mismatch --resume %s/small.ckpt",
             bin, tmp, tmp);
    rc = run_cmd(cmd, out, sizeof(out));
    expect_error("CLI --resume with dimensions unlike the checkpoint's", rc > 0 && rc < 128, out, "holds a V=128 C=64 H=4");
}

// --beta1/--beta2/--adam-eps by one AdamW step from zero moments, read back from the checkpoint
// (no decay, no clipping, constant lr): m = (1−β1)·g, v = (1−β2)·g², θ1 = θ0 − lr·ĝ/(|ĝ| + eps) with
// ĝ = m/(1−β1). Float rounding of these few operations is a few ulp: 1e-5 relative, + 1e-6·lr on θ.
static void test_cli_adamw_flags(const char* bin, const char* tmp) {
    static char out[1 << 16];
    char cmd[2048], path[600], err[1024];
    const double b1 = 0.5, b2 = 0.9, eps = 0.01, lr = 1e-2;
    snprintf(cmd, sizeof(cmd), "%s --model dev/fixtures/flan_gated/model --train-file dev/fixtures/flan_gated/examples.bin "
             "--steps 1 --batch-size 3 --shuffle 0 --bucket 0 --lr %g --schedule constant --weight-decay 0 --clip 0 --dropout 0 "
             "--beta1 %g --beta2 %g --adam-eps %g --save-checkpoint %s/betas.ckpt", bin, lr, b1, b2, eps, tmp);
    int rc = run_cmd(cmd, out, sizeof(out));
    T5 a, b;
    snprintf(path, sizeof(path), "%s/betas.ckpt", tmp);
    int ok = rc == 0 && t5_build_from_hf(&a, "dev/fixtures/flan_gated/model", err, sizeof(err)) == 0;
    ok = ok && t5_build_from_checkpoint(&b, path, NULL, err, sizeof(err)) == 0 && b.m_memory != NULL;
    double worst_v = 0.0, worst_p = 0.0;
    size_t nonzero = 0;
    for (size_t i = 0; ok && i < b.layout.total; i++) {
        double g = b.m_memory[i] / (1.0 - b1), v = b.v_memory[i], p0 = a.params_memory[i], p1 = b.params_memory[i];
        double want_v = (1.0 - b2) * g * g, want_p = p0 - lr * g / (fabs(g) + eps);
        worst_v = fmax(worst_v, fabs(v - want_v) / (want_v + 1e-30));
        worst_p = fmax(worst_p, fabs(p1 - want_p) / (1e-5 * fabs(p0) + 1e-6 * lr));
        nonzero += g != 0.0;
    }
    printf("%-62s v rel %.1e, θ %.2f of tolerance, %zu gradients\n", "CLI --beta1 0.5 --beta2 0.9 --adam-eps 0.01: one step", worst_v,
           worst_p, nonzero);
    check_true("CLI --beta1/--beta2/--adam-eps reach AdamW", ok && nonzero > 1000 && worst_v < 1e-5 && worst_p <= 1.0);
    if (!ok) printf("%s\n%s\n", err, out);
    if (ok) { t5_free(&a); t5_free(&b); }
}

// the shape flags over a preset reach the exported config.json; truncation and the evaluation's batch
// flags show in the token counts; the bench flags in the bench line
static void test_cli_shape_and_batch_flags(const char* bin, const char* tmp) {
    static char out[1 << 16];
    char cmd[2048], path[600], err[1024];
    snprintf(cmd, sizeof(cmd), "%s --model flan-t5-small --vocab-size 64 --d-model 16 --num-heads 2 --d-kv 8 --d-ff 32 "
             "--num-layers 1 --num-decoder-layers 2 --num-buckets 8 --max-distance 20 --ffn gelu --tied 1 --save-hf %s/shape_hf", bin, tmp);
    int rc = run_cmd(cmd, out, sizeof(out));
    T5Config c;
    snprintf(path, sizeof(path), "%s/shape_hf/config.json", tmp);
    int ok = rc == 0 && t5_config_read(path, &c, err, sizeof(err)) == 0;
    check_true("CLI --num-decoder-layers --num-buckets --max-distance --ffn --tied reach config.json", ok && c.vocab_size == 64 &&
               c.d_model == 16 && c.num_layers == 1 && c.num_decoder_layers == 2 && c.num_buckets == 8 && c.max_distance == 20 &&
               c.act == ACT_GELU && !c.gated && c.tied == 1);
    // fixture examples: real tokens of the one step = Σ min(source, 4) + Σ min(target, 2) over all 3;
    // the evaluation (1 batch of 2) counts min(target, 2) of 2 examples only
    ExampleFile e;
    if (examples_open(&e, "dev/fixtures/flan_gated/examples.bin", err, sizeof(err))) { printf("%s\n", err); exit(EXIT_FAILURE); }
    long long want_train = 0, want_eval = 0;
    for (int64_t i = 0; i < e.n; i++) want_train += (e.lens[2 * i] < 4 ? e.lens[2 * i] : 4) + (e.lens[2 * i + 1] < 2 ? e.lens[2 * i + 1] : 2);
    for (int64_t i = 0; i < e.n; i++) want_eval += e.lens[2 * i + 1] < 2 ? e.lens[2 * i + 1] : 2;
    want_eval = want_eval * 2 / e.n; // every fixture target has ≥ 2 tokens, so each counts 2
    examples_free(&e);
    snprintf(cmd, sizeof(cmd), "%s --model dev/fixtures/flan_gated/model --train-file dev/fixtures/flan_gated/examples.bin "
             "--val-file dev/fixtures/flan_gated/examples.bin --steps 1 --batch-size 3 --max-src-len 4 --max-tgt-len 2 "
             "--eval-batches 1 --eval-batch-size 2 --dropout 0 --out-dir %s/flags_run", bin, tmp);
    rc = run_cmd(cmd, out, sizeof(out));
    char* log = NULL;
    snprintf(path, sizeof(path), "%s/flags_run/metrics.jsonl", tmp);
    FILE* f = fopen(path, "rb");
    size_t cap = 0;
    long long got_train = -1;
    while (f && getline(&log, &cap, f) > 0) {
        const char* t = strstr(log, "\"type\": \"train\"") ? strstr(log, "\"tokens\": ") : NULL;
        if (t) got_train = strtoll(t + 10, NULL, 10);
    }
    if (f) fclose(f);
    free(log);
    const char* q = strstr(out, "eval step 1 | val loss ");  // "eval step 1 | val loss <x> | <n> target tokens"
    q = q ? strstr(q + 23, "| ") : NULL;
    long long got_eval = q ? strtoll(q + 2, NULL, 10) : -1;
    printf("%-62s train tokens %lld (want %lld), eval target tokens %lld (want %lld)\n", "CLI truncation and evaluation batches",
           got_train, want_train, got_eval, want_eval);
    check_true("CLI --max-src-len/--max-tgt-len truncate, --eval-batches/--eval-batch-size bound the evaluation",
               rc == 0 && got_train == want_train && got_eval == want_eval);
    snprintf(cmd, sizeof(cmd), "%s --model flan-t5-small --vocab-size 64 --d-model 16 --num-heads 2 --d-kv 8 --d-ff 32 "
             "--num-layers 1 --bench 1 --batch-size 2 --bench-src-len 5 --bench-tgt-len 3", bin);
    rc = run_cmd(cmd, out, sizeof(out));
    check_true("CLI --bench-src-len 5 --bench-tgt-len 3, batch 2: 16 tokens a step", rc == 0 && strstr(out, "tokens=16 ") != NULL);
}

// bad flags and inputs: a clear message and a non-zero exit, never a crash
static void test_cli_errors(const char* bin) {
    static char out[1 << 16];
    struct { const char* args; const char* want; } cases[] = {
        { "--model /nonexistent/dir --save-hf x", "not a directory, a file, or a preset" },
        { "--model flan-t5-small --lr abc --bench 1", "--lr needs a number" },
        { "--model flan-t5-small --batch-size 0 --bench 1", "--batch-size needs an integer" },
        { "--model flan-t5-small --schedule sometimes --bench 1", "--schedule must be" },
        { "--model flan-t5-small --steps", "needs a value" },
        { "--model flan-t5-small --frobnicate 1", "unknown option" },
        { "--model flan-t5-small --num-heads 4 --d-kv 16 --d-model 32 --d-ff 32 --num-layers 1 --vocab-size 64 "
          "--train-file dev/fixtures/flan_gated/examples.bin --steps 1", "outside the model's vocabulary" },
        { "--model flan-t5-small --d-model 32 --train-file /nonexistent.bin --steps 1", "/nonexistent.bin" },
        { "--model dev/fixtures/flan_gated/fixture.safetensors --train-file dev/fixtures/flan_gated/examples.bin --steps 1", "bad magic" },
        { "--model dev/fixtures/flan_gated/model", "nothing to do" },
        { "--model dev/fixtures/flan_gated/model --d-model 16 --save-hf x", "neither --model nor --baseline-model is one" },
        { "--model flan-t5-small --shape-ladder 64 --bench 1", "--shape-ladder must be S,T" },
        { "--model flan-t5-small --shape-ladder 64,-1 --bench 1", "--shape-ladder must be S,T" },
        { "--model dev/fixtures/flan_gated/model --save-hf x --save-hf-dtype fp16", "--save-hf-dtype must be fp32 or bf16" },
        { "--model dev/fixtures/flan_gated/model --save-hf x --max-shard-size 5XB", "--max-shard-size must be a size" },
        { "--model dev/fixtures/flan_gated/model --compare-lora-adapter x --save-hf y", "--compare-lora-adapter needs --compare-model" },
        { "--model dev/fixtures/flan_gated/model --compare-model x --save-hf y", "--compare-model needs --eval-split" },
        { "--model dev/fixtures/flan_gated/model --compare-model nosuch --eval-split dev/fixtures/none", "--compare-model nosuch is not" },
        { "--model dev/fixtures/flan_gated/model --save-hf x --repetition-penalty 0", "--repetition-penalty must be > 0" },
        { "--model dev/fixtures/flan_gated/model --save-hf x --repetition-penalty -1.2", "--repetition-penalty needs a number" },
        { "--model dev/fixtures/flan_gated/model --save-hf x --min-new-tokens -1", "--min-new-tokens needs an integer" },
        { "--model dev/fixtures/flan_gated/model --save-hf x --max-new-tokens 20 --min-new-tokens 21",
          "--min-new-tokens 21 exceeds --max-new-tokens 20" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[2048], name[120];
        snprintf(cmd, sizeof(cmd), "%s %s", bin, cases[i].args);
        int rc = run_cmd(cmd, out, sizeof(out));
        snprintf(name, sizeof(name), "CLI refuses: %.90s", cases[i].args);
        expect_error(name, rc == 0 ? 0 : (rc > 0 && rc < 128 ? 1 : 0), out, cases[i].want);
    }
}

// ----------------------------------------------------------------------------
// generation: t5_generate against transformers' generate() (dev/make_gen_fixtures.py), the cached
// decoder against the full forward pass, and bad requests

// a number from the generation fixture's metadata (doubles: length_penalty must not round through float)
static double gen_meta(Fixture* f, const char* key) {
    const char* v = st_metadata(&f->st, key);
    if (!v) { printf("fixture %s lacks metadata %s\n", f->path, key); exit(EXIT_FAILURE); }
    return strtod(v, NULL);
}

// a fixture batch as t5_generate takes it: row pointers into ids (B, Ts) and lengths from the prefix mask
typedef struct { int B, Ts; int* ids; int* len; const int** src; } GenInputs;

static GenInputs gen_inputs(Fixture* f, int k) {
    GenInputs in;
    char key[64];
    int r, c;
    snprintf(key, sizeof(key), "case%d.input_ids", k);
    in.ids = fx_i32(f, key, &in.B, &in.Ts);
    snprintf(key, sizeof(key), "case%d.attention_mask", k);
    int* mask = fx_i32(f, key, &r, &c);
    in.len = (int*)mallocCheck((size_t)in.B * sizeof(int));
    in.src = (const int**)mallocCheck((size_t)in.B * sizeof(int*));
    for (int b = 0; b < in.B; b++) {
        in.len[b] = 0;
        while (in.len[b] < in.Ts && mask[b * in.Ts + in.len[b]]) in.len[b]++;
        in.src[b] = in.ids + (size_t)b * in.Ts;
    }
    free(mask);
    return in;
}

static void gen_inputs_free(GenInputs* in) { free(in->ids); free(in->len); free(in->src); }

static GenConfig gen_case_config(Fixture* f, int k) {
    char key[64];
    GenConfig g = gen_config_default();
    g.max_new_tokens = (int)gen_meta(f, "max_new_tokens");
    snprintf(key, sizeof(key), "case%d.num_beams", k); g.num_beams = (int)gen_meta(f, key);
    snprintf(key, sizeof(key), "case%d.length_penalty", k); g.length_penalty = gen_meta(f, key);
    snprintf(key, sizeof(key), "case%d.no_repeat_ngram_size", k); g.no_repeat_ngram_size = (int)gen_meta(f, key);
    snprintf(key, sizeof(key), "case%d.early_stopping", k); g.early_stopping = (int)gen_meta(f, key);
    snprintf(key, sizeof(key), "case%d.eos_bias", k); g.eos_bias = (float)gen_meta(f, key);
    snprintf(key, sizeof(key), "case%d.min_new_tokens", k); g.min_new_tokens = (int)gen_meta(f, key);
    snprintf(key, sizeof(key), "case%d.repetition_penalty", k); g.repetition_penalty = (float)gen_meta(f, key);
    return g;
}

// what generate() returns for these summaries: (B, 1 + longest) with the start token first, then the
// fill value: pad_id after greedy search, eos after beam search (HF's `pad_token_id or eos_token_id`)
static int* gen_hf_layout(const T5Config* c, const GenConfig* g, const int* out, const int* len, int B, int* width) {
    int W = 0;
    for (int b = 0; b < B; b++) if (len[b] > W) W = len[b];
    *width = ++W;
    int* hf = (int*)mallocCheck((size_t)B * W * sizeof(int));
    int fill = g->num_beams == 1 ? c->pad_id : c->eos_id;
    for (int b = 0; b < B; b++) {
        hf[(size_t)b * W] = c->decoder_start_id;
        for (int j = 1; j < W; j++) hf[(size_t)b * W + j] = j <= len[b] ? out[(size_t)b * g->max_new_tokens + j - 1] : fill;
    }
    return hf;
}

// one fixture case: t5_generate must return generate()'s sequences token for token
static void test_generate_case(Fixture* f, T5* m, const char* model, int k, int** out_keep, int** len_keep) {
    char key[64], name[200], err[1024];
    GenInputs in = gen_inputs(f, k);
    GenConfig g = gen_case_config(f, k);
    int* out = (int*)mallocCheck((size_t)in.B * g.max_new_tokens * sizeof(int));
    int* len = (int*)mallocCheck((size_t)in.B * sizeof(int));
    int rc = t5_generate(m, in.src, in.len, in.B, &g, out, len, err, sizeof(err));
    if (rc) printf("  %s\n", err);
    int rows, W, width = 0;
    snprintf(key, sizeof(key), "case%d.sequences", k);
    int* want = fx_i32(f, key, &rows, &W);
    int* got = rc ? NULL : gen_hf_layout(&m->config, &g, out, len, in.B, &width);
    int diff = rows != in.B || width != W ? -1 : 0;
    for (int i = 0; got && diff >= 0 && i < rows * W; i++) diff += got[i] != want[i];
    char lens[64] = "", *p = lens;
    for (int b = 0; b < in.B && !rc; b++) p += snprintf(p, lens + sizeof(lens) - p, "%s%d", b ? "," : "", len[b]);
    snprintf(key, sizeof(key), "case%d.name", k);
    snprintf(name, sizeof(name), "generate %s %s (lengths %s)", model, st_metadata(&f->st, key), lens);
    printf("%-62s width %d vs HF %d, %d tokens differ  %s\n", name, width, W, diff < 0 ? rows * W : diff,
           rc == 0 && diff == 0 ? "OK" : "FAIL");
    verdict(rc == 0 && diff == 0, name);
    if (diff != 0 && got) {
        for (int b = 0; b < in.B; b++) {
            printf("    C :"); for (int j = 0; j < width; j++) printf(" %d", got[b * width + j]);
            printf("\n    HF:"); for (int j = 0; j < W; j++) printf(" %d", want[b * W + j]);
            printf("\n");
        }
    }
    free(want); free(got); gen_inputs_free(&in);
    if (out_keep) { *out_keep = out; *len_keep = len; } else { free(out); free(len); }
}

// full-pass logits (B, Tt, V) of t5_forward for decoder inputs dec (B, Tt) on sources src
static float* gen_full_logits(T5* m, const int* const* src, const int* src_len, int B, const int* dec, int Tt) {
    int Ts = 1, V = m->config.vocab_size;
    for (int b = 0; b < B; b++) if (src_len[b] > Ts) Ts = src_len[b];
    int* ids = (int*)mallocCheck((size_t)B * Ts * sizeof(int));
    int* labels = (int*)mallocCheck((size_t)B * Tt * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Ts; j++) ids[b * Ts + j] = j < src_len[b] ? src[b][j] : m->config.pad_id;
    for (int i = 0; i < B * Tt; i++) labels[i] = m->config.eos_id;
    T5Batch batch = { .B = B, .Ts = Ts, .Tt = Tt, .src = ids, .src_len = (int*)src_len, .dec_in = (int*)dec, .labels = labels };
    t5_forward(m, &batch, 0, 0);
    float* logits = (float*)mallocCheck((size_t)B * Tt * V * sizeof(float));
    memcpy(logits, m->acts.logits, (size_t)B * Tt * V * sizeof(float));
    free(ids); free(labels);
    return logits;
}

// The cached decoder, one position per step, against the full (non-cached) t5_forward on the same
// decoder inputs: logits at every position. Rows are nb beams per input; after step `reorder_at` the
// rows take over the caches of parent[] (as beam search does), and the reference is the full pass on
// the sequences that result. Tolerance 1e-5 relative to the largest logit: both are fp32 and compute
// the same sums in different orders (dot-product loops vs GEMM tiles), ~1e-7 relative apart — the
// headroom of the fixture logits check.
static void test_generate_cache(T5* m, const char* label, const int* const* src, const int* src_len, int B, int nb,
                                const int* tokens, int T, const int* parent, int reorder_at) {
    const T5Config* c = &m->config;
    int R = B * nb, V = c->vocab_size;
    int* dec = (int*)mallocCheck((size_t)R * T * sizeof(int));  // what each row's decoder has seen, as rows
    const int** row_src = (const int**)mallocCheck((size_t)R * sizeof(int*));
    int* row_len = (int*)mallocCheck((size_t)R * sizeof(int));
    int* step = (int*)callocCheck((size_t)R, sizeof(int));       // zeroed: GCC cannot see the loop below fill it
    float* cached = (float*)mallocCheck((size_t)R * T * V * sizeof(float));
    int Ts = 1;
    for (int b = 0; b < B; b++) if (src_len[b] > Ts) Ts = src_len[b];
    GenCache g;
    gen_cache_build(&g, c, B, nb, Ts, T);
    gen_encode(m, &g, src, src_len);
    memcpy(dec, tokens, (size_t)R * T * sizeof(int));
    for (int t = 0; t < T; t++) {
        if (t == reorder_at) { // row r now continues row parent[r]: its first t inputs and logits are parent[r]'s
            gen_cache_reorder(&g, c, parent, t);
            int* old = (int*)mallocCheck((size_t)R * T * sizeof(int));
            float* old_logits = (float*)mallocCheck((size_t)R * T * V * sizeof(float));
            memcpy(old, dec, (size_t)R * T * sizeof(int));
            memcpy(old_logits, cached, (size_t)R * T * V * sizeof(float));
            for (int r = 0; r < R; r++) {
                memcpy(dec + (size_t)r * T, old + (size_t)parent[r] * T, (size_t)t * sizeof(int));
                memcpy(cached + (size_t)r * T * V, old_logits + (size_t)parent[r] * T * V, (size_t)t * V * sizeof(float));
            }
            free(old); free(old_logits);
        }
        for (int r = 0; r < R; r++) step[r] = dec[(size_t)r * T + t];
        gen_decode_step(m, &g, step, t);
        for (int r = 0; r < R; r++) memcpy(cached + ((size_t)r * T + t) * V, g.logits + (size_t)r * V, (size_t)V * sizeof(float));
    }
    gen_cache_free(&g);
    for (int r = 0; r < R; r++) { row_src[r] = src[r / nb]; row_len[r] = src_len[r / nb]; }
    float* full = gen_full_logits(m, row_src, row_len, R, dec, T);
    char name[160];
    snprintf(name, sizeof(name), "cached decoder == full t5_forward: %s", label);
    check_close(name, cached, full, (size_t)R * T * V, 1e-5f);
    free(dec); free(row_src); free(row_len); free(step); free(cached); free(full);
}

// the decoding step's Linear (few rows, W read in place) against the engine's GEMM, on shapes that
// leave partial row groups and an odd last weight row. Tolerance 1e-6 relative: sums of 37 products
// in two orders, a few ulp apart.
static void test_matmul_rows(void) {
    int R = 5, IC = 37, OC = 13;
    float *x = (float*)mallocCheck((size_t)R * IC * sizeof(float)), *w = (float*)mallocCheck((size_t)OC * IC * sizeof(float));
    float *got = (float*)mallocCheck((size_t)R * OC * sizeof(float)), *want = (float*)mallocCheck((size_t)R * OC * sizeof(float));
    Rng rng;
    rng_init(&rng, 3);
    for (int i = 0; i < R * IC; i++) x[i] = rng_normal(&rng);
    for (int i = 0; i < OC * IC; i++) w[i] = rng_normal(&rng);
    GemmWorkspace ws = {0};
    matmul_forward(&ws, want, x, w, R, IC, OC);
    matmul_rows_forward(got, x, w, R, IC, OC);
    check_close("matmul_rows_forward == matmul_forward (5 x 37 -> 13)", got, want, (size_t)R * OC, 1e-6f);
    gemm_workspace_free(&ws);
    free(x); free(w); free(got); free(want);
}

// t5_expf / t5_tanhf (llmc/vmath.h) against double-precision exp / tanh: a sweep of 4M points over
// [−100, 100], 200k points in (0, 0.2] for tanh's small-argument series, and the special values.
// Tolerances: exp 2 ulp of the exact result (a degree-7 polynomial after exact range reduction:
// 0.91 ulp measured with fused multiply-adds, 1.2 without, -march without FMA), tanh 8·2^-24
// relative (1 − 2/(e+1) near |x| = 1/4, where the series hands over, cancels about 2 bits).
static void test_vmath(void) {
    double worst_exp = 0.0, worst_tanh = 0.0;
    int n = 4000001;
    for (int i = 0; i < n; i++) {
        float x = -100.0f + 200.0f * (float)i / (float)(n - 1);
        double e = exp((double)x);
        if (e >= 1.1754944e-38 && e <= 3.4028234e38) {
            float ef = (float)e;
            double ulp = fabs((double)nextafterf(ef, INFINITY) - ef);
            double u = fabs(t5_expf(x) - e) / ulp;
            if (u > worst_exp) worst_exp = u;
        }
        double t = tanh((double)x), r = fabs(t5_tanhf(x) - t) / (fabs(t) > 0 ? fabs(t) : 1.0);
        if (r > worst_tanh) worst_tanh = r;
    }
    for (int i = 1; i <= 200000; i++) {
        float x = (float)i * 1e-6f;
        double t = tanh((double)x), r = fabs(t5_tanhf(x) - t) / t;
        if (r > worst_tanh) worst_tanh = r;
    }
    printf("t5_expf worst %.2f ulp, t5_tanhf worst %.2f x 2^-24 relative\n", worst_exp, worst_tanh * 16777216.0);
    check_true("t5_expf within 2 ulp of exp on [-100, 100]", worst_exp <= 2.0);
    check_true("t5_tanhf within 8*2^-24 of tanh on [-100, 100]", worst_tanh <= 8.0 / 16777216.0);
    float nan = NAN;
    check_true("t5_expf: e^0 = 1, e^-inf = 0, e^inf = inf, e^-90 = 0, e^89 = inf, NaN stays",
               t5_expf(0.0f) == 1.0f && t5_expf(-INFINITY) == 0.0f && t5_expf(INFINITY) == INFINITY &&
               t5_expf(-90.0f) == 0.0f && t5_expf(89.0f) == INFINITY && isnan(t5_expf(nan)));
    check_true("t5_tanhf: tanh(+-0) = +-0, tanh(+-inf) = +-1, tanh(+-30) = +-1, NaN stays",
               t5_tanhf(0.0f) == 0.0f && signbit(t5_tanhf(-0.0f)) && t5_tanhf(INFINITY) == 1.0f &&
               t5_tanhf(-INFINITY) == -1.0f && t5_tanhf(30.0f) == 1.0f && t5_tanhf(-30.0f) == -1.0f &&
               isnan(t5_tanhf(nan)));
}

// gemm against a double-precision product, for every transposition, edge tiles (M, N, K not
// multiples of the register tile or the KC slice; N over one NC column block), leading dimensions
// wider than the matrix (the attention's head views), accumulate = 0 and 1; and the same calls
// inside a parallel region on per-thread workspaces (as the attention runs them), which must give
// the same bits.
// Tolerance per entry: 4·K·2^-24 of Σ_k |a_k b_k|, a bound any fp32 summation order meets.
static void test_gemm(void) {
    static const int Ms[] = {1, 7, 13, 37}, Ns[] = {1, 17, 70, 1100}, Ks[] = {1, 64, 257, 600};
    GemmWorkspace ws = {0};
    Rng rng;
    rng_init(&rng, 11);
    int bad = 0, cases = 0, differ = 0;
    double worst = 0.0;
    for (int ta = 0; ta < 2; ta++) for (int tb = 0; tb < 2; tb++)
    for (int mi = 0; mi < 4; mi++) for (int ni = 0; ni < 4; ni++) for (int ki = 0; ki < 4; ki++) {
        int M = Ms[mi], N = Ns[ni], K = Ks[ki], acc = (mi + ni + ki) % 2;
        size_t lda = (size_t)(ta ? M : K) + 3, ldb = (size_t)(tb ? K : N) + 5, ldc = (size_t)N + 2;
        size_t na = (ta ? (size_t)K : (size_t)M) * lda, nb = (tb ? (size_t)N : (size_t)K) * ldb, nc = (size_t)M * ldc;
        float *A = (float*)mallocCheck(na * sizeof(float)), *B = (float*)mallocCheck(nb * sizeof(float));
        float *C = (float*)mallocCheck(nc * sizeof(float)), *C2 = (float*)mallocCheck(nc * sizeof(float));
        for (size_t i = 0; i < na; i++) A[i] = rng_normal(&rng);
        for (size_t i = 0; i < nb; i++) B[i] = rng_normal(&rng);
        for (size_t i = 0; i < nc; i++) C[i] = C2[i] = rng_normal(&rng);
        float* C0 = (float*)mallocCheck(nc * sizeof(float));
        memcpy(C0, C, nc * sizeof(float));
        gemm(&ws, M, N, K, A, lda, ta, B, ldb, tb, C, ldc, acc);
        size_t floats = gemm_workspace_floats(M, N);
        float* base = gemm_workspace_get(&ws, floats * 2); // the team below has 2 threads, whatever OMP_NUM_THREADS says
        #pragma omp parallel num_threads(2)
        {
            GemmWorkspace own = gemm_thread_workspace(base, floats);
            #pragma omp single
            gemm(&own, M, N, K, A, lda, ta, B, ldb, tb, C2, ldc, acc);
        }
        for (int r = 0; r < M; r++)
            for (int c = 0; c < N; c++) {
                double exact = acc ? C0[(size_t)r * ldc + c] : 0.0, mag = fabs(exact);
                for (int k = 0; k < K; k++) {
                    double a = ta ? A[(size_t)k * lda + r] : A[(size_t)r * lda + k];
                    double b = tb ? B[(size_t)c * ldb + k] : B[(size_t)k * ldb + c];
                    exact += a * b;
                    mag += fabs(a * b);
                }
                double e = fabs(C[(size_t)r * ldc + c] - exact) / (mag > 0 ? mag : 1.0);
                if (e > worst) worst = e;
                if (e > 4.0 * (K + 1) / 16777216.0) bad++;
                if (C[(size_t)r * ldc + c] != C2[(size_t)r * ldc + c]) differ++;
            }
        for (int r = 0; r < M; r++) // the padding columns of C are never written
            for (size_t c = (size_t)N; c < ldc; c++)
                if (C[(size_t)r * ldc + c] != C0[(size_t)r * ldc + c]) bad++;
        cases++;
        free(A); free(B); free(C); free(C2); free(C0);
    }
    gemm_workspace_free(&ws);
    printf("gemm vs double products: %d cases, worst %.2e of sum |ab|\n", cases, worst);
    check_true("gemm: every transposition and edge tile within 4K*2^-24", bad == 0);
    check_true("gemm inside a parallel region == gemm on all threads (bit-identical)", differ == 0);
}

// bad requests are refused with a message, before any compute
static void test_generate_errors(void) {
    T5 model;
    T5Config c = tiny_config(0, ACT_GELU_TANH, 1);
    t5_build_from_config(&model, &c);
    T5* m = &model;
    char err[1024];
    int ids[3] = { 5, 6, 1 }, bad_ids[3] = { 5, 4000, 1 }, len = 3, zero = 0, out[8], out_len[1];
    const int* src[1] = { ids };
    const int* bad_src[1] = { bad_ids };
    GenConfig g = gen_config_default();
    g.max_new_tokens = 8;
    expect_error("generate refuses a token id outside the vocabulary",
                 t5_generate(m, bad_src, &len, 1, &g, out, out_len, err, sizeof(err)), err, "outside the vocabulary");
    expect_error("generate refuses an empty input", t5_generate(m, src, &zero, 1, &g, out, out_len, err, sizeof(err)),
                 err, "length 0");
    GenConfig b = g; b.num_beams = 0;
    expect_error("generate refuses num_beams = 0", t5_generate(m, src, &len, 1, &b, out, out_len, err, sizeof(err)),
                 err, "num_beams");
    b = g; b.max_new_tokens = 0;
    expect_error("generate refuses max_new_tokens = 0", t5_generate(m, src, &len, 1, &b, out, out_len, err, sizeof(err)),
                 err, "max_new_tokens");
    b = g; b.no_repeat_ngram_size = -1;
    expect_error("generate refuses no_repeat_ngram_size < 0", t5_generate(m, src, &len, 1, &b, out, out_len, err, sizeof(err)),
                 err, "no_repeat_ngram_size");
    b = g; b.min_new_tokens = -1;
    expect_error("generate refuses min_new_tokens < 0", t5_generate(m, src, &len, 1, &b, out, out_len, err, sizeof(err)),
                 err, "min_new_tokens");
    float bad_penalty[3] = { 0.0f, -1.3f, NAN };
    for (int i = 0; i < 3; i++) { // HF: "`penalty` has to be a strictly positive float"
        char name[96];
        snprintf(name, sizeof(name), "generate refuses repetition_penalty = %g", (double)bad_penalty[i]);
        b = g; b.repetition_penalty = bad_penalty[i];
        expect_error(name, t5_generate(m, src, &len, 1, &b, out, out_len, err, sizeof(err)), err, "repetition_penalty");
    }
    // min_new_tokens above max_new_tokens: HF warns and bans eos at every step, as min = max does
    int out_min[8], len_min[1], out_over[8], len_over[1];
    b = g; b.eos_bias = 1e4f; b.min_new_tokens = 8;
    int rc = t5_generate(m, src, &len, 1, &b, out_min, len_min, err, sizeof(err));
    b.min_new_tokens = 9;
    rc |= t5_generate(m, src, &len, 1, &b, out_over, len_over, err, sizeof(err));
    check_true("generate: min_new_tokens > max_new_tokens is min = max (eos, favoured by 1e4, banned to the end)",
               rc == 0 && len_min[0] == 8 && len_over[0] == 8 && memcmp(out_min, out_over, sizeof(out_min)) == 0);
    t5_free(m);
}

static void test_generation_fixture(const char* model) {
    char path[600], err[1024];
    Fixture f;
    snprintf(f.path, sizeof(f.path), "dev/fixtures/gen/%s.safetensors", model);
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("error: %s (run `make fixtures`)\n", err); exit(EXIT_FAILURE); }
    snprintf(path, sizeof(path), "%s", st_metadata(&f.st, "model_dir") ? st_metadata(&f.st, "model_dir") : "?");
    T5 m;
    if (t5_build_from_hf(&m, path, err, sizeof(err))) { printf("error: %s\n", err); exit(EXIT_FAILURE); }
    int cases = (int)gen_meta(&f, "cases");
    int *out = NULL, *len = NULL;
    for (int k = 0; k < cases; k++) test_generate_case(&f, &m, model, k, k == 0 ? &out : NULL, k == 0 ? &len : NULL);
    // the cache on case 0's greedy summaries (4 inputs of different lengths): decoder inputs = start + tokens
    GenInputs in = gen_inputs(&f, 0);
    int T = (int)gen_meta(&f, "max_new_tokens");
    int* dec = (int*)mallocCheck((size_t)in.B * T * sizeof(int));
    for (int b = 0; b < in.B; b++)
        for (int t = 0; t < T; t++) dec[b * T + t] = t == 0 ? m.config.decoder_start_id : out[b * T + t - 1];
    test_generate_cache(&m, "greedy summaries, 4 inputs x 20 positions", in.src, in.len, in.B, 1, dec, T, NULL, -1);
    // beams: 2 inputs x 2 beams; after 3 positions the rows take over other rows' caches (within an input)
    int parent[4] = { 1, 1, 3, 2 };
    int beam_dec[4 * 6];
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < 6; t++) beam_dec[r * 6 + t] = t == 0 ? m.config.decoder_start_id : 2 + (r * 31 + t * 17) % (m.config.vocab_size - 2);
    test_generate_cache(&m, "2 inputs x 2 beams, rows reordered at t=3", in.src + 1, in.len + 1, 2, 2, beam_dec, 6, parent, 3);
    free(dec); free(out); free(len); gen_inputs_free(&in);
    t5_free(&m);
    st_close(&f.st);
}

static void test_generation(void) {
    printf("\n=== generation vs transformers generate()\n");
    const char* models[] = { "flan_gated", "t5_relu_tied", "odd_shapes" };
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) test_generation_fixture(models[i]);
    test_matmul_rows();
    test_generate_errors();
}

// generated ids → summary text: T5's embedding rows past the tokenizer's 32,100 tokens are not tokens
// and are dropped, like </s> and <pad> (needs the real spiece.model; CI has ../shared/data)
static void test_decode_summary(const char* spm_path) {
    SpmModel tok;
    char err[1024];
    if (spm_load(&tok, spm_path, err, sizeof(err))) { check_true("decode_summary: load the T5 tokenizer", 0); printf("%s\n", err); return; }
    int ids[] = { 0, 8774, 32103, 296, 32127, 1, 0 };
    char* s = decode_summary(&tok, ids, 7, err, sizeof(err));
    printf("%-62s '%s'\n", "decode_summary [pad Hello 32103 world 32127 </s> pad]", s ? s : err);
    check_true("decode_summary drops special ids and ids past the tokenizer", s && strcmp(s, "Hello world") == 0);
    free(s);
    spm_free(&tok);
}

// the trivial baselines' rule (llmc/evalset.h trivial_summary) on the cases DialogSum holds and a few it
// does not: blank and whitespace-only lines, "\r\n", a tag without a space or without text after it, a
// line without a tag, ties in length, fewer utterances than asked for, an empty dialogue. The same rule
// in Python (dev/trivial_baselines.py) is compared with the C on real DialogSum by dev/test_pipeline.py.
static void test_trivial_baselines(void) {
    const char* cases[][3] = { // dialogue, LEAD-2, LONGEST-3
        { "#Person1#: Hi there.\n#Person2#: Hello, how are you today?\n#Person1#: Fine.\n#Person2#: Good to hear that, really.",
          "#Person1# Hi there. #Person2# Hello, how are you today?",
          "#Person1# Hi there. #Person2# Hello, how are you today? #Person2# Good to hear that, really." },
        { "\n  #Person1#:Okay. Andrew.\r\n\t\n#Person2#:\n#Person1#:   a b c d\n", // no space, empty text, blank lines
          "#Person1# Okay. Andrew. #Person2#", "#Person1# Okay. Andrew. #Person2# #Person1# a b c d" },
        { "no tag here at all\n#P#: one two\n# not a tag: x\n#Person3#: w", // ties (3 words each): the earlier wins
          "no tag here at all #P# one two", "no tag here at all #P# one two # not a tag: x" },
        { "#Person1#: only one", "#Person1# only one", "#Person1# only one" },
        { " \n\n \t", "", "" },
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (int k = 0; k < TRIVIAL_NUM; k++) {
            char* got = trivial_summary(cases[i][0], (TrivialKind)k);
            if (strcmp(got, cases[i][1 + k]) != 0) { printf("  case %zu %s: '%s', want '%s'\n", i, k ? "LONGEST-3" : "LEAD-2", got, cases[i][1 + k]); ok = 0; }
            free(got);
        }
    check_true("LEAD-2 / LONGEST-3 on 5 hand-written dialogues (tags, blank lines, ties, short ones)", ok);
}

// ----------------------------------------------------------------------------
// LoRA without fixtures: dropout, finite differences, bad adapters

// LoRA on a tiny model with dropout 0.1 at T5's sites and on the adapters' inputs: central differences
// of the loss against the A and B gradients (the 3 largest entries of every A and B tensor; the same
// error budget as test_finite_differences), and the masks' determinism (same seed: same loss and
// gradients; another seed: another loss)
static void test_lora_finite_differences(int gated) {
    T5 m;
    T5Config c = tiny_config(0, gated ? ACT_GELU_TANH : ACT_RELU, gated);
    t5_build_from_config(&m, &c);
    t5_init_random(&m, 21);
    LoraConfig lc = { 2, 2.0f, 0.1f, (1u << LORA_NUM_TARGETS) - 1 - (gated ? 1u << LORA_WI : (1u << LORA_WI_0 | 1u << LORA_WI_1)), 0 };
    t5_lora_attach(&m, &lc, NULL, 3);
    Rng rng; rng_init(&rng, 8); // B = 0 at init would leave dA = 0: random B exercises every gradient
    for (size_t j = 0; j < m.lora_layout.total; j++) m.lora_memory[j] = 0.2f * rng_normal(&rng);
    T5Batch b = tiny_batch();
    float l1 = loss_at(&m, &b);
    t5_zero_grad(&m);
    t5_backward(&m, &b, 1, 1.0f / (float)m.num_counted);
    float* g1 = (float*)mallocCheck(m.lora_layout.total * sizeof(float));
    memcpy(g1, m.lora_grads, m.lora_layout.total * sizeof(float));
    float l2 = loss_at(&m, &b);
    t5_zero_grad(&m);
    t5_backward(&m, &b, 1, 1.0f / (float)m.num_counted);
    float l3 = t5_forward(&m, &b, 1, 100);
    check_true(gated ? "lora dropout: same seed, same loss and gradients (gated)" : "lora dropout: same seed, same loss and gradients (relu)",
               l1 == l2 && memcmp(g1, m.lora_grads, m.lora_layout.total * sizeof(float)) == 0 && l3 != l1);
    const float h = 1e-2f;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++)
        for (int ab = 0; ab < 2 && m.lora_layout.t[i].on; ab++) {
            const LoraTensor* t = &m.lora_layout.t[i];
            size_t off = ab ? t->b : t->a, n = (size_t)t->layers * m.lora_layout.r * (ab ? t->out : t->in);
            char name[200];
            snprintf(name, sizeof(name), "lora finite differences %s: %s %c", gated ? "gated" : "relu", m.layout.t[i].name, ab ? 'B' : 'A');
            check_finite_differences(&m, &b, m.lora_memory + off, g1 + off, n, h, name);
        }
    free(g1);
    t5_free(&m);
}

// a fixture adapter with its adapter_config.json replaced by `config`
static void write_adapter(const char* dir, const char* from, const char* config) {
    char cmd[1600], path[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp '%s/adapter_model.safetensors' '%s/'", dir, from, dir);
    if (system(cmd) != 0) { printf("cannot run: %s\n", cmd); exit(EXIT_FAILURE); }
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    write_bytes(path, config, strlen(config));
}

// target_modules written the other ways peft reads them select the same modules as the fixture's list
// (q, k, v, o, wi_0, wi_1, wo; peft's own choice checked by hand with peft 0.21, by dev/sweep_peft.py with 0.22: a string is re.fullmatch'ed
// against each module name, "all-linear" is every Linear but lm_head, a list entry matches a name or a
// suffix after "."): each loads the fixture's tensors with the same config. And --lora-targets all-linear
// resolves to the names the model has (gated or ReLU FFN).
static void test_adapter_target_forms(const char* tmp) {
    T5 m = load_fixture_model("dev/fixtures/flan_gated");
    char err[1024], dir[600], cfg[1024];
    LoraConfig want;
    float* base_a = NULL;
    int rc = lora_load_dir("dev/fixtures/lora_gated/adapter", &m.config, &want, &base_a, err, sizeof(err));
    check_true("lora_gated adapter loads", rc == 0);
    // and the peft options that are the same here, as peft 0.22 reads them (dev/sweep_peft.py found each refused
    // before): Python's own regex syntax, names matching nothing beside others, exclusions that take nothing,
    // every layer, ranks and alphas that repeat r and lora_alpha, bias (T5 has none), fan_in_fan_out (off for
    // nn.Linear), an empty modules_to_save, inits that only draw A and B
    const char* all = "[\"q\", \"k\", \"v\", \"o\", \"wi_0\", \"wi_1\", \"wo\"]";
    const char* forms[] = { "\"all-linear\"", "\".*\\\\.(q|k|v|o|wi_0|wi_1|wo)\"", "\"(en|de)coder\\\\.block\\\\.[0-9]+\\\\..*\\\\.(q|k|v|o|wi_[01]|wo)\"",
                            "[\"SelfAttention.q\", \"EncDecAttention.q\", \"k\", \"v\", \"o\", \"DenseReluDense.wi_0\", \"wi_1\", \"layer.2.DenseReluDense.wo\", \"layer.1.DenseReluDense.wo\"]",
                            "\"(?:en|de)coder\\\\.block\\\\.\\\\d+\\\\..*?\\\\.(?:q|k|v|o|wi_[01]|wo)\"", "\".*\\\\w\\\\.(q|k|v|o|wi_0|wi_1|wo)\"",
                            "[\"q\", \"k\", \"v\", \"o\", \"wi_0\", \"wi_1\", \"wo\", \"wi\", \"query\"]",
                            "%s, \"exclude_modules\": [\"nothing\", \"lm_head\"]", "%s, \"exclude_modules\": \"encoder\\\\.x.*\"",
                            "%s, \"layers_to_transform\": [0, 1]", "%s, \"layers_to_transform\": [1, 0], \"layers_pattern\": \"block\"",
                            "%s, \"rank_pattern\": {\"q\": 4, \"lm_head\": 9}, \"alpha_pattern\": {\"^decoder.*\": 2}",
                            "%s, \"bias\": \"all\", \"fan_in_fan_out\": true, \"modules_to_save\": []",
                            "%s, \"bias\": \"lora_only\", \"init_lora_weights\": \"orthogonal\"" };
    for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
        char targets[400];
        snprintf(targets, sizeof(targets), forms[k], all);
        snprintf(cfg, sizeof(cfg), "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": %.9g, \"lora_dropout\": %.9g, \"target_modules\": %s}",
                 want.r, (double)want.alpha, (double)want.dropout, targets);
        snprintf(dir, sizeof(dir), "%s/targetform%zu", tmp, k);
        write_adapter(dir, "dev/fixtures/lora_gated/adapter", cfg);
        LoraConfig c;
        float* a = NULL;
        rc = lora_load_dir(dir, &m.config, &c, &a, err, sizeof(err));
        char what[200];
        snprintf(what, sizeof(what), "adapter target_modules %.150s: the fixture's modules and tensors", targets);
        LoraLayout L;
        lora_layout(&want, &m.layout, m.config.gated, &L);
        check_true(what, rc == 0 && memcmp(&c, &want, sizeof(c)) == 0 && memcmp(a, base_a, L.total * sizeof(float)) == 0);
        if (rc) printf("      -> %s\n", err);
        free(a);
    }
    free(base_a);
    T5Config relu = m.config;
    relu.gated = 0;
    LoraFlags f = { 4, -1.0f, -1.0f, "all-linear", NULL };
    LoraConfig cg, cr;
    const char* bad_g = lora_flags_config(&f, &m.config, &cg, err, sizeof(err));
    const char* bad_r = lora_flags_config(&f, &relu, &cr, err, sizeof(err));
    unsigned qkvo = (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O) | (1u << LORA_WO);
    check_true("--lora-targets all-linear: q,k,v,o,wi_0,wi_1,wo (gated FFN), q,k,v,o,wi,wo (ReLU FFN)",
               !bad_g && !bad_r && cg.targets == (qkvo | (1u << LORA_WI_0) | (1u << LORA_WI_1)) && cr.targets == (qkvo | (1u << LORA_WI)));
    LoraFlags same = { -1, -1.0f, -1.0f, "all-linear", "dev/fixtures/lora_gated/adapter" };
    check_true("--lora-targets all-linear agrees with an adapter on every module (no contradiction)",
               lora_flags_contradict(&same, &want, &m.config, err, sizeof(err)) == NULL);
    t5_free(&m);
}

// the fixture's adapter tensors under adapter_config.json `config` in dir: refused with `expect` in the message
static void expect_adapter_refused(const T5* m, const char* dir, const char* config, const char* what, const char* expect) {
    char err[1024];
    write_adapter(dir, "dev/fixtures/lora_gated/adapter", config);
    LoraConfig c;
    float* a = NULL;
    int rc = lora_load_dir(dir, &m->config, &c, &a, err, sizeof(err));
    expect_error(what, rc, err, expect);
    if (rc == 0) free(a);
}

// bad adapters: each refused with a message naming the file and the problem
static void test_bad_adapters(const char* tmp) {
    T5 m = load_fixture_model("dev/fixtures/flan_gated");
    const char* ok_head = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 2, \"lora_dropout\": 0.0, ";
    const char* all = "\"target_modules\": [\"q\", \"k\", \"v\", \"o\", \"wi_0\", \"wi_1\", \"wo\"]";
    struct { const char* what; const char* config; const char* expect; } cases[] = {
        { "adapter: peft type other than LoRA", "{\"peft_type\": \"IA3\", \"target_modules\": [\"q\"]}", "only LoRA adapters" },
        { "adapter: rank 0", "{\"peft_type\": \"LORA\", \"r\": 0, \"target_modules\": [\"q\"]}", "r = 0" },
        { "adapter: target names that match nothing", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"query\", \"dense\"]}", "matches no module" },
        { "adapter: target that matches nothing (wi in a gated model)", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"wi\"]}", "matches no module" },
        { "adapter: pattern that also takes lm_head", "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \".*\"}", "selects lm_head" },
        { "adapter: use_dora", NULL, "'use_dora'" },
        { "adapter: modules_to_save", NULL, "'modules_to_save'" },
        { "adapter: rank_pattern with another rank for q", NULL, "rank_pattern gives 'q' another rank" },
        { "adapter: layers_to_transform [0] of 2 blocks", NULL, "with layers_to_transform selects some of the modules" },
        { "adapter: alpha_pattern with another alpha for v", NULL, "alpha_pattern gives 'v' another alpha" },
        { "adapter: bias 'some'", NULL, "bias must be \"none\", \"all\" or \"lora_only\"" },
        { "adapter: PiSSA init", NULL, "changes the base weights" },
        { "adapter: fewer targets than the file holds", NULL, "matches no LoRA module" },
        { "adapter: another rank than the file's tensors", NULL, "another base shape" },
    };
    const char* tails[] = { "\"use_dora\": true", "\"modules_to_save\": [\"lm_head\"]", "\"rank_pattern\": {\"q\": 8}",
                            "\"layers_to_transform\": [0]", "\"alpha_pattern\": {\"v\": 3}", "\"bias\": \"some\"",
                            "\"init_lora_weights\": \"pissa\"" };
    char dir[600], cfg[1024], err[1024];
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        if (k >= 5 && k < 12) snprintf(cfg, sizeof(cfg), "%s%s, %s}", ok_head, all, tails[k - 5]);
        else if (k == 12) snprintf(cfg, sizeof(cfg), "%s\"target_modules\": [\"q\", \"v\"]}", ok_head);
        else if (k == 13) snprintf(cfg, sizeof(cfg), "{\"peft_type\": \"LORA\", \"r\": 8, %s}", all);
        else snprintf(cfg, sizeof(cfg), "%s", cases[k].config);
        snprintf(dir, sizeof(dir), "%s/badadapter%zu", tmp, k);
        expect_adapter_refused(&m, dir, cfg, cases[k].what, cases[k].expect);
    }
    // target_modules that select only some modules of a name (peft would wrap those; the layout cannot), or
    // that this engine cannot read: refused by name
    struct { const char* what; const char* targets; const char* expect; } sel[] = {
        { "adapter: suffix entry taking self-attention q only", "[\"SelfAttention.q\", \"k\", \"v\", \"o\", \"wi_0\", \"wi_1\", \"wo\"]",
          "takes decoder.block.1.layer.0.SelfAttention.q but not decoder.block.1.layer.1.EncDecAttention.q" },
        { "adapter: pattern taking the encoder's q only", "\"encoder\\\\..*\\\\.q\"", "some of the modules of a name" },
        { "adapter: pattern with a Python lookahead", "\"(?=.*)\\\\.(q|v)\"", "syntax this engine does not read ((?=)" },
        { "adapter: pattern with \\\\b", "\".*\\\\bq\"", "syntax this engine does not read (\\b)" },
        { "adapter: pattern that does not compile", "\"[q\"", "not a regular expression" },
        { "adapter: pattern that matches nothing", "\"query\"", "matches no module" },
        { "adapter: entry that is not a string", "[\"q\", 3]", "entry 1 is not a string" },
    };
    for (size_t k = 0; k < sizeof(sel) / sizeof(sel[0]); k++) {
        snprintf(cfg, sizeof(cfg), "%s\"target_modules\": %s}", ok_head, sel[k].targets);
        snprintf(dir, sizeof(dir), "%s/badselect%zu", tmp, k);
        expect_adapter_refused(&m, dir, cfg, sel[k].what, sel[k].expect);
    }
    // an adapter made for another base shape: the gated fixture's adapter on the odd_shapes model
    T5 odd = load_fixture_model("dev/fixtures/odd_shapes");
    LoraConfig c;
    float* a = NULL;
    int rc = lora_load_dir("dev/fixtures/lora_gated/adapter", &odd.config, &c, &a, err, sizeof(err));
    expect_error("adapter made for another base shape (fewer decoder blocks)", rc, err, "another base shape");
    if (rc == 0) free(a);
    t5_free(&odd);
    t5_free(&m);
}

// the command line under LoRA: the peft fixture's 4 losses; a run stopped after 2 steps and resumed
// with --resume latest ends bit-identical to an uninterrupted one (LoRA dropout and T5 dropout on);
// the adapter checkpoint holds no copy of the base; and the LoRA flags' errors
static void test_cli_lora(const char* bin, const char* tmp) {
    check_cli_lora_peft(bin, 1e-5f);
    check_cli_lora_resume(bin, tmp, "");
    check_cli_lora_errors(bin, tmp);
}

// Adafactor runs stopped after 2 steps and resumed == uninterrupted runs, byte for byte (weights and the last
// checkpoint), full fine-tuning (β1 set, dropout on) and LoRA; the checkpoint's size is its header, the
// weights and Adafactor's state of llmc/optim.h's length, nothing else
static void test_cli_adafactor_resume(const char* bin, const char* tmp) {
    static char out[1 << 16];
    const char* runs[2][2] = {
        { "full", "--model dev/fixtures/adafactor_model/gated/model --train-file dev/fixtures/adafactor_model/gated/examples.bin "
                  "--batch-size 1 --dropout 0.1 --seed 3 --optimizer adafactor --adafactor-beta1 0.9 --weight-decay 0.1" },
        { "lora", "--model dev/fixtures/flan_gated/model --train-file dev/fixtures/flan_gated/examples.bin --batch-size 1 "
                  "--lora-r 4 --lora-targets q,v,wo --lora-dropout 0.1 --dropout 0.1 --seed 3 --optimizer adafactor "
                  "--adafactor-relative-step 0 --lr 1e-2 --warmup 1" } };
    for (int k = 0; k < 2; k++) {
        char cmd[3000], a[700], b[700], name[300], err[256];
        const char* what = k ? "adapter/adapter_model.safetensors" : "model/model.safetensors";
        snprintf(a, sizeof(a), "%s/af_resume_%s_a", tmp, runs[k][0]);
        snprintf(b, sizeof(b), "%s/af_resume_%s_b", tmp, runs[k][0]);
        snprintf(cmd, sizeof(cmd), "%s %s --steps 4 --out-dir %s", bin, runs[k][1], a);
        int ok = run_cmd(cmd, out, sizeof(out)) == 0;
        snprintf(cmd, sizeof(cmd), "%s %s --steps 2 --out-dir %s", bin, runs[k][1], b);
        ok = ok && run_cmd(cmd, out, sizeof(out)) == 0;
        snprintf(cmd, sizeof(cmd), "%s %s --steps 4 --out-dir %s --resume latest", bin, runs[k][1], b);
        ok = ok && run_cmd(cmd, out, sizeof(out)) == 0 && strstr(out, "resuming from") != NULL;
        if (!ok) printf("%s\n%s\n", cmd, out);
        snprintf(cmd, sizeof(cmd), "cmp -s %s/%s %s/%s && cmp -s %s/checkpoints/ckpt_000000004.bin %s/checkpoints/ckpt_000000004.bin",
                 a, what, b, what, a, b);
        snprintf(name, sizeof(name), "adafactor %s: stopped at 2, resumed == uninterrupted (byte-identical)", runs[k][0]);
        check_true(name, ok && system(cmd) == 0);
        // the checkpoint's size: header, trainable floats, Adafactor state
        char path[800];
        snprintf(path, sizeof(path), "%s/checkpoints/ckpt_000000004.bin", a);
        int64_t size = file_size_of(path, err, sizeof(err));
        T5Config c;
        float* p = NULL;
        int64_t want = -1;
        if (t5_load_hf_dir(k ? "dev/fixtures/flan_gated/model" : "dev/fixtures/adafactor_model/gated/model", &c, &p, err, sizeof(err)) == 0) {
            T5Layout L;
            t5_layout(&c, &L);
            if (k) {
                LoraConfig lc = { 4, 8.0f, 0.1f, (1u << LORA_Q) | (1u << LORA_V) | (1u << LORA_WO), 0 };
                LoraLayout LL;
                lora_layout(&lc, &L, c.gated, &LL);
                want = 256 + 4 * (int64_t)(LL.total + lora_adafactor_floats(&LL, 0));
            } else want = 512 + 4 * (int64_t)(L.total + t5_adafactor_floats(&L, 1));
            free(p);
        }
        snprintf(name, sizeof(name), "adafactor %s checkpoint: header + weights + Adafactor state (%lld bytes)", runs[k][0], (long long)size);
        check_true(name, size == want);
    }
}

// what transformers refuses, refused by name; a checkpoint resumed with the other optimizer; and an AdamW
// checkpoint of the version before (3) still loads and trains as AdamW
static void test_cli_adafactor_errors(const char* bin, const char* tmp) {
    static char out[1 << 16];
    const char* base = "--model dev/fixtures/adafactor_model/relu/model --train-file dev/fixtures/adafactor_model/relu/examples.bin --steps 1";
    const struct { const char* flags; const char* expect; } cases[] = {
        { "--optimizer adafactor --lr 1e-3", "Cannot combine manual `lr` and `relative_step=True`" },
        { "--optimizer adafactor --adafactor-relative-step 0 --adafactor-warmup-init 1 --lr 1e-3", "requires `relative_step=True`" },
        { "--optimizer adafactor --adafactor-beta1 1", "--adafactor-beta1 needs a number" },
        { "--optimizer adafactor --adafactor-decay 0.5", "--adafactor-decay needs a number" },
        { "--optimizer adafactor --adafactor-clip 0", "--adafactor-clip needs a number" },
        { "--optimizer sgd", "--optimizer must be one of adamw|adafactor" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[1500], name[300];
        snprintf(cmd, sizeof(cmd), "%s %s %s", bin, base, cases[i].flags);
        int rc = run_cmd(cmd, out, sizeof(out));
        snprintf(name, sizeof(name), "refused: %s", cases[i].flags);
        check_true(name, rc >= 1 && rc <= 127 && strstr(out, cases[i].expect) != NULL);
        if (!(rc >= 1 && rc <= 127 && strstr(out, cases[i].expect))) printf("%s\n", out);
    }
    char cmd[2000], dir[700], path[800];
    // relative steps: the schedule flags given are said not to apply
    snprintf(cmd, sizeof(cmd), "%s %s --optimizer adafactor --warmup 3", bin, base);
    int rc = run_cmd(cmd, out, sizeof(out));
    check_true("adafactor relative step: --warmup given is said not to apply", rc == 0 && strstr(out, "do not apply"));
    // an Adafactor run resumed as AdamW, and the other way round
    snprintf(dir, sizeof(dir), "%s/af_kind", tmp);
    snprintf(cmd, sizeof(cmd), "%s %s --optimizer adafactor --out-dir %s", bin, base, dir);
    rc = run_cmd(cmd, out, sizeof(out));
    snprintf(cmd, sizeof(cmd), "%s %s --steps 2 --out-dir %s --resume latest", bin, base, dir);
    int rc2 = run_cmd(cmd, out, sizeof(out));
    check_true("an Adafactor checkpoint resumed with --optimizer adamw is refused by name",
               rc == 0 && rc2 >= 1 && rc2 <= 127 && strstr(out, "holds adafactor state; the run asks for --optimizer adamw"));
    snprintf(cmd, sizeof(cmd), "%s %s --steps 2 --out-dir %s --resume latest --optimizer adafactor --adafactor-beta1 0.9", bin, base, dir);
    rc2 = run_cmd(cmd, out, sizeof(out));
    check_true("an Adafactor checkpoint without beta1 resumed with --adafactor-beta1 is refused",
               rc2 >= 1 && rc2 <= 127 && strstr(out, "without a first moment"));
    // an AdamW checkpoint written as version 3 (no optimizer fields): loads with its moments, resumes as AdamW
    snprintf(dir, sizeof(dir), "%s/af_v3", tmp);
    snprintf(cmd, sizeof(cmd), "%s %s --out-dir %s", bin, base, dir);
    rc = run_cmd(cmd, out, sizeof(out));
    snprintf(path, sizeof(path), "%s/checkpoints/ckpt_000000001.bin", dir);
    FILE* f = fopen(path, "r+b");
    int64_t h[CKPT_HEADER_INTS];
    int ok = rc == 0 && f && fread(h, sizeof(h), 1, f) == 1 && h[1] == 4 && h[31] == 0;
    if (ok) { h[1] = 3; ok = fseek(f, 0, SEEK_SET) == 0 && fwrite(h, sizeof(h), 1, f) == 1; }
    if (f) fclose(f);
    CkptInfo info;
    float *p = NULL, *m = NULL, *v = NULL, *af = NULL;
    char err[512];
    ok = ok && ckpt_load_opt(path, &info, &p, &m, &v, &af, err, sizeof(err)) == 0 && info.opt_kind == OPTIM_ADAMW && m && v && !af;
    free(p); free(m); free(v); free(af);
    snprintf(cmd, sizeof(cmd), "%s %s --steps 2 --out-dir %s --resume latest", bin, base, dir);
    ok = ok && run_cmd(cmd, out, sizeof(out)) == 0 && strstr(out, "resuming from");
    check_true("a version 3 (AdamW) checkpoint loads as AdamW and resumes", ok);
}

// --optimizer adafactor against transformers' Adafactor (dev/make_adafactor_model_fixtures.py): the T5 settings
// and the defaults (relative step, parameter scale, warmup init), with and without beta1 and weight decay, on a
// gated and a ReLU model, and the LoRA case. Tolerances: losses 1e-5 relative (6 decimals printed; fp32 sums in
// another order); weights 1e-6 absolute and 1e-3 of the largest change (docs/adafactor.md: the optimizer alone
// agrees to 3e-8 and 1.8e-6 of the change; five steps of a model's forward and backward add their own ulps)
static void test_cli_adafactor(const char* bin, const char* tmp) {
    const char* models[] = { "gated", "relu" };
    const char* cases[] = { "t5", "t5_beta1_wd", "defaults", "defaults_beta1_wd", "warmup" };
    for (int m = 0; m < 2; m++)
        for (int c = 0; c < 5; c++) check_cli_adafactor(bin, tmp, models[m], cases[c], 1e-5f, 1e-6, 1e-3);
    check_cli_adafactor_lora(bin, tmp, 1e-5f, 1e-6, 1e-3);
    test_cli_adafactor_resume(bin, tmp);
    test_cli_adafactor_errors(bin, tmp);
}

// the metrics log as the comparison report reads it back (llmc/rundir.h): what metrics_start / metrics_end
// write comes back; a log with bad lines, an old log without the new fields and a missing log give
// "unknown", never a failure; rundir_of finds the run of RUN/model, RUN/adapter/, RUN/checkpoints/ckpt
static void test_metrics_reader(const char* tmp) {
    char dir[600], path[700], got[700], name[200];
    snprintf(dir, sizeof(dir), "%s/metrics_run", tmp);
    FILE* f = metrics_start(dir, 0, 0, 4, 456, 123);
    if (f) fprintf(f, "{\"type\": \"train\", \"step\": 1, \"ms\": 5}\n{\"type\": \"train\", \"step\": 2, \"ms\": 1}\n"
                      "{\"type\": \"train\", \"step\": 3, \"ms\": 3}\nnot json at all\n[1, 2]\n\n"
                      "{\"type\": \"train\", \"step\": 4, \"ms\": 100}\n");
    metrics_end(f, 0, 4, 0.1, 50.0, "resident");
    if (f) fprintf(f, "{\"type\": \"resume\", \"step\": 4, \"params\": 456, \"trainable\": 123}\n");
    metrics_end(f, 1, 4, 0.1, 70.5, "device");
    if (f) { fprintf(f, "{\"type\": \"train\", \"step\": 5, \"ms\": 1e9"); fclose(f); } // torn: a record being written
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    RunInfo r;
    int rc = metrics_run_info(path, &r);
    snprintf(name, sizeof(name), "metrics log read back: trainable %lld of %lld, %lld steps, median %.1f ms, peak %.1f %s, %lld bad",
             r.trainable, r.params, r.steps, r.step_ms, r.peak_mib, r.peak_memory, r.bad_lines);
    check_true(name, rc == 0 && r.trainable == 123 && r.params == 456 && r.steps == 4 && r.step_ms == 4.0 && r.peak_mib == 70.5 &&
               strcmp(r.peak_memory, "device") == 0 && r.bad_lines == 2);
    snprintf(path, sizeof(path), "%s/old_metrics.jsonl", tmp);
    const char* old = "{\"type\": \"start\", \"step\": 0, \"total_steps\": 2, \"params\": 9}\n"
                      "{\"type\": \"train\", \"step\": 1, \"ms\": null}\n{\"type\": \"train\", \"step\": 2, \"ms\": 7.5}\n"
                      "{\"type\": \"end\", \"step\": 2, \"padding_fraction\": 0.5}\n";
    write_bytes(path, old, strlen(old));
    rc = metrics_run_info(path, &r);
    check_true("an old metrics log (no trainable, no peak_mib): those unknown, the step time read", rc == 0 && r.trainable == -1 &&
               r.params == 9 && r.steps == 2 && r.step_ms == 7.5 && isnan(r.peak_mib) && r.peak_memory[0] == 0 && r.bad_lines == 0);
    snprintf(path, sizeof(path), "%s/no_such_dir/metrics.jsonl", tmp);
    rc = metrics_run_info(path, &r);
    check_true("a missing metrics log: -1, everything unknown", rc == -1 && r.trainable == -1 && isnan(r.step_ms) && isnan(r.peak_mib));
    const char* inside[] = { "model", "adapter/", "checkpoints/ckpt_000000004.bin" };
    int found = 1;
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, inside[i]);
        found &= rundir_of(path, got, sizeof(got)) == 0 && strcmp(got, dir) == 0;
    }
    snprintf(path, sizeof(path), "%s/elsewhere/model", tmp);
    check_true("rundir_of: RUN/model, RUN/adapter/, RUN/checkpoints/ckpt_* -> RUN; none outside a run directory",
               found && rundir_of(path, got, sizeof(got)) == -1 && rundir_of("flan-t5-small", got, sizeof(got)) == -1);
}

int main(int argc, char** argv) {
    enable_flush_to_zero();
    const char* fixtures[] = { "dev/fixtures/flan_gated", "dev/fixtures/t5_relu_tied", "dev/fixtures/odd_shapes", "dev/fixtures/gelu_untied",
                               "dev/fixtures/silu_gated" };
    char tmp[] = "/tmp/test_t5_XXXXXX";
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return EXIT_FAILURE; }
    const char* bin = NULL; // --train-bin PATH: also test the command line of that binary
    for (int i = 1; i + 1 < argc; i++) if (strcmp(argv[i], "--train-bin") == 0) bin = argv[i + 1];
    for (int i = 1; bin && i < argc; i++)
        if (strcmp(argv[i], "--adafactor-only") == 0) { // a quick run of the Adafactor checks alone
            test_cli_adafactor(bin, tmp);
            printf("\n%d passed, %d failed\n", g_pass, g_fail);
            return g_fail ? EXIT_FAILURE : EXIT_SUCCESS;
        }
    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) test_fixture(fixtures[i], tmp);
    test_formats(tmp);
    test_lora_fixture("dev/fixtures/lora_gated", tmp);
    test_lora_fixture("dev/fixtures/lora_relu", tmp);
    printf("\n=== checks without fixtures\n");
    test_finite_differences(0, ACT_GELU_TANH, 1, "flan");
    test_finite_differences(1, ACT_GELU, 0, "tied");
    test_finite_differences(0, ACT_SILU, 1, "gated silu");
    test_gemm();
    test_vmath();
    test_grad_accumulation();
    test_repad();
    test_dropout();
    test_decay_groups();
    test_lora_finite_differences(1);
    test_lora_finite_differences(0);
    printf("\n=== bad input\n");
    test_bad_config(tmp);
    test_bad_weights(tmp);
    test_bad_checkpoint(tmp);
    test_bad_examples(tmp);
    test_bad_adapters(tmp);
    test_adapter_target_forms(tmp);
    test_metrics_reader(tmp);
    test_generation();
    const char* spm = "../shared/data/t5/spiece.model"; // --spm PATH overrides
    for (int i = 1; i + 1 < argc; i++) if (strcmp(argv[i], "--spm") == 0) spm = argv[i + 1];
    test_decode_summary(spm);
    test_trivial_baselines();
    if (bin) {
        printf("\n=== command line (%s)\n", bin);
        for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) test_cli_fixture_run(bin, tmp, fixtures[i]);
        test_cli_loss_falls(bin, tmp);
        test_cli_adamw_flags(bin, tmp);
        test_cli_shape_and_batch_flags(bin, tmp);
        test_cli_errors(bin);
        test_cli_lora(bin, tmp);
        test_cli_adafactor(bin, tmp);
    }
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", tmp);
    printf("\n%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? EXIT_FAILURE : EXIT_SUCCESS;
}
