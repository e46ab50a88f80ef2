/*
llmc/porter.h — the Porter stemmer as NLTK runs it by default (PorterStemmer(mode=NLTK_EXTENSIONS)),
which is the stemmer rouge_score uses with use_stemmer=True. Header-only.

defines: porter_stem

Input: a lowercase ASCII word (rouge_score hands it only [a-z0-9]+ tokens longer than 3 characters).
The word is stemmed in place; the stem is never longer than the word, so the caller's buffer is
enough. Digits and any byte other than a, e, i, o, u, y count as consonants, as in NLTK.

NLTK_EXTENSIONS differs from Porter's 1980 paper at these places, each marked NLTK below:
- a table of irregular forms is looked up first (dying → die, skies → sky, news → news, ...);
- step 1a: a 4-letter word ending in "ies" becomes "...ie" (dies → die);
- step 1b: "ied" becomes "ie" in 4-letter words and "i" otherwise (died → die, spied → spi);
- step 1b/5a: the *o condition also holds for a 2-letter vowel+consonant stem;
- step 1c: y → i only after a consonant that is not the first letter (happy → happi, enjoy stays);
- step 2: "alli" → "al" is tried first and step 2 then runs again; "bli" → "ble" (not "abli");
  extra rules "fulli" → "ful" and "logi" → "log" (the 'l' counts with the stem's measure).
*/
#ifndef LLMC_PORTER_H
#define LLMC_PORTER_H

#include <string.h>  // defines: memcmp, memcpy, strlen

// ----------------------------------------------------------------------------
// letters: vowel / consonant, the measure m of [C](VC){m}[V]

static inline int porter_is_vowel_letter(char c) {
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

// w[i] is a consonant: not a vowel letter, and a 'y' only at the start or after a vowel.
// A run of y's alternates (y after a consonant is a vowel), resolved by walking back over it.
static inline int porter_is_consonant(const char* w, int i) {
    int flip = 0;
    while (i > 0 && w[i] == 'y') { flip ^= 1; i--; }
    return (!porter_is_vowel_letter(w[i])) != flip;
}

// m = number of vowel→consonant transitions in w[0, n), in one left-to-right pass
static inline int porter_measure(const char* w, int n) {
    int m = 0, prev_consonant = 1;
    for (int i = 0; i < n; i++) {
        int consonant = porter_is_vowel_letter(w[i]) ? 0 : (w[i] == 'y' ? (i == 0 || !prev_consonant) : 1);
        if (i > 0 && !prev_consonant && consonant) { m++; }
        prev_consonant = consonant;
    }
    return m;
}

// *v*: w[0, n) contains a vowel
static inline int porter_contains_vowel(const char* w, int n) {
    int prev_consonant = 1;
    for (int i = 0; i < n; i++) {
        int consonant = porter_is_vowel_letter(w[i]) ? 0 : (w[i] == 'y' ? (i == 0 || !prev_consonant) : 1);
        if (!consonant) { return 1; }
        prev_consonant = consonant;
    }
    return 0;
}

// *d: ends with a double consonant
static inline int porter_ends_double_consonant(const char* w, int n) {
    return n >= 2 && w[n - 1] == w[n - 2] && porter_is_consonant(w, n - 1);
}

// *o: ends consonant-vowel-consonant with the last not w, x or y; NLTK: or is exactly vowel+consonant
static inline int porter_ends_cvc(const char* w, int n) {
    if (n >= 3 && porter_is_consonant(w, n - 3) && !porter_is_consonant(w, n - 2) &&
        porter_is_consonant(w, n - 1) && w[n - 1] != 'w' && w[n - 1] != 'x' && w[n - 1] != 'y') {
        return 1;
    }
    return n == 2 && !porter_is_consonant(w, 0) && porter_is_consonant(w, 1);
}

static inline int porter_ends_with(const char* w, int n, const char* suffix) {
    int k = (int)strlen(suffix);
    return k <= n && memcmp(w + n - k, suffix, (size_t)k) == 0;
}

// ----------------------------------------------------------------------------
// rule lists: the first rule whose suffix matches decides; if its condition fails the word stays

typedef enum {
    PORTER_ALWAYS,
    PORTER_M_GT0,    // m(stem) > 0
    PORTER_M_GT1,    // m(stem) > 1
    PORTER_ION,      // m(stem) > 1 and the stem ends in s or t
    PORTER_LOGI,     // NLTK: m(word without its last 3 letters) > 0, i.e. the 'l' stays with the stem
    PORTER_Y_TO_I,   // NLTK: the stem is longer than 1 and ends in a consonant
} PorterCondition;

typedef struct { const char* suffix; const char* replacement; PorterCondition condition; } PorterRule;

static inline int porter_condition_holds(PorterCondition c, const char* w, int n, int stem_len) {
    switch (c) {
        case PORTER_ALWAYS: return 1;
        case PORTER_M_GT0:  return porter_measure(w, stem_len) > 0;
        case PORTER_M_GT1:  return porter_measure(w, stem_len) > 1;
        case PORTER_ION:    return porter_measure(w, stem_len) > 1 && (w[stem_len - 1] == 's' || w[stem_len - 1] == 't');
        case PORTER_LOGI:   return porter_measure(w, n - 3) > 0;
        case PORTER_Y_TO_I: return stem_len > 1 && porter_is_consonant(w, stem_len - 1);
    }
    return 0;
}

// w[0, *n) := w[0, stem_len) + replacement; the caller's buffer holds the original word, and no
// replacement makes a word longer than it was when stemming started (checked: cap)
static inline void porter_set_suffix(char* w, int* n, int cap, int stem_len, const char* replacement) {
    int k = (int)strlen(replacement);
    if (stem_len + k > cap) { return; }
    memcpy(w + stem_len, replacement, (size_t)k);
    *n = stem_len + k;
}

// returns 1 if some rule's suffix matched (whether or not its condition held)
static inline int porter_apply_rules(char* w, int* n, int cap, const PorterRule* rules, int count) {
    for (int r = 0; r < count; r++) {
        if (!porter_ends_with(w, *n, rules[r].suffix)) { continue; }
        int stem_len = *n - (int)strlen(rules[r].suffix);
        if (porter_condition_holds(rules[r].condition, w, *n, stem_len)) {
            porter_set_suffix(w, n, cap, stem_len, rules[r].replacement);
        }
        return 1;
    }
    return 0;
}

#define PORTER_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

// ----------------------------------------------------------------------------
// the steps

// 1a: sses → ss, ies → i, ss → ss, s → (nothing); NLTK: 4-letter "...ies" → "...ie"
static inline void porter_step1a(char* w, int* n, int cap) {
    static const PorterRule rules[] = {
        {"sses", "ss", PORTER_ALWAYS}, {"ies", "i", PORTER_ALWAYS}, {"ss", "ss", PORTER_ALWAYS}, {"s", "", PORTER_ALWAYS},
    };
    if (*n == 4 && porter_ends_with(w, *n, "ies")) { porter_set_suffix(w, n, cap, 1, "ie"); return; }
    porter_apply_rules(w, n, cap, rules, PORTER_COUNT(rules));
}

// after 1b removed -ed or -ing: at → ate, bl → ble, iz → ize; *d and not l/s/z → one letter;
// (m=1 and *o) → append e
static inline void porter_step1b_tidy(char* w, int* n, int cap) {
    static const PorterRule rules[] = {
        {"at", "ate", PORTER_ALWAYS}, {"bl", "ble", PORTER_ALWAYS}, {"iz", "ize", PORTER_ALWAYS},
    };
    if (porter_apply_rules(w, n, cap, rules, PORTER_COUNT(rules))) { return; }
    if (porter_ends_double_consonant(w, *n)) {
        char last = w[*n - 1];
        if (last != 'l' && last != 's' && last != 'z') { *n -= 1; }
        return;
    }
    if (porter_measure(w, *n) == 1 && porter_ends_cvc(w, *n)) { porter_set_suffix(w, n, cap, *n, "e"); }
}

// 1b: (m>0) eed → ee; (*v*) ed → ; (*v*) ing → ; NLTK: ied → ie (4 letters) or i
static inline void porter_step1b(char* w, int* n, int cap) {
    if (porter_ends_with(w, *n, "ied")) { porter_set_suffix(w, n, cap, *n - 3, *n == 4 ? "ie" : "i"); return; }
    if (porter_ends_with(w, *n, "eed")) {
        if (porter_measure(w, *n - 3) > 0) { *n -= 1; }
        return;
    }
    static const char* const suffixes[] = {"ed", "ing"};
    for (int s = 0; s < 2; s++) {
        int stem_len = *n - (int)strlen(suffixes[s]);
        if (porter_ends_with(w, *n, suffixes[s]) && porter_contains_vowel(w, stem_len)) {
            *n = stem_len;
            porter_step1b_tidy(w, n, cap);
            return;
        }
    }
}

// 1c: y → i after a consonant (NLTK condition)
static inline void porter_step1c(char* w, int* n, int cap) {
    static const PorterRule rules[] = { {"y", "i", PORTER_Y_TO_I} };
    porter_apply_rules(w, n, cap, rules, 1);
}

// 2: (m>0) ational → ate, tional → tion, ... ; NLTK: alli → al first (then step 2 again), bli, fulli, logi
static inline void porter_step2(char* w, int* n, int cap) {
    static const PorterRule rules[] = {
        {"ational", "ate", PORTER_M_GT0}, {"tional", "tion", PORTER_M_GT0}, {"enci", "ence", PORTER_M_GT0},
        {"anci", "ance", PORTER_M_GT0},   {"izer", "ize", PORTER_M_GT0},    {"bli", "ble", PORTER_M_GT0},
        {"alli", "al", PORTER_M_GT0},     {"entli", "ent", PORTER_M_GT0},   {"eli", "e", PORTER_M_GT0},
        {"ousli", "ous", PORTER_M_GT0},   {"ization", "ize", PORTER_M_GT0}, {"ation", "ate", PORTER_M_GT0},
        {"ator", "ate", PORTER_M_GT0},    {"alism", "al", PORTER_M_GT0},    {"iveness", "ive", PORTER_M_GT0},
        {"fulness", "ful", PORTER_M_GT0}, {"ousness", "ous", PORTER_M_GT0}, {"aliti", "al", PORTER_M_GT0},
        {"iviti", "ive", PORTER_M_GT0},   {"biliti", "ble", PORTER_M_GT0},  {"fulli", "ful", PORTER_M_GT0},
        {"logi", "log", PORTER_LOGI},
    };
    while (porter_ends_with(w, *n, "alli") && porter_measure(w, *n - 4) > 0) { *n -= 2; }
    porter_apply_rules(w, n, cap, rules, PORTER_COUNT(rules));
}

// 3: (m>0) icate → ic, ative → , alize → al, iciti → ic, ical → ic, ful → , ness →
static inline void porter_step3(char* w, int* n, int cap) {
    static const PorterRule rules[] = {
        {"icate", "ic", PORTER_M_GT0}, {"ative", "", PORTER_M_GT0}, {"alize", "al", PORTER_M_GT0},
        {"iciti", "ic", PORTER_M_GT0}, {"ical", "ic", PORTER_M_GT0}, {"ful", "", PORTER_M_GT0},
        {"ness", "", PORTER_M_GT0},
    };
    porter_apply_rules(w, n, cap, rules, PORTER_COUNT(rules));
}

// 4: (m>1) al, ance, ence, er, ic, able, ible, ant, ement, ment, ent, (s|t)ion, ou, ism, ate, iti,
// ous, ive, ize →
static inline void porter_step4(char* w, int* n, int cap) {
    static const PorterRule rules[] = {
        {"al", "", PORTER_M_GT1},   {"ance", "", PORTER_M_GT1},  {"ence", "", PORTER_M_GT1}, {"er", "", PORTER_M_GT1},
        {"ic", "", PORTER_M_GT1},   {"able", "", PORTER_M_GT1},  {"ible", "", PORTER_M_GT1}, {"ant", "", PORTER_M_GT1},
        {"ement", "", PORTER_M_GT1}, {"ment", "", PORTER_M_GT1}, {"ent", "", PORTER_M_GT1},  {"ion", "", PORTER_ION},
        {"ou", "", PORTER_M_GT1},   {"ism", "", PORTER_M_GT1},   {"ate", "", PORTER_M_GT1},  {"iti", "", PORTER_M_GT1},
        {"ous", "", PORTER_M_GT1},  {"ive", "", PORTER_M_GT1},   {"ize", "", PORTER_M_GT1},
    };
    porter_apply_rules(w, n, cap, rules, PORTER_COUNT(rules));
}

// 5a: (m>1) e → ; (m=1 and not *o) e → .   5b: (m>1 and *d and *L) → single letter
static inline void porter_step5(char* w, int* n) {
    if (porter_ends_with(w, *n, "e")) {
        int m = porter_measure(w, *n - 1);
        if (m > 1 || (m == 1 && !porter_ends_cvc(w, *n - 1))) { *n -= 1; }
    }
    if (porter_ends_with(w, *n, "ll") && porter_measure(w, *n - 1) > 1) { *n -= 1; }
}

// NLTK: irregular forms, looked up before any step
static inline int porter_irregular(char* w, int* n) {
    static const char* const table[][2] = {
        {"skies", "sky"}, {"sky", "sky"}, {"dying", "die"}, {"lying", "lie"}, {"tying", "tie"},
        {"news", "news"}, {"innings", "inning"}, {"inning", "inning"}, {"outings", "outing"},
        {"outing", "outing"}, {"cannings", "canning"}, {"canning", "canning"}, {"howe", "howe"},
        {"proceed", "proceed"}, {"exceed", "exceed"}, {"succeed", "succeed"},
    };
    for (int i = 0; i < PORTER_COUNT(table); i++) {
        int k = (int)strlen(table[i][0]);
        if (k == *n && memcmp(w, table[i][0], (size_t)k) == 0) {
            int v = (int)strlen(table[i][1]);  // never longer than the key
            memcpy(w, table[i][1], (size_t)v);
            *n = v;
            return 1;
        }
    }
    return 0;
}

// stems w[0, n) in place (lowercase ASCII expected) and returns the stem's length (<= n)
static inline int porter_stem(char* w, int n) {
    int cap = n;
    if (n <= 2 || porter_irregular(w, &n)) { return n; }  // NLTK leaves 1- and 2-letter words alone
    porter_step1a(w, &n, cap);
    porter_step1b(w, &n, cap);
    porter_step1c(w, &n, cap);
    porter_step2(w, &n, cap);
    porter_step3(w, &n, cap);
    porter_step4(w, &n, cap);
    porter_step5(w, &n);
    return n;
}

#endif // LLMC_PORTER_H
