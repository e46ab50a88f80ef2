// driver.c — the driver (llmc/run.h) and the beam bookkeeping (llmc/beam.h) compiled as one C file for
// the CUDA program, which links it: train_t5cu's host side is this code, the same that train_t5
// includes and its tests run. Only the functions declared in llmc/engine.h leave this file.
#include "run.h"     // defines: Program, run_begin, run_next, run_after, run_end, batch_check, t5_init_params
#include "beam.h"    // defines: BeamState, beam_build, beam_* steps, gen_request_check

Program* program_new(void) { return (Program*)callocCheck(1, sizeof(Program)); }
int program_begin(Program* p, int argc, char** argv, const EngineOps* ops) { return run_begin(p, argc, argv, ops); }
int program_next(Program* p, StepIn* in) { return run_next(p, in); }
void program_after(Program* p, const StepOut* out) { run_after(p, out); }
Engine* program_engine(Program* p) { return &p->engine; }

int program_end(Program* p) {
    int rc = run_end(p);
    free(p);
    return rc;
}

const char* t5_batch_check(const T5Config* c, const T5Batch* b) { return batch_check(c, b); }
void t5_init_weights(const T5Config* c, float* params, uint64_t seed) { t5_init_params(c, params, seed); }
float t5_step_settings(const Options* o, const Engine* e, long long k, float lr, uint64_t* seeds, StepIn* in) {
    return step_settings(o, e, k, lr, seeds, in);
}

int gen_check(const T5Config* c, const int* const* src, const int* src_len, int B, const GenConfig* g, char* err, size_t errlen) {
    return gen_request_check(c, src, src_len, B, g, err, errlen);
}

// ----------------------------------------------------------------------------
// beam search over scores computed elsewhere (the GPU engine's top-k): gen_beam's loop after its scores

struct BeamSearch { BeamState s; GenConfig cfg; T5Config c; };

BeamSearch* beam_search_create(const T5Config* c, int B, const GenConfig* g) {
    BeamSearch* x = (BeamSearch*)callocCheck(1, sizeof(BeamSearch));
    x->cfg = *g;
    x->c = *c;
    beam_build(&x->s, c, B, g->num_beams, g->max_new_tokens);
    return x;
}

void beam_search_free(BeamSearch* x) { beam_free(&x->s); free(x); }
int beam_search_width(const BeamSearch* x) { return x->s.L; }
const int* beam_search_running(const BeamSearch* x) { return x->s.run_seq; }
const float* beam_search_scores(const BeamSearch* x) { return x->s.run_score; }

int beam_search_step(BeamSearch* x, const float* top_val, const int* top_idx, int cur_len, int* parent) {
    BeamState* s = &x->s;
    for (int b = 0; b < s->B; b++) {
        beam_candidates_given(s, &x->c, b, cur_len, top_val + (size_t)b * s->K, top_idx + (size_t)b * s->K);
        beam_next_running(s, b);
        beam_update_finished(s, &x->cfg, b, cur_len);
        beam_check_open(s, &x->cfg, b, cur_len + 1);
    }
    memcpy(parent, s->parent, (size_t)s->B * s->nb * sizeof(int));
    return beam_go_on(s, &x->cfg, s->B);
}

// the best finished hypothesis of each input, laid out as t5_generate returns it
void beam_search_result(const BeamSearch* x, int* out, int* out_len) {
    const BeamState* s = &x->s;
    int T = x->cfg.max_new_tokens;
    for (int b = 0; b < s->B; b++) {
        const int* best = s->fin_seq + (size_t)b * s->nb * s->L;
        out_len[b] = s->fin_len[(size_t)b * s->nb];
        for (int j = 0; j < T; j++) out[(size_t)b * T + j] = j < out_len[b] ? best[1 + j] : x->c.pad_id;
    }
}
