// optim.h — which optimizer a run uses (--optimizer adamw|adafactor) and how Adafactor sees a model: the
// list of tensors it updates one at a time ("slices"), where each one's state lives in the one flat state
// array, and the host update over all of them. The per-tensor arithmetic is llmc/adafactor.h (host) and
// llmc/adafactor.cuh (device); this file only walks a layout.
//
// A slice is one tensor as Hugging Face holds it: a layer-stacked tensor (L, rows, cols) of llmc/t5.h is L
// slices, because in transformers each layer's weight is its own tensor with its own RMS, clipping and
// factored moments. Matrices (Linear (out, in), embedding and lm_head (V, C), relative_attention_bias
// (num_buckets, H), LoRA's A (r, in) and B (out, r)) are factored; RMSNorm weights (C) are vectors.
//
// The Adafactor state of a model is the concatenation, in slice order (= layout order, layers in order),
// of each slice's state as llmc/adafactor.h lays it out:
//   factored [ R (rows) | C (cols) | M (rows·cols) if β1 ],  vector [ V (n) | M (n) if β1 ]
// so its length depends only on the layout and on whether β1 is set (a checkpoint records both).
#ifndef T5_OPTIM_H
#define T5_OPTIM_H

#include <stddef.h>     // defines: size_t
#include "t5.h"         // defines: T5Layout, T5Tensor, t5_no_decay, NUM_PARAM_TENSORS
#include "adafactor.h"  // defines: AdafactorConfig, AdafactorStep, adafactor_state_floats, adafactor_update_values

typedef enum { OPTIM_ADAMW = 0, OPTIM_ADAFACTOR = 1 } OptimKind;

static inline const char* optim_name(int kind) { return kind == OPTIM_ADAFACTOR ? "adafactor" : "adamw"; }

// one tensor as Adafactor updates it
typedef struct {
    size_t off;        // floats from the start of the parameter (and gradient) buffer
    int rows, cols;    // a vector: rows = 1, cols = its length
    int factored;      // 1: a matrix (factored second moment)
    int norm;          // 1: in HF Trainer's group without weight decay (t5_no_decay: RMSNorm weights, relative bias tables)
} OptSlice;

// the slices of a full model, in layout order (out NULL: only counted)
static inline int t5_opt_slices(const T5Layout* L, OptSlice* out) {
    int n = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &L->t[i];
        if (t->size == 0) continue;
        size_t copy = t5_tensor_copy_size(t);
        for (int l = 0; l < t->layers; l++, n++) {
            if (!out) continue;
            OptSlice s = { t->offset + (size_t)l * copy, t->cols > 0 ? t->rows : 1, t->cols > 0 ? t->cols : t->rows,
                           t->cols > 0, t5_no_decay(i) };
            out[n] = s;
        }
    }
    return n;
}

// floats of Adafactor state over a list of slices
static inline size_t adafactor_slices_floats(const OptSlice* s, int n, int has_beta1) {
    size_t total = 0;
    for (int k = 0; k < n; k++) total += adafactor_state_floats(s[k].rows, s[k].cols, s[k].factored, has_beta1);
    return total;
}

// a layout's slices: count them (out NULL) or write them (t5_opt_slices, lora.h's lora_opt_slices)
typedef int (*OptSlicer)(const void* layout, OptSlice* out);

// floats of Adafactor state over every slice of a layout
static inline size_t adafactor_layout_floats(OptSlicer slicer, const void* layout, int has_beta1) {
    int n = slicer(layout, NULL);
    OptSlice* s = (OptSlice*)mallocCheck((size_t)(n > 0 ? n : 1) * sizeof(OptSlice));
    slicer(layout, s);
    size_t total = adafactor_slices_floats(s, n, has_beta1);
    free(s);
    return total;
}

static inline int t5_opt_slicer(const void* L, OptSlice* out) { return t5_opt_slices((const T5Layout*)L, out); }

// floats of Adafactor state of a full model
static inline size_t t5_adafactor_floats(const T5Layout* L, int has_beta1) {
    return adafactor_layout_floats(t5_opt_slicer, L, has_beta1);
}

// one Adafactor step over every slice: params and grads in the buffer the slices index, state the
// concatenation above. decay_norms = 0: the slices of t5_no_decay get no weight decay (HF Trainer's parameter groups)
static inline void adafactor_update_slices(float* params, const float* grads, float* state, const OptSlice* s, int n,
                                           const AdafactorStep* step, int decay_norms) {
    size_t at = 0;
    for (int k = 0; k < n; k++) {
        AdafactorStep st = *step;
        if (s[k].norm && !decay_norms) st.weight_decay = 0.0;
        adafactor_update_values(params + s[k].off, grads + s[k].off, state + at, s[k].rows, s[k].cols, s[k].factored, &st);
        at += adafactor_state_floats(s[k].rows, s[k].cols, s[k].factored, step->has_beta1);
    }
}

#endif // T5_OPTIM_H
