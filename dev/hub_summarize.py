"""dev/hub_summarize.py — what the model card's usage snippet (llmc/hub.h hub_card_usage) does, as functions
for the dev checks (dev/check_hub_dir.py, dev/check_card_snippet.py): the directory's prompt, the source the
model was trained on, generation_config.json's settings as generate() keywords, and a summarizer built from
AutoTokenizer + AutoModelForSeq2SeqLM.generate() that runs on transformers 4.x and 5.x (5.x has no
pipeline("summarization"); 4.x's overrides generation_config.json and keeps a token for trailing whitespace).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from prepro_dialogsum import DEFAULT_PROMPT  # noqa: E402,F401  (llmc/prompt.h holds the same one)

# generation_config.json's settings, under the names generate() takes them; the beam-only ones matter (and are
# passed) under beam search only: greedy search ignores them and transformers warns of them
GEN_KEYS = ("num_beams", "max_new_tokens", "min_new_tokens", "no_repeat_ngram_size", "repetition_penalty",
            "length_penalty", "early_stopping")
BEAM_ONLY = ("length_penalty", "early_stopping")


def dir_prompt(d):
    """the prompt DIR records (prompt.json, written by the trainers), else prepro_dialogsum.py's default"""
    path = os.path.join(d, "prompt.json")
    if not os.path.exists(path):
        return DEFAULT_PROMPT
    with open(path, encoding="utf-8") as f:
        return json.load(f)["prompt"]


def source(prompt, dialogue):
    """the text the model was trained on for `dialogue`: sentencepiece drops trailing whitespace, transformers
    4's fast tokenizer would keep a token for it"""
    return prompt.replace("{dialogue}", dialogue).rstrip()


def generate_kwargs(d):
    """generation_config.json's settings as generate() keywords"""
    with open(os.path.join(d, "generation_config.json"), encoding="utf-8") as f:
        gen = json.load(f)
    return {k: gen[k] for k in GEN_KEYS if k not in BEAM_ONLY or gen["num_beams"] > 1}


def summarizer(d, max_src=None):
    """dialogue -> summary with DIR's tokenizer, prompt and generation settings (PyTorch needed); sources cut at
    max_src tokens, </s> last (default: the tokenizer's model_max_length)"""
    import torch
    from transformers import AutoTokenizer, AutoModelForSeq2SeqLM
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForSeq2SeqLM.from_pretrained(d).float().eval()  # fp32 as train_t5 (5.x loads bf16 files as bf16)
    prompt, kw = dir_prompt(d), generate_kwargs(d)
    cut = {"max_length": max_src} if max_src else {}

    def run(dialogue):
        inputs = tok(source(prompt, dialogue), truncation=True, return_tensors="pt", **cut)
        with torch.no_grad():
            out = model.generate(**inputs, **kw)
        return tok.decode(out[0], skip_special_tokens=True)
    return run

