"""Reference data for mcore's tokenizers: small tokenizers trained here with the real libraries
(Hugging Face `tokenizers`, `sentencepiece`) on Debian's fortunes text, a varied test corpus,
and the ids and decoded texts those libraries produce for it.

Written under OUT/tokenizers/:
  models: gpt2/{vocab.json,merges.txt}; hf_<name>/tokenizer.json; spm_<name>.model
  texts_bytes.npy (uint8, UTF-8 concatenated) + texts_offsets.npy (int64, n+1)
  <tok>_ids.npy (int32) + <tok>_ids_offsets.npy (int64): the ids of each text
  <tok>_decoded_bytes.npy + <tok>_decoded_offsets.npy: decode(ids) of each text
  <tok>_rand_ids.npy + <tok>_rand_offsets.npy, <tok>_rand_decoded_*: decoding random ids
Nothing is downloaded: training text and test text come from /usr/share/games/fortunes*.
"""
import glob
import json
import os
import pathlib
import random
import unicodedata

import numpy as np

import refutil

GROUP = "tokenizers"
FORTUNES = "/usr/share/games/fortunes"


def read_fortunes(path):
    try:
        text = open(path, encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        return []
    return [f.strip("\n") for f in text.split("\n%\n") if f.strip()]


def fortune_files():
    files = []
    for p in sorted(glob.glob(FORTUNES + "/**", recursive=True)):
        if os.path.isfile(p) and not p.endswith((".dat", ".u8")) and not os.path.islink(p):
            files.append(p)
    return files


def collect(rng):
    """Training text (a few MB at most) and test texts (a few hundred), both deterministic."""
    by_file = {p: read_fortunes(p) for p in fortune_files()}
    train, tests = [], []
    for p, fs in sorted(by_file.items()):
        fs = [f for f in fs if unicodedata.is_normalized("NFC", f)]
        if not fs:
            continue
        rng.shuffle(fs)
        train.extend(fs[:400])
        tests.extend(fs[400:403] if len(fs) > 403 else fs[:2])
    rng.shuffle(train)
    train_text = []
    size = 0
    for f in train:
        train_text.append(f)
        size += len(f.encode())
        if size > 3_000_000:
            break
    return train_text, tests


EDGE_CASES = [
    "",
    " ",
    "   ",
    "\n",
    "\n\n\n",
    "\t\t  \n  \r\n",
    "Hello world",
    " Hello  world   ",
    "Hello   world\n\n  next line\t\ttabbed",
    "I'm here, you're there, they've gone, we'll see, he'd know, it's, don't",
    "I'M LOUD, YOU'RE LOUDER, IT'S, WE'LL, SHE'D, THEY'VE",
    "'s 't 're 've 'm 'll 'd ''s '",
    "numbers 1 12 123 1234 12345678901234567890 3.14159 1,000,000 ² ¾ Ⅻ ٣٤٥ १२३",
    "Grüße aus München! Äpfel, Öl und Übermut. Straße, Maß, ß.",
    "Ünïcödé naïve café résumé — “quotes” ‘single’ «guillemets» …",
    "中文测试：我爱自然语言处理。今天天气很好！",
    "日本語のテキストです。カタカナとひらがな、漢字。",
    "한국어 텍스트입니다. 안녕하세요!",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇩🇪 ❤️ ✨ 🎉🎉🎉",
    "नमस्ते दुनिया, यह हिंदी है।",
    "مرحبا بالعالم، هذا نص عربي.",
    "Tiếng Việt có dấu: Xin chào thế giới.",
    "def f(x):\n    return x ** 2  # square\n\nif __name__ == '__main__':\n\tprint(f(3))\n",
    "int main(int argc, char** argv) {\n  std::vector<int> v{1, 2, 3};\n  return v[0] != 1;\n}\n",
    "x=[a+b for a,b in zip(xs,ys)];y={'k':v}&&z||w!=q<=r>=s->t::u",
    "<|endoftext|>Document two<|endoftext|> trailing",
    "<s> begins and ends </s> with <unk> pieces",
    "<|begin_of_text|>system<|eot_id|>user text<|end_of_text|>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "a <mask> b<mask>c   <mask>   d",
    "hello world and Hello World",
    "nbsp\u00a0between\u00a0words, ideographic\u3000space, thin\u2009space, em\u2003space",
    "zero\u200bwidth joiner\u200d and bom\ufeff and nul-free control \x07 bell",
    "ſtraße 'ſ 'S 'ſ done",
    "https://example.com/path?query=1&b=two#frag user@example.org",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ab" * 150,
    "🤖" * 40,
    "x" + " " * 300 + "y",
    "\r\n".join(["line"] * 10),
    "mixed 中文 and English 123 and 😀 emoji",
    "!!!???...,,,;;;:::---___===+++***&&&^^^%%%$$$###@@@",
    "  leading spaces and trailing spaces  ",
    "\u0085next line\u2028line sep\u2029para sep",
    "ÀÉÎÕÜ àéîõü ÇçÑñ",
    "ﬁ ﬂ ﬃ ligatures, full-width ＡＢＣ１２３, ① ② ③",
]


def save_ragged(out, name, seqs, dtype):
    flat = np.concatenate([np.asarray(s, dtype=dtype) for s in seqs]) if seqs else np.zeros(0, dtype)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    refutil.save(out, GROUP, name, flat.astype(dtype))
    refutil.save(out, GROUP, name + "_offsets", offsets)


def save_texts(out, name, texts):
    save_ragged(out, name, [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts], np.uint8)


def train_byte_level(train, vocab_size, pre_tokenizer, specials, ignore_merges=False, normalizer=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    if normalizer is not None:
        tok.normalizer = normalizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(train, trainer=trainer)
    return tok


def train_spm_style_bpe(train, vocab_size):
    """A Llama-2-like BPE (no pre-tokenizer, ▁ for spaces, <0xXX> byte fallback, fused unk)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  show_progress=False)
    # Train on a corpus without the rarest characters, so that byte fallback is exercised.
    tok.train_from_iterator(train, trainer=trainer)
    j = json.loads(tok.to_str())
    # The byte tokens are ordinary vocabulary entries in Llama-2's tokenizer, not added tokens.
    j["added_tokens"] = [a for a in j["added_tokens"] if a["content"] in ("<unk>", "<s>", "</s>")]
    return j


def hf_reference(out, name, tok, texts, rng):
    save_ragged(out, f"{name}_ids", [tok.encode(t).ids for t in texts], np.int32)
    save_texts(out, f"{name}_decoded", [tok.decode(tok.encode(t).ids, skip_special_tokens=False) for t in texts])
    n = tok.get_vocab_size(with_added_tokens=True)
    rand = [[rng.randrange(n) for _ in range(rng.randrange(1, 30))] for _ in range(50)]
    save_ragged(out, f"{name}_rand_ids", rand, np.int32)
    save_texts(out, f"{name}_rand_decoded", [tok.decode(r, skip_special_tokens=False) for r in rand])
    refutil.save(out, GROUP, f"{name}_vocab_size", np.array([n], dtype=np.int64))


class MegatronSentencePiece:
    """Megatron-LM's _SentencePieceTokenizer (megatron/training/tokenizer/tokenizer.py), over the
    sentencepiece package: the logic copied, the library real."""

    def __init__(self, sp, vocab_extra_ids=0):
        self.sp = sp
        self.vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
        self.special = {}
        self.inv_special = {}

        def add(t):
            if t not in self.vocab:
                self.vocab[t] = len(self.vocab)
            self.special[t] = self.vocab[t]
            self.inv_special[self.vocab[t]] = t

        for t in ("<CLS>", "<SEP>", "<EOD>", "<MASK>"):
            add(t)
        self.eod = self.vocab["<EOD>"]
        for fn, fallback in ((sp.pad_id, "<PAD>"), (sp.bos_id, "<BOS>"), (sp.eos_id, "<EOS>")):
            i = fn()
            add(sp.id_to_piece(i) if 0 <= i < sp.get_piece_size() else fallback)
        for i in range(vocab_extra_ids):
            add(f"<extra_id_{i}>")

    def tokenize(self, text):
        ids, idx = [], 0
        while True:
            indices = {}
            for token in self.special:
                try:
                    indices[token] = text[idx:].index(token)
                except ValueError:
                    continue
            if not indices:
                break
            nxt = min(indices, key=indices.get)
            nidx = idx + indices[nxt]
            ids.extend(self.sp.encode_as_ids(text[idx:nidx]))
            ids.append(self.special[nxt])
            idx = nidx + len(nxt)
        ids.extend(self.sp.encode_as_ids(text[idx:]))
        return ids

    def detokenize(self, ids):
        text, last = "", 0
        for i, id_ in enumerate(ids):
            if id_ in self.inv_special:
                text += self.sp.decode_ids(ids[last:i]) + " "
                text += self.inv_special[id_] + " "
                last = i + 1
        return text + self.sp.decode_ids(ids[last:])


def spm_reference(out, name, model_path, texts, rng):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    ids = [sp.encode_as_ids(t) for t in texts]
    save_ragged(out, f"{name}_ids", ids, np.int32)
    save_texts(out, f"{name}_decoded", [sp.decode_ids(i) for i in ids])
    n = sp.get_piece_size()
    rand = [[rng.randrange(n) for _ in range(rng.randrange(1, 30))] for _ in range(50)]
    save_ragged(out, f"{name}_rand_ids", rand, np.int32)
    save_texts(out, f"{name}_rand_decoded", [sp.decode_ids(r) for r in rand])
    meg = MegatronSentencePiece(sp, vocab_extra_ids=3)
    mids = [meg.tokenize(t) for t in texts]
    save_ragged(out, f"{name}_megatron_ids", mids, np.int32)
    save_texts(out, f"{name}_megatron_decoded", [meg.detokenize(i) for i in mids])
    refutil.save(out, GROUP, f"{name}_megatron_meta",
                 np.array([len(meg.vocab), meg.eod, sp.get_piece_size()], dtype=np.int64))


def train_spm(train, path_prefix, model_type, vocab_size):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train), model_prefix=str(path_prefix), model_type=model_type,
        vocab_size=vocab_size, byte_fallback=True, character_coverage=0.995,
        input_sentence_size=20000, shuffle_input_sentence=False, num_threads=2,
        max_sentence_length=8192, minloglevel=2, split_digits=(model_type == "bpe"))


def byte_reference(out, texts):
    """megatron-core's ByteLevelTokenizer (defaults: vocab 512, eos=eod=0, pad=1)."""
    def ids_to_text(ids, special_start=512):
        ids = [x for x in ids if x < special_start]
        return bytes(ids).decode("utf-8", errors="ignore").rstrip()
    ids = [list(t.encode("utf-8")) for t in texts]
    save_texts(out, "byte_decoded", [ids_to_text(i) for i in ids])
    rng = random.Random(5)
    rand = [[rng.randrange(256) if rng.random() < 0.9 else rng.randrange(512, 600)
             for _ in range(rng.randrange(1, 30))] + [32, 9] for _ in range(50)]
    save_ragged(out, "byte_rand_ids", rand, np.int32)
    save_texts(out, "byte_rand_decoded", [ids_to_text(r) for r in rand])


def generate(out: pathlib.Path):
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers, processors

    d = out / GROUP
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    train, tests = collect(rng)
    texts = EDGE_CASES + tests
    save_texts(out, "texts", texts)

    # 1. GPT-2: byte-level BPE, written both as tokenizer.json and as vocab.json + merges.txt.
    gpt2 = train_byte_level(train, 3000, pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"])
    (d / "gpt2").mkdir(exist_ok=True)
    gpt2.model.save(str(d / "gpt2"))
    # The GPT2BPETokenizer reference: the same vocab/merges, no added tokens (Megatron's
    # GPT2BPETokenizer does not parse special tokens in text).
    from tokenizers import decoders, models
    plain = Tokenizer(models.BPE.from_file(str(d / "gpt2" / "vocab.json"), str(d / "gpt2" / "merges.txt")))
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    plain.decoder = decoders.ByteLevel()
    hf_reference(out, "gpt2bpe", plain, texts, rng)

    # 2. HF GPT-2 style with added tokens: special <|endoftext|>, an lstrip <mask> (RoBERTa), a
    #    normalized non-special "hello world", and add_prefix_space.
    g = Tokenizer.from_str(gpt2.to_str())
    g.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    g.post_processor = processors.ByteLevel(trim_offsets=True)
    g.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, special=True, normalized=False)])
    g.add_tokens([AddedToken("hello world", normalized=True)])
    (d / "hf_gpt2").mkdir(exist_ok=True)
    g.save(str(d / "hf_gpt2" / "tokenizer.json"))
    hf_reference(out, "hf_gpt2", g, texts, rng)

    # 3. Llama-3 style: Split(cl100k regex) + ByteLevel without regex, ignore_merges, BOS template.
    llama3_re = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(llama3_re), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    l3 = train_byte_level(train, 3000, pre, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
                          ignore_merges=True)
    l3.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", l3.token_to_id("<|begin_of_text|>"))])
    (d / "hf_llama3").mkdir(exist_ok=True)
    l3.save(str(d / "hf_llama3" / "tokenizer.json"))
    hf_reference(out, "hf_llama3", l3, texts, rng)

    # 4. Qwen2 style: NFC normalizer, single-digit split regex.
    qwen_re = llama3_re.replace(r"\p{N}{1,3}", r"\p{N}")
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(qwen_re), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    q = train_byte_level(train, 3000, pre, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                         normalizer=normalizers.NFC())
    q.post_processor = processors.ByteLevel(trim_offsets=False)
    (d / "hf_qwen2").mkdir(exist_ok=True)
    q.save(str(d / "hf_qwen2" / "tokenizer.json"))
    hf_reference(out, "hf_qwen2", q, texts, rng)

    # 5. SentencePiece-style BPE, legacy Llama-2 layout: Prepend/Replace normalizers, no
    #    pre-tokenizer, byte fallback, <s> template, Replace/ByteFallback/Fuse/Strip decoder.
    spj = train_spm_style_bpe(train, 3000)
    bos = next(a["id"] for a in spj["added_tokens"] if a["content"] == "<s>")
    legacy = dict(spj)
    legacy["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    legacy["pre_tokenizer"] = None
    legacy["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    legacy["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [bos], "tokens": ["<s>"]}}}
    (d / "hf_spm_legacy").mkdir(exist_ok=True)
    (d / "hf_spm_legacy" / "tokenizer.json").write_text(json.dumps(legacy, ensure_ascii=False))
    hf_reference(out, "hf_spm_legacy", Tokenizer.from_str(json.dumps(legacy)), texts, rng)

    # 6. The same model in the newer Metaspace layout (prepend_scheme "first", no split).
    meta = dict(spj)
    meta["normalizer"] = None
    meta["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    meta["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    meta["post_processor"] = legacy["post_processor"]
    (d / "hf_metaspace").mkdir(exist_ok=True)
    (d / "hf_metaspace" / "tokenizer.json").write_text(json.dumps(meta, ensure_ascii=False))
    hf_reference(out, "hf_metaspace", Tokenizer.from_str(json.dumps(meta)), texts, rng)

    # 7. SentencePiece models (unigram and BPE) for SentencePieceTokenizer.
    for kind in ("unigram", "bpe"):
        train_spm(train, d / f"spm_{kind}", kind, 4000)
        spm_reference(out, f"spm_{kind}", d / f"spm_{kind}.model", texts, rng)

    byte_reference(out, texts)
