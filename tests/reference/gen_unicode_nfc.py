"""Reference data for mcore's Unicode NFC (mcore/tokenizers/unicode_normalize.cpp) and for the
Hugging Face NFC normalizer built on it. Expected values come from Python's
unicodedata.normalize("NFC", s) (the Unicode version scripts/gen_unicode_tables.py generated
mcore's tables from) and, for token ids, from the `tokenizers` library.

Written under OUT/tokenizers/ (ragged arrays as in gen_tokenizers.py):
  nfc_inputs, nfc_expected: texts and their NFC: hand-picked cases (decomposed accents, marks
    out of canonical order, Hangul jamo, singletons, composition exclusions, blocked marks,
    text already in NFC), the canonical decomposition (NFD) of every decomposable character and
    of every Hangul syllable, and random strings over a pool of starters and marks
  nfc_changed_cps (int32) + nfc_changed_out (texts): every code point whose NFC is not itself,
    and that NFC; every other code point is its own NFC (the test checks all 0x110000)
  hf_nfc/tokenizer.json: a Qwen2-style byte-level BPE with an NFC normalizer, trained here
  hf_nfc_texts + hf_nfc_ids / _decoded / _rand_*: what `tokenizers` makes of decomposed texts
"""
import random
import unicodedata

import gen_tokenizers as gt
import numpy as np

import refutil

GROUP = "tokenizers"

# Mark and pool choices are restricted to characters of Unicode 9 and earlier: the `tokenizers`
# library's normalization tables are older than Python's (marks added since have class 0 there),
# and the token-id comparison needs both sides to agree on what NFC is.
CASES = [
    "", "e\u0301", "cafe\u0301", "Cafe\u0301 de\u0301ja\u0300 vu, nai\u0308ve re\u0301sume\u0301",
    "A\u030A", "a\u0323\u0302", "a\u0302\u0323", "o\u031B\u0301", "o\u0301\u031B", "q\u0307\u0323",
    "e\u0304\u0301", "a\u0308\u0304", "a\u0301\u0316", "a\u0316\u0301", "a\u0301\u0301",
    "a\u0305\u0301",  # blocked: U+0305 (class 230) stands between a and U+0301 (230)
    "e\u0303x\u0301", "\u0301a", "\u0301\u0300", "\u0345", "\u0345\u0301",
    "\u1100\u1161", "\u1100\u1161\u11A8", "\uAC00\u11A8", "\u1112\u1161\u11AB\u1100\u1173\u11AF",
    "\u1100\u0301\u1161", "\u1100\u1161\u0301\u11A8", "\uAC01\u11A8", "\u1161\u11A8", "\u11A8",
    "\u1100\u1100\u1161\u1161\u11A8\u11A8", "\u1113\u1161", "\u1100\u1176", "\u1100\u1161\u11C3",
    "\uAC00\u11A7", "\u1100\u1161\u11A7", "\uAC00\u11C2", "\uAC00\u11C3", "\u10FF\u1161",
    "e\u0301\u1100\u1176", "e\u0301\uAC00\u11C3",  # past the quick check: no composition
    "\u212B", "\u2126", "\u212A", "\u0340", "\u0341", "\u0343", "\u0374", "\u037E", "\u0387",
    "\u1F71", "\u2000", "\u2329", "\uF900", "\U0002F800", "\u0958", "\u0915\u093C", "\u2ADC",
    "\u2ADD\u0338", "\uFB1D", "\u05D9\u05B4", "\uFB31", "\u05D1\u05BC", "\u0344", "\u0F73",
    "\u0F75", "\u0F81", "\U0001D15E", "\U0001D157\U0001D165", "\u0F40\u0F72\u0F71",
    "\u0928\u093C", "\u0929", "\u0B47\u0B3E", "\u0B47\u0301\u0B3E", "\u0DD9\u0DCF\u0DCA",
    "\u1025\u102E", "\u03B1\u0313\u0301\u0345", "\u03B1\u0345\u0313\u0301", "\u0391\u0345",
    "\u03C9\u0342\u0314\u0345", "\u1FB3\u0313", "\u0418\u0306", "\u0438\u0306\u0306",
    "a" + "\u0301\u0316" * 12, "x" + "\u0334\u0301\u0327\u0345\u05B0" * 5,
    "café 中文 한국어 😀👍🏽 👨\u200d👩\u200d👧 ASCII only", "\u4E2D\u6587\u6D4B\u8BD5",
    "\U0001F600\u0301", "\U0001F44D\U0001F3FD\u0300", "\uFFFD\u0301", "\x00e\u0301\x00",
    "\u00E9\u0301", "\u00E9\u0323", "\u1EB9\u0301", "\u1E9B\u0323", "\u0073\u0323\u0307",
    "\u1E0B\u0323", "\u0044\u0307\u0323", "\u1E0A\u031B\u0323",
]

SENTENCES = [
    "Grüße aus München! Äpfel, Öl und Übermut. Straße, Maß.",
    "Ünïcödé naïve café résumé — Noël, déjà vu, crème brûlée, façade.",
    "Tiếng Việt có dấu: Xin chào thế giới. Người Việt Nam ở Hà Nội.",
    "한국어 텍스트입니다. 안녕하세요! 대한민국 서울특별시.",
    "Ἀθῆναι, ᾄδω, ὦ φίλε· Ἑλλάς καὶ ῥήτωρ.",
    "Español: año, niño, pingüino. Português: ação, coração, pão.",
    "Čeština: žluťoučký kůň úpěl ďábelské ódy. Polski: zażółć gęślą jaźń.",
    "Română: știință, țară. Türkçe: ğüşıöç. Dansk: Ålborg, Ærø.",
    "हिन्दी: ड़ ढ़ फ़ ज़ — नमस्ते दुनिया। ऩ ऱ ऴ",
    "日本語: がぎぐげご ぱぴぷぺぽ ガギグゲゴ パピプペポ。",
]


def nfc(s):
    return unicodedata.normalize("NFC", s)


def nfd(s):
    return unicodedata.normalize("NFD", s)


def canonically_decomposable():
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            out.append(cp)
    return out


def random_texts(rng, pool, count, max_len):
    return ["".join(rng.choice(pool) for _ in range(rng.randrange(1, max_len + 1)))
            for _ in range(count)]


def mark_pool():
    """Starters that compose, precomposed letters, marks of many classes, Hangul jamo and
    syllables, singletons and excluded characters, CJK, emoji and ASCII."""
    pool = list("aeiouyAEOUnczswgkrl ")
    pool += [chr(c) for c in range(0x300, 0x346)]  # classes 1, 202, 216, 220, 230, 232, 240...
    pool += ["\u05B0", "\u05BC", "\u05C1", "\u093C", "\u0F71", "\u0F72", "\u0F74", "\u0F80",
             "\u3099", "\u309A", "\u0B3E", "\u0B47", "\u0DCA", "\u0DCF", "\u0DD9", "\u102E",
             "\u1025", "\u0915", "\u0928", "\u05D1", "\u05D9", "\u0F40", "\u304B", "\u30CF"]
    pool += ["\u03B1", "\u03C9", "\u0391", "\u0418", "\u0438", "\u0435"]
    pool += [chr(c) for c in range(0x1100, 0x1113)] + [chr(c) for c in range(0x1161, 0x1176)]
    pool += [chr(c) for c in range(0x11A8, 0x11C3, 3)] + ["\u1176", "\u11A7", "\u11C2", "\u11C3"]
    pool += ["\uAC00", "\uAC01", "\uD7A3", "\uB098", "\uAC1C"]
    pool += ["\u00E9", "\u00C5", "\u1EA0", "\u1E9B", "\u01D5", "\u1F00", "\u0112", "\u00E4"]
    pool += ["\u212B", "\u2126", "\u0340", "\u0958", "\u2ADC", "\u0344", "\u0F73", "\uF900"]
    pool += ["\u4E2D", "\U0001F600", "\u200D", "\uFFFD"]
    return pool


def nfc_cases(rng):
    inputs = list(CASES) + SENTENCES + [nfd(s) for s in SENTENCES]
    inputs += [nfd(chr(cp)) for cp in canonically_decomposable()]
    inputs += [nfd(chr(cp)) for cp in range(0xAC00, 0xD7A4)]
    pool = mark_pool()
    inputs += random_texts(rng, pool, 4000, 8)
    inputs += random_texts(rng, pool, 200, 40)
    return inputs


def hf_nfc_texts(rng):
    """Decomposed and scrambled text for the tokenizer, each one that `tokenizers` and
    unicodedata normalize alike (checked, so that a difference of Unicode versions shows here
    rather than as a tokenizer mismatch)."""
    from tokenizers import normalizers

    pool = mark_pool()
    texts = list(CASES) + [nfd(s) for s in SENTENCES] + SENTENCES
    texts += [nfd(s) + " <|endoftext|> " + s for s in SENTENCES[:3]]
    texts += [" ".join(random_texts(rng, pool, 6, 6)) for _ in range(300)]
    lib = normalizers.NFC()
    for t in texts:
        assert lib.normalize_str(t) == nfc(t), f"tokenizers and unicodedata disagree on NFC of {t!r}"
    return texts


def generate(out):
    from tokenizers import Regex, normalizers, pre_tokenizers, processors

    rng = random.Random(20240615)
    inputs = nfc_cases(rng)
    gt.save_texts(out, "nfc_inputs", inputs)
    gt.save_texts(out, "nfc_expected", [nfc(s) for s in inputs])

    changed = [cp for cp in range(0x110000)
               if not 0xD800 <= cp <= 0xDFFF and nfc(chr(cp)) != chr(cp)]
    refutil.save(out, GROUP, "nfc_changed_cps", np.array(changed, dtype=np.int32))
    gt.save_texts(out, "nfc_changed_out", [nfc(chr(cp)) for cp in changed])

    # Qwen2's pipeline (the regex as in gen_tokenizers.py, which mcore recognizes), trained on
    # fortunes plus composed multilingual text so that composed letters have merges of their own.
    qwen_re = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    train, _ = gt.collect(random.Random(1234))
    train = train[:4000] + SENTENCES * 20
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(qwen_re), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok = gt.train_byte_level(train, 1500, pre, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              normalizer=normalizers.NFC())
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    d = out / GROUP / "hf_nfc"
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    texts = hf_nfc_texts(rng)
    gt.save_texts(out, "hf_nfc_texts", texts)
    gt.hf_reference(out, "hf_nfc", tok, texts, rng)
