#!/usr/bin/env python3
"""dev/check_card_snippet.py — the model card's usage snippet (llmc/hub.h hub_card_usage) runs as written
(issue 25): the ```python block under "## Use" in an exported directory's README.md.

    python3 dev/check_card_snippet.py --dir DIR [--spm spiece.model] [--prompt TEXT] [--train-bin ./train_t5]
                                      [--tokenizer-only]
    python3 dev/check_card_snippet.py --train-bin ./train_t5 [--spm spiece.model]

With --dir, the directory train_t5 exported:
  - the card has one python block, no pipeline("summarization") (transformers 5 removed that task), and
    its generate() call passes generation_config.json's settings (read off the code, without running it)
  - the tokenizer part (down to "# the model (needs PyTorch)") runs in a Python where PyTorch cannot be
    imported (what CI has); its prompt is --prompt (the run's; default the directory's prompt.json's) and its
    input_ids are sentencepiece's ids of the prompt around the dialogue, </s> last: the source the model
    was trained on
  - where PyTorch is installed and --tokenizer-only is not given, the whole snippet runs, and the summary it
    prints is the one `train_t5 --model DIR --summarize -` prints with the same prompt and settings
Without --dir: exports a small random FLAN-T5 (--d-model 64) with a prompt and generation settings that are
not the defaults into a temporary directory, and checks it all (PyTorch needed).
`make test_hub` runs the --tokenizer-only form on its exports. Exit 0 = every check passed, 1 = one failed,
2 = could not run.
"""
import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile

from hub_summarize import GEN_KEYS, dir_prompt, generate_kwargs  # dev/hub_summarize.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_LINE = "# the model (needs PyTorch)"  # llmc/hub.h HUB_SNIPPET_MODEL_LINE
PLACEHOLDER = '"PATH/TO/THIS/DIR"'
# generate() keyword -> train_t5 flag (generation_config.json's names are generate()'s)
GEN_FLAGS = dict(zip(GEN_KEYS, ("--num-beams", "--max-new-tokens", "--min-new-tokens", "--no-repeat-ngram",
                                "--repetition-penalty", "--length-penalty", "--early-stopping")))
# the prompt and settings of the export made without --dir: none of them the default
EXPORT_PROMPT = "Dialogue:\n{dialogue}\n\nWhat was said, in brief?  "
EXPORT_GEN = ["--num-beams", "3", "--max-new-tokens", "10", "--min-new-tokens", "2", "--no-repeat-ngram", "2",
              "--repetition-penalty", "1.3", "--length-penalty", "0.6", "--early-stopping", "1", "--max-src-len", "64"]
failed = []


def check(what, ok, detail=""):
    print(f"{what:<78} {'OK' if ok else 'FAIL'}{'  ' + detail if detail else ''}")
    if not ok:
        failed.append(what)
    return ok


def snippet(d):
    """the python block under '## Use' of d/README.md: (tokenizer part, whole), the directory in place of the
    placeholder"""
    text = open(os.path.join(d, "README.md"), encoding="utf-8").read()
    use = text.split("\n## Use\n", 1)[1] if "\n## Use\n" in text else ""
    blocks = [b.split("\n```", 1)[0] for b in use.split("```python\n")[1:]]
    if not check("README.md: one ```python block under ## Use", len(blocks) == 1, f"{len(blocks)} found" if len(blocks) != 1 else ""):
        return None, None
    code = blocks[0]
    check("the snippet has no pipeline(\"summarization\") (removed in transformers 5)", "pipeline" not in code)
    ok = PLACEHOLDER in code and MODEL_LINE in code
    if not check(f"the snippet names the directory {PLACEHOLDER} and has the line '{MODEL_LINE}'", ok):
        return None, None
    code = code.replace(PLACEHOLDER, repr(os.path.abspath(d)))
    return code.split(MODEL_LINE)[0], code


def snippet_generate_kwargs(code):
    """the keywords of the snippet's model.generate(...) call, as Python values"""
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "generate":
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    return None


def check_settings(d, code):
    kw = snippet_generate_kwargs(code)
    if not check("the snippet calls model.generate()", kw is not None):
        return
    # what the snippet leaves out must be transformers' default; beam-only settings matter under beam search only
    defaults = {"min_new_tokens": 0, "no_repeat_ngram_size": 0, "repetition_penalty": 1.0, "length_penalty": 1.0,
                "early_stopping": False}
    want = generate_kwargs(d)
    got = {k: kw.get(k, defaults.get(k)) for k in want}
    check("generate()'s settings in the snippet == generation_config.json", got == want, f"{got} vs {want}" if got != want else str(kw))


def run_python(code, hide_torch):
    prelude = "import sys\nsys.modules['torch'] = None  # as where PyTorch is not installed\n" if hide_torch else ""
    coda = "\nimport json as _j\nprint('@@' + _j.dumps({'prompt': prompt, 'dialogue': dialogue, 'input_ids': list(input_ids)}))\n"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-c", prelude + code + coda], capture_output=True, text=True, env=env)


def check_tokenizer_part(d, part, spm_path, prompt, max_src):
    r = run_python(part, hide_torch=True)
    line = next((x[2:] for x in r.stdout.splitlines() if x.startswith("@@")), None)
    if not check("the tokenizer part runs where PyTorch cannot be imported", r.returncode == 0 and line is not None,
                 r.stderr.strip()[-300:]):
        return None
    got = json.loads(line)
    check("the snippet's prompt is the run's --prompt", got["prompt"] == prompt,
          f"{got['prompt']!r} vs {prompt!r}" if got["prompt"] != prompt else "")
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=spm_path)
    ids = sp.encode(prompt.replace("{dialogue}", got["dialogue"]))[:max_src - 1] + [1]  # prepro + the loader's cut
    check(f"its input_ids == sentencepiece's ids of the prompted dialogue + </s> ({len(ids)} tokens)", got["input_ids"] == ids,
          f"{got['input_ids'][-6:]} vs {ids[-6:]}" if got["input_ids"] != ids else "")
    return got


def check_whole(d, code, got, train_bin, prompt, max_src):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if not check("the whole snippet runs (PyTorch)", r.returncode == 0 and r.stdout.strip() != "",
                 r.stderr.strip()[-300:] if r.returncode else ""):
        return
    summary = r.stdout.rstrip("\n").split("\n")[-1]
    gen = json.load(open(os.path.join(d, "generation_config.json")))
    flags = [x for k, f in GEN_FLAGS.items() for x in (f, str(int(gen[k]) if isinstance(gen[k], bool) else gen[k]))]
    c = subprocess.run([train_bin, "--model", d, "--summarize", "-", "--prompt", prompt, "--max-src-len", str(max_src), *flags],
                       input=got["dialogue"], capture_output=True, text=True, cwd=REPO)
    check("its summary == train_t5 --summarize's (same prompt and settings)", c.returncode == 0 and c.stdout.rstrip("\n") == summary,
          f"{summary!r} vs {c.stdout.rstrip()!r}" + (f" ({c.stderr.strip()[-200:]})" if c.returncode else ""))


def check_dir(d, spm_path, prompt, train_bin, tokenizer_only):
    part, code = snippet(d)
    if code is None:
        return
    check_settings(d, code)
    max_src = json.load(open(os.path.join(d, "tokenizer_config.json"))).get("model_max_length", 512)
    tree = ast.parse(part)  # the cut the snippet makes: max_length=N in the tokenizer call
    max_src = next((k.value.value for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords
                    if k.arg == "max_length"), max_src)
    got = check_tokenizer_part(d, part, spm_path, prompt, max_src)
    if got is None or tokenizer_only:
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        print("(no PyTorch: the whole snippet is left to a machine that has it)")
        return
    if check("--train-bin given (the summary is compared with train_t5's)", train_bin is not None):
        check_whole(d, code, got, train_bin, prompt, max_src)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir")
    ap.add_argument("--spm", default=os.path.join(REPO, "..", "shared", "data", "t5", "spiece.model"))
    ap.add_argument("--prompt", help="the prompt the directory was exported with (default: its prompt.json's, else "
                    "prepro_dialogsum.py's)")
    ap.add_argument("--train-bin")
    ap.add_argument("--tokenizer-only", action="store_true")
    a = ap.parse_args()
    try:
        import transformers
        import sentencepiece  # noqa: F401
    except ImportError as e:
        print(f"cannot run: {e}")
        return 2
    train_bin = os.path.abspath(a.train_bin) if a.train_bin else None
    tmp = None
    if a.dir:
        d, prompt = a.dir, a.prompt if a.prompt is not None else dir_prompt(a.dir)
    else:
        if not train_bin:
            print("cannot run: give --dir, or --train-bin to export a model")
            return 2
        tmp = tempfile.mkdtemp(prefix="t5c_card_")
        d, prompt = os.path.join(tmp, "model"), EXPORT_PROMPT
        r = subprocess.run([train_bin, "--model", "flan-t5-small", "--d-model", "64", "--num-heads", "2", "--d-kv", "32",
                            "--d-ff", "128", "--num-layers", "2", "--save-hf", d, "--tokenizer", a.spm, "--prompt", prompt,
                            *EXPORT_GEN], capture_output=True, text=True, cwd=REPO)
        if r.returncode != 0:
            print(f"cannot run: the export failed: {r.stderr.strip()[-300:]}")
            shutil.rmtree(tmp, ignore_errors=True)
            return 2
    print(f"{d}: transformers {transformers.__version__}")
    try:
        check_dir(d, a.spm, prompt, train_bin, a.tokenizer_only)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print("all checks passed" if not failed else f"{len(failed)} check(s) FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
