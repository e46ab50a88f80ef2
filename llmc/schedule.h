// schedule.h — learning-rate schedules with the semantics of transformers' get_*_schedule_with_warmup:
// update k (0-based) uses lr = base_lr * lr_multiplier(k).
#ifndef T5_SCHEDULE_H
#define T5_SCHEDULE_H

#include <math.h>    // defines: cos
#include <string.h>  // defines: strcmp

typedef enum { SCHED_CONSTANT = 0, SCHED_LINEAR = 1, SCHED_COSINE = 2 } LrScheduleKind;

typedef struct {
    LrScheduleKind kind;
    long long warmup;  // steps of linear warmup from 0
    long long total;   // steps in the whole run (decay reaches 0 there)
} LrSchedule;

static inline int lr_schedule_parse(const char* s, LrScheduleKind* out) {
    if (strcmp(s, "constant") == 0) { *out = SCHED_CONSTANT; return 0; }
    if (strcmp(s, "linear") == 0) { *out = SCHED_LINEAR; return 0; }
    if (strcmp(s, "cosine") == 0) { *out = SCHED_COSINE; return 0; }
    return -1;
}

static inline const char* lr_schedule_name(LrScheduleKind k) {
    return k == SCHED_LINEAR ? "linear" : k == SCHED_COSINE ? "cosine" : "constant";
}

//   warmup:   k / max(1, warmup)                            for k < warmup
//   constant: 1
//   linear:   max(0, (total - k) / max(1, total - warmup))
//   cosine:   max(0, ½ (1 + cos(π · (k - warmup) / max(1, total - warmup))))
static inline double lr_multiplier(const LrSchedule* s, long long k) {
    if (k < s->warmup) return (double)k / (double)(s->warmup > 1 ? s->warmup : 1);
    double span = (double)(s->total - s->warmup > 1 ? s->total - s->warmup : 1);
    switch (s->kind) {
        case SCHED_LINEAR: { double v = (double)(s->total - k) / span; return v > 0.0 ? v : 0.0; }
        case SCHED_COSINE: {
            double v = 0.5 * (1.0 + cos(3.14159265358979323846 * (double)(k - s->warmup) / span));
            return v > 0.0 ? v : 0.0;
        }
        default: return 1.0;
    }
}

#endif // T5_SCHEDULE_H
