#!/usr/bin/env python3
"""Tokenizer fixtures, test corpus and golden ids from the Rust `tokenizers` library.

Reference versions: tokenizers 0.23.3 (the Python binding of the Rust library, which is
what produces the ids), transformers 5.24.0 (not used for ids). Written into every golden
file's first line.

What it writes (all deterministic; running it twice gives byte-identical files):

- `Fixtures/text/corpus.txt`: the test corpus, one line per test case, lines separated by
  "\\n" only (lines may hold "\\r", "\\t", U+2028, U+0085 and other separators; split on
  "\\n", never with `splitlines`). Hand-written sentences (below) in many scripts, plus
  seeded combinations of them with numbers, whitespace runs, emoji, code, long words,
  case changes, NFD forms, special-token strings and control characters.
- `Fixtures/text/training.txt`: a different text made the same way (other seed, a subset
  of the sentences plus training-only sentences), used only to train the fixture models,
  so unknown words, byte fallback and [UNK] occur in the test corpus.
- `Fixtures/tokenizers/<name>/tokenizer.json` (+ `tokenizer_config.json`): six small
  tokenizers (total vocabulary with added tokens at most 1024) trained by `tokenizers`'
  trainers and configured like the real files they imitate:
    llama3-bpe     byte-level BPE, Split(Llama 3 pattern, Isolated) + ByteLevel(use_regex false),
                   ignore_merges true, TemplateProcessing "<|begin_of_text|> $A"
    gpt2-bpe       byte-level BPE, ByteLevel(use_regex true) pre-tokenizer, ByteLevel
                   post-processor only, <|endoftext|> plus two non-special added tokens
                   (one single_word + normalized, one rstrip)
    qwen2-bpe      NFC normalizer, Split(Qwen2 pattern, Isolated) + ByteLevel(use_regex false)
    llama2-spm     SentencePiece-style BPE: Prepend("▁") + Replace(" ", "▁") normalizer, no
                   pre-tokenizer, byte_fallback, fuse_unk, <unk>, "<s> $A" template, the
                   Replace/ByteFallback/Fuse/Strip decoder
    mistral-spm    the same model with a Metaspace pre-tokenizer (prepend_scheme "first",
                   split false), [INST]/[/INST] special tokens, Metaspace decoder chain
    bert-wordpiece uncased BERT normalizer, BertPreTokenizer, WordPiece "##",
                   [PAD]=0 [UNK] [CLS] [SEP] [MASK] (lstrip), "[CLS] $A [SEP]" template
- `Fixtures/golden/tokenizers/variants.json`: for components the six fixtures do not use (other Metaspace
  schemes, NFKC/NFD/NFKD, Lowercase, Strip, StripAccents, regex Replace, every Split behavior, an ICU-only
  regex, BertProcessing, RobertaProcessing, a cased BERT normalizer, WhitespaceSplit, ...), a fixture with
  those components swapped in and the ids of a few texts.
- `Fixtures/golden/tokenizers/fuzz.jsonl`: 1,500 seeded random concatenations of edge-case pieces (`FUZZ_PIECES`:
  line breaks, contractions, every letter and number category, marks, scalars newer than Oniguruma's Unicode
  tables, controls, emoji, added-token strings) with the ids of all six tokenizers.
- `Fixtures/golden/tokenizers/<name>.jsonl`: a header line, then one JSON object per corpus
  line: {"line": i, "ids": encode(line).ids} and, for some lines, "ids_no_special"
  (add_special_tokens False), "truncated": {"max_length": m, "ids": ...} (with
  enable_truncation(m)), "decoded" / "decoded_skip" (decode(ids) with
  skip_special_tokens False / True).

usage: $REFERENCE_PYTHON Scripts/reference/make_tokenizer_fixtures.py
"""
import json
import os
import random
import unicodedata

os.environ["TOKENIZERS_PARALLELISM"] = "false"

import tokenizers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# As in Qwen/Qwen2-0.5B tokenizer.json: digits one at a time.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

MAX_VOCAB = 1024

SENTENCES = [
    # English, contractions, case
    "The quick brown fox jumps over the lazy dog.",
    "She'll be there at 5 o'clock, won't she? I'm sure she's coming.",
    "DON'T PANIC! WE'RE ALL GOING TO BE FINE, THEY'VE SAID SO.",
    "I'd've thought you'd know: it's the user's responsibility.",
    "You're right; they're late, and we've missed the 10:45 train.",
    "Hello, World! Hello,World!Hello   World",
    "A man, a plan, a canal: Panama.",
    "It'S oDd To WrItE lIkE tHiS, iSn'T iT?",
    "Weights are quantized to 4 bits with a group size of 128.",
    "The checkpoint has 7,241,732,096 parameters and weighs 13.5 GB.",
    "Compression ratios of 3.2x to 4.8x were measured on 12 models.",
    "Email me at jane.doe@example.com or visit https://example.org/path?q=1&r=2#frag.",
    "Prices: $19.99, €5,00, £3.50, ¥1200, ₹250 and ₿0.0001.",
    "Temperature: -12.5°C (9.5°F), humidity 87%, wind 15 km/h.",
    "He said \"hello\" and she replied 'goodbye' — then left…",
    "Version 2.0.1-beta+build.345 was released on 2024-03-15T12:34:56Z.",
    "Call +1 (555) 123-4567 or 0800 123 456 before 23:59.",
    "Pi is approximately 3.14159265358979323846264338327950288419716939937510.",
    "1234567890123456789012345678901234567890",
    "0.000001 1e-9 6.022e23 -42 +17 1/3 3:2 50% 2^10=1024",
    # Latin with accents
    "Café, naïve, résumé, façade, jalapeño, Zürich, São Paulo, Kraków.",
    "Ça va très bien, merci ! Où est la gare ? À bientôt.",
    "Der Fußgänger überquert die Straße während des Gewitters.",
    "El niño comió paella en la playa de Málaga con sus abuelos.",
    "Ångström, Øresund, Æsir, þorn, ðæt, Łódź, Ştefan, Đorđe.",
    "Việt Nam có nhiều món ăn ngon như phở và bánh mì.",
    "Türkçe öğrenmek çok güzel; İstanbul'u ziyaret ettim.",
    "Čeština: příliš žluťoučký kůň úpěl ďábelské ódy.",
    # Cyrillic, Greek
    "Привет, мир! Как дела? Всё хорошо, спасибо.",
    "Съешь же ещё этих мягких французских булок да выпей чаю.",
    "Україна, Київ, їжак, ґанок — українська мова.",
    "Γειά σου Κόσμε! Η γρήγορη καφέ αλεπού πηδάει.",
    "ΟΔΥΣΣΕΥΣ και ἄνδρα μοι ἔννεπε, Μοῦσα, πολύτροπον.",
    # Arabic, Hebrew
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "اللغة العربية جميلة جداً، وهي لغة القرآن الكريم.",
    "שלום עולם! מה שלומך היום?",
    "עברית נכתבת מימין לשמאל, עם ניקוד: שָׁלוֹם.",
    # CJK, Japanese, Korean
    "你好，世界！今天天气很好。",
    "机器学习模型的压缩可以减少内存使用。",
    "繁體中文：臺灣、香港與澳門使用。",
    "こんにちは世界。今日はいい天気ですね。",
    "カタカナとひらがなと漢字を混ぜて書きます。",
    "ｶﾀｶﾅ半角とＦＵＬＬＷＩＤＴＨ全角　文字。",
    "안녕하세요, 세계! 오늘 날씨가 좋네요.",
    "한국어는 한글로 쓰며 띄어쓰기를 합니다.",
    # Indic, Thai, others
    "नमस्ते दुनिया! आप कैसे हैं?",
    "हिन्दी भाषा देवनागरी लिपि में लिखी जाती है।",
    "সবাইকে শুভেচ্ছা, বাংলা ভাষা।",
    "தமிழ் ஒரு பழமையான மொழி.",
    "สวัสดีชาวโลก วันนี้อากาศดีมาก",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "ሰላም ለዓለም፤ አማርኛ።",
    "Բարեւ աշխարհ, ქართული ენა.",
    # Emoji
    "I love this 😍😍😍 so much!!! 🎉🎉",
    "Family: 👨‍👩‍👧‍👦, couple: 👩‍❤️‍👨, flags: 🇫🇷🇯🇵🇺🇸🏳️‍🌈.",
    "Thumbs 👍🏻👍🏼👍🏽👍🏾👍🏿 and waves 👋🏽.",
    "Weather: ☀️🌧️⛈️❄️ — keycaps: 1️⃣ 2️⃣ #️⃣.",
    "🤖 + 🧠 = 🚀? Maybe. 🤷‍♀️",
    # Code
    "def encode(self, text: str) -> list[int]:",
    "    return [self.vocab[t] for t in tokens if t in self.vocab]",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "#include <stdio.h>\tint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {",
    "let ids = try tokenizer.encode(\"Hello\").map { $0 + 1 }",
    "{\"name\": \"tiny\", \"vocab_size\": 1024, \"layers\": [1, 2, 3], \"ok\": true}",
    "$ cat file.txt | grep -E '^[a-z]+$' | sort -u > out.txt && echo done",
    "if [ -f ~/.bashrc ]; then source ~/.bashrc; fi  # comment",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "x = np.linspace(0, 1, 101)**2 / (1 + 1e-6)",
    "<div class=\"main\"><p>Hello &amp; welcome!</p></div>",
    "C++ and C# and F# are languages; so are Objective-C and Rust.",
    "__init__ self.__dict__ __name__ == \"__main__\"",
    "camelCaseIdentifier snake_case_identifier SCREAMING_SNAKE kebab-case",
    # Special-token strings in text
    "<|begin_of_text|>Hello<|end_of_text|>",
    "The string <|endoftext|> marks the end of a document.",
    "<s> [INST] What is 2+2? [/INST] 4 </s>",
    "[CLS] the [MASK] sat on the mat [SEP]",
    "Use <unk> for unknown and [UNK] in BERT; <pad> vs [PAD].",
    "<|im_start|>user\tHi there<|im_end|><|im_start|>assistant",
    "Tokens like <|eot_id|> and <|start_header_id|>system<|end_header_id|> appear.",
    "Malformed: <|begin_of_text| and |end_of_text|> and <s and s>.",
    # Misc punctuation
    "Wait... what?!?! No way!!! (Really?) [yes] {maybe} <no>",
    "«Guillemets» „Anführungszeichen“ “curly quotes” ‘single’ 「括弧」",
    "Dashes: - – — ― and bullets • ◦ ‣ and arrows → ← ↑ ↓ ⇒",
    "Math: ∀x∈ℝ, ∃y: x² + y² ≤ 1; ∑ᵢ aᵢ = ∫₀¹ f(x) dx ≈ 0.5",
    "Roman numerals Ⅻ Ⅳ, fractions ½ ¾ ⅞, superscripts ¹²³ and circled ①②③.",
    "Ligatures: ﬁ ﬂ ﬀ ﬃ; fullwidth: ＡＢＣ１２３！",
    "tab\tseparated\tvalues\t1\t2\t3",
    "trailing spaces   ",
    "   leading spaces",
    " ",
    "",
    "a",
    ".",
]

TRAINING_ONLY = [
    "The model was trained on a mixture of web text, books and code.",
    "Quantization reduces the precision of weights from 16 bits to 4 bits.",
    "Les modèles de langue sont entraînés sur de grandes quantités de texte.",
    "Die Gewichte werden in Gruppen von 128 Werten quantisiert.",
    "Модели сжимаются без заметной потери качества.",
    "这个模型有十亿个参数。",
    "모델 압축은 중요한 연구 분야입니다.",
    "def forward(self, x):\n        return self.linear(x)",
    "print('hello world') # prints hello world",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 10000 2024 3.5",
    "the of and to in is that for it with as was on be by this are",
]

FRAGMENTS_CODE = [
    "return x", "if x:", "} else {", "let y = x ?? 0", "i += 1", "print(f\"{x!r}\")", "arr[i][j]",
    "a && b || !c", "x->next = NULL;", "fn main() {}", "#!/bin/sh", "echo $HOME", "[1, 2.5, \"s\", null]",
    "import numpy as np", "@MainActor", "0xDEADBEEF", "0b1010_1010", "a<=b>=c!=d==e", "// TODO: fix",
]
EMOJI = ["😀", "😂", "🥲", "👍🏽", "👩‍💻", "🧑🏿‍🚀", "🇩🇪", "🇧🇷", "❤️", "✨", "🔥", "🙏🏻", "🏴‍☠️", "👨‍👨‍👦", "🫠", "©", "™"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", " \t ", "\u00a0", "\u2009", "\u3000", "\u2003", "\u202f", "\u200b", "\r", " \r ",
          "\u2028", "\u0085", "\u000b", "\u000c", "    "]
CONTROLS = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x9f", "\ufeff", "\u200d", "\u200e", "\ufffd", "\x1f"]
SPECIAL_STRINGS = ["<|begin_of_text|>", "<|end_of_text|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "[CLS]", "[SEP]",
                   "[MASK]", "[UNK]", "[PAD]", "[INST]", "[/INST]", "<|im_start|>", "<|im_end|>", "<|eot_id|>",
                   "<|fim_prefix|>", "hello world", "c++"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "n't", "N'T"]
SYLLABLES = ["ka", "lo", "mi", "ne", "tra", "quo", "ze", "pho", "ül", "ñа", "щи", "λο", "漢", "字", "한", "ก", "x", "7"]


def number(rng):
    kind = rng.randrange(7)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 40)))
    if kind == 1:
        return f"{rng.uniform(-1000, 1000):.{rng.randrange(1, 8)}f}"
    if kind == 2:
        return f"{rng.randrange(10 ** 9):,}"
    if kind == 3:
        return f"{rng.randrange(1, 31)}/{rng.randrange(1, 13)}/{rng.randrange(1900, 2100)}"
    if kind == 4:
        return f"{rng.random():.3e}"
    if kind == 5:
        return "".join(rng.choice("٠١٢٣٤٥٦٧٨٩०१२३४५६७८९") for _ in range(rng.randrange(1, 8)))
    return f"v{rng.randrange(10)}.{rng.randrange(100)}.{rng.randrange(1000)}"


def long_word(rng):
    n = rng.randrange(60, 260)
    return "".join(rng.choice(SYLLABLES) for _ in range(n // 2))


def case_change(rng, s):
    k = rng.randrange(4)
    if k == 0:
        return s.upper()
    if k == 1:
        return s.lower()
    if k == 2:
        return s.title()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in s)


def piece(rng, sentences):
    k = rng.randrange(12)
    if k <= 3:
        s = rng.choice(sentences)
        words = s.split(" ")
        if len(words) > 3 and rng.random() < 0.5:
            a = rng.randrange(len(words))
            s = " ".join(words[a:a + rng.randrange(1, 6)])
        return s
    if k == 4:
        return number(rng)
    if k == 5:
        return rng.choice(EMOJI) * rng.randrange(1, 4)
    if k == 6:
        return rng.choice(FRAGMENTS_CODE)
    if k == 7:
        return rng.choice(SPECIAL_STRINGS)
    if k == 8:
        return rng.choice(["they", "WE", "you", "It", "she", "He", "o"]) + rng.choice(CONTRACTIONS)
    if k == 9:
        return rng.choice(CONTROLS) + rng.choice(sentences)[:20]
    if k == 10:
        return long_word(rng) if rng.random() < 0.3 else case_change(rng, rng.choice(sentences)[:40])
    return unicodedata.normalize("NFD", rng.choice(sentences))


def make_lines(seed, sentences, count):
    rng = random.Random(seed)
    lines = []
    seen = set()

    def add(line):
        line = line.replace("\n", " ")
        if line not in seen:
            seen.add(line)
            lines.append(line)

    for s in sentences:
        add(s)
        add(unicodedata.normalize("NFD", s))
    while len(lines) < count:
        n = rng.randrange(1, 6)
        parts = [piece(rng, sentences) for _ in range(n)]
        line = parts[0]
        for p in parts[1:]:
            line += (rng.choice(SPACES) if rng.random() < 0.4 else " ") + p
        r = rng.random()
        if r < 0.08:
            line = rng.choice(SPACES) + line
        elif r < 0.16:
            line = line + rng.choice(SPACES)
        add(line)
    return lines


def write_text(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")


def train_byte_level(pre_tokenizer, normalizer, training_file, n_added):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=MAX_VOCAB - n_added,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([training_file], trainer)
    tok.decoder = decoders.ByteLevel()
    return tok


def set_model_fields(tok, **fields):
    spec = json.loads(tok.to_str())
    spec["model"].update(fields)
    return Tokenizer.from_str(json.dumps(spec))


def make_llama3(training_file):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok = train_byte_level(pre, None, training_file, len(specials))
    tok = set_model_fields(tok, ignore_merges=True)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            pair="<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1",
            special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))],
        ),
    ])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "model_max_length": 131072,
              "tokenizer_class": "PreTrainedTokenizerFast"}
    return tok, config


def make_gpt2(training_file):
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok = train_byte_level(pre, None, training_file, 3)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    # Two non-special added tokens exercising the matching flags.
    tok.add_tokens([
        AddedToken("hello world", single_word=True, normalized=True, special=False),
        AddedToken("<|fim_prefix|>", rstrip=True, normalized=False, special=False),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "model_max_length": 1024,
              "tokenizer_class": "GPT2Tokenizer"}
    return tok, config


def make_qwen2(training_file):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok = train_byte_level(pre, normalizers.NFC(), training_file, len(specials))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    config = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 32768,
              "tokenizer_class": "Qwen2Tokenizer"}
    return tok, config


def fixed_alphabet(tok, training_file, size):
    """The `size` most frequent scalars of the pre-tokenized training text, ties by code point.

    Passed as both `initial_alphabet` and `limit_alphabet`: the trainers' own choice under `limit_alphabet`
    breaks ties between equally frequent characters in hash-map order, which changes from run to run.
    """
    counts = {}
    with open(training_file, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    for line in lines:
        text = tok.normalizer.normalize_str(line) if tok.normalizer is not None else line
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(text):
            for c in word:
                counts[c] = counts.get(c, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [c for c, _ in ranked[:size]]


def train_spm_model(training_file):
    """A SentencePiece-style BPE: <unk> <s> </s>, the 256 <0xXX> byte tokens, then the trained tokens."""
    specials = ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    n_fixed = len(specials) + 256
    alphabet = fixed_alphabet(tok, training_file, 160)
    trainer = trainers.BpeTrainer(vocab_size=MAX_VOCAB - n_fixed - 8, limit_alphabet=len(alphabet),
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train([training_file], trainer)
    trained = json.loads(tok.to_str())["model"]
    vocab = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for token, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    return vocab, trained["merges"]


def spm_model(vocab, merges):
    return {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab, "merges": merges}


def added(token_id, content, special=True, **flags):
    entry = {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": special}
    entry.update(flags)
    return entry


def template(bos, bos_id):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}


def make_llama2(vocab, merges):
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": template("<s>", 1),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": spm_model(vocab, merges),
    }
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
              "legacy": True, "model_max_length": 2048, "tokenizer_class": "LlamaTokenizerFast"}
    return Tokenizer.from_str(json.dumps(spec)), config


def make_mistral(vocab, merges):
    vocab = dict(vocab)
    inst = len(vocab)
    vocab_extra = {"[INST]": inst, "[/INST]": inst + 1}
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>"),
                         added(inst, "[INST]"), added(inst + 1, "[/INST]")],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        "post_processor": template("<s>", 1),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
            {"type": "Fuse"}]},
        "model": spm_model(vocab, merges),
    }
    assert all(t not in vocab for t in vocab_extra)
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
              "legacy": False, "model_max_length": 32768, "tokenizer_class": "LlamaTokenizerFast"}
    return Tokenizer.from_str(json.dumps(spec)), config


def make_bert(training_file):
    """Uncased BERT. `WordPieceTrainer` is not deterministic (it numbers the "##" alphabet in hash-map order,
    and merge ties follow those numbers), so the vocabulary is derived from a deterministic BPE trained on the
    same normalized, pre-tokenized words marked with "▁": "▁word" gives "word", any other token t gives "##t".
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    bert_normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                 lowercase=True)
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = bert_normalizer
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.BertPreTokenizer(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])
    alphabet = fixed_alphabet(bpe, training_file, 300)
    trainer = trainers.BpeTrainer(vocab_size=900, limit_alphabet=len(alphabet), initial_alphabet=alphabet,
                                  show_progress=False)
    bpe.train([training_file], trainer)
    trained = json.loads(bpe.to_str())["model"]["vocab"]
    vocab = {s: i for i, s in enumerate(specials)}
    budget = MAX_VOCAB - 1  # one id left for the added token "c++"
    for c in alphabet:
        if c != "▁":
            for t in (c, "##" + c):
                vocab.setdefault(t, len(vocab))
    for token, _ in sorted(trained.items(), key=lambda kv: kv[1]):
        t = token[1:] if token.startswith("▁") else "##" + token
        if t and t != "##" and len(vocab) < budget:
            vocab.setdefault(t, len(vocab))
    assert len(vocab) <= budget
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(i, s, lstrip=(s == "[MASK]")) for i, s in enumerate(specials)],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }
    tok = Tokenizer.from_str(json.dumps(spec))
    # A non-special added token matched on the normalized (lowercased) text, whole words only.
    tok.add_tokens([AddedToken("c++", single_word=True, normalized=True, special=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    config = {"do_lower_case": True, "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
              "unk_token": "[UNK]", "mask_token": "[MASK]", "model_max_length": 512, "tokenizer_class": "BertTokenizer"}
    return tok, config


VARIANT_TEXTS = ["Hello  world <s>again", " leading and trailing ", "Ça  va? DON'T 12345 ﬁ Ⅻ", "a\tb\u00a0c  d",
                 "<|fim_prefix|>   x [MASK] y", "x=3.14159, y=(a_b)!! ٣٤ ½ don't\n\nnew"]


def byte_level_after(split):
    return {"type": "Sequence", "pretokenizers": [
        split, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


# (name, fixture, top-level components replaced, model fields replaced): components the six fixtures do not use.
VARIANTS = [
    ("metaspace-always-split", "mistral-spm",
     {"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}}, {}),
    ("metaspace-never", "mistral-spm",
     {"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": False}}, {}),
    ("nfkc-lowercase-strip", "gpt2-bpe", {"normalizer": {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True}]}}, {}),
    ("nfd-strip-accents", "gpt2-bpe",
     {"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]}}, {}),
    ("nfkd", "gpt2-bpe", {"normalizer": {"type": "NFKD"}}, {}),
    ("regex-replace", "gpt2-bpe",
     {"normalizer": {"type": "Replace", "pattern": {"Regex": "[0-9]+"}, "content": "#"}}, {}),
] + [
    ("split-" + behavior.lower(), "gpt2-bpe", {"pre_tokenizer": byte_level_after(
        {"type": "Split", "pattern": {"String": " "}, "behavior": behavior, "invert": False})}, {})
    for behavior in ["Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]
] + [
    ("split-inverted", "gpt2-bpe", {"pre_tokenizer": byte_level_after(
        {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": True})}, {}),
    ("split-icu-regex", "gpt2-bpe", {"pre_tokenizer": byte_level_after(
        {"type": "Split", "pattern": {"Regex": "[0-9]+|[a-z]+"}, "behavior": "Isolated", "invert": False})}, {}),
    ("split-gpt2-pattern", "gpt2-bpe", {"pre_tokenizer": byte_level_after(
        {"type": "Split", "pattern": {"Regex": GPT2_PATTERN}, "behavior": "Isolated", "invert": False})}, {}),
    ("bytelevel-prefix-space", "gpt2-bpe",
     {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}, {}),
    ("bert-processing", "bert-wordpiece",
     {"post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}}, {}),
    ("roberta-processing", "bert-wordpiece", {"post_processor": {
        "type": "RobertaProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2], "trim_offsets": True,
        "add_prefix_space": False}}, {}),
    ("bert-cased", "bert-wordpiece", {"normalizer": {
        "type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": False, "strip_accents": False,
        "lowercase": False}}, {}),
    ("whitespace-split", "bert-wordpiece", {"pre_tokenizer": {"type": "WhitespaceSplit"}}, {}),
    ("whitespace", "bert-wordpiece", {"pre_tokenizer": {"type": "Whitespace"}}, {}),
    ("punctuation", "bert-wordpiece", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "Punctuation", "behavior": "MergedWithPrevious"}]}}, {}),
    ("digits-individual", "gpt2-bpe", {"pre_tokenizer": byte_level_after({"type": "Digits", "individual_digits": True})},
     {}),
    ("digits-runs", "gpt2-bpe", {"pre_tokenizer": byte_level_after({"type": "Digits", "individual_digits": False})}, {}),
    ("wordpiece-short-words", "bert-wordpiece", {}, {"max_input_chars_per_word": 4}),
    ("llama3-with-merges", "llama3-bpe", {}, {"ignore_merges": False}),
    ("gpt2-empty-affixes", "gpt2-bpe", {}, {"continuing_subword_prefix": "", "end_of_word_suffix": ""}),
    ("spm-no-fuse-unk", "llama2-spm", {}, {"fuse_unk": False, "byte_fallback": False}),
]


def write_variants(path):
    out = []
    for name, base, components, fields in VARIANTS:
        with open(os.path.join(ROOT, "Fixtures/tokenizers", base, "tokenizer.json"), encoding="utf-8") as f:
            spec = json.load(f)
        spec.update(components)
        spec["model"].update(fields)
        tok = Tokenizer.from_str(json.dumps(spec))
        out.append({"name": name, "fixture": base, "components": components, "model_fields": fields,
                    "texts": VARIANT_TEXTS, "ids": [tok.encode(t).ids for t in VARIANT_TEXTS],
                    "ids_no_special": [tok.encode(t, add_special_tokens=False).ids for t in VARIANT_TEXTS]})
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps({"tokenizers_version": tokenizers.__version__, "variants": out}, ensure_ascii=False,
                           indent=1) + "\n")


# Edge-case pieces for the fuzz texts: line breaks (which corpus lines cannot hold), contractions in all cases
# (and LONG S, which Oniguruma's case folding matches as s), letters and numbers of every category, marks,
# scalars assigned after Oniguruma's Unicode version (U+1E6C0, U+0C5C, U+11DE0), unassigned U+0378,
# controls, emoji sequences and added-token strings with their neighbours.
FUZZ_PIECES = [
    " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n ", "\u00a0", "\u3000", "\u2028", "\x85", "\x0b",
    "'", "'s", "'S", "'ll", "'LL", "'Re", "'ve", "'d", "'m", "'t", "'\u017f", "'x", "n't",
    "a", "Z", "word", "WORD", "é", "e\u0301", "ß", "\u01c5", "\u02b0", "中文", "ー", "한", "ก", "\u0e31", "\u0301",
    "1", "12", "1234", "\u0663", "\u216b", "\u00bd", "\u00b2", ".", ",", "!?", "-", "_", "(", "\u00ab", "$", "\u20ac",
    "+", "...", "😀", "👍🏽", "👩‍💻", "\u200d", "\x00", "\x1b", "\ufeff", "\U0001e6c0", "\u0c5c", "\U00011de0",
    "\u0378", "<s>", "</s>", "[MASK]", "[CLS]", "<|endoftext|>", "<|begin_of_text|>", "hello world", "Hello World",
    "c++", "C++", "<|fim_prefix|>", "<0x41>", "▁", "##",
]


def fuzz_texts(seed, count):
    rng = random.Random(seed)
    texts, seen = [], set()
    while len(texts) < count:
        text = "".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randrange(1, 25)))
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def write_fuzz(path, tokenizers_by_name):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps({"tokenizers_version": tokenizers.__version__, "tokenizers": list(tokenizers_by_name)})
                + "\n")
        for text in fuzz_texts(99, 1500):
            record = {"text": text, "ids": {name: tok.encode(text).ids for name, tok in tokenizers_by_name.items()}}
            f.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


def write_golden(path, name, tok, lines):
    n_special = tok.num_special_tokens_to_add(False)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        header = {"tokenizer": name, "tokenizers_version": tokenizers.__version__, "transformers_version": "5.24.0",
                  "lines": len(lines), "vocabulary_size": tok.get_vocab_size(with_added_tokens=True),
                  "corpus": "Fixtures/text/corpus.txt"}
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for i, line in enumerate(lines):
            tok.no_truncation()
            ids = tok.encode(line).ids
            record = {"line": i, "ids": ids}
            if i % 5 == 0:
                record["ids_no_special"] = tok.encode(line, add_special_tokens=False).ids
            if i % 7 == 0:
                m = n_special + (i // 7) % 13
                tok.enable_truncation(max_length=m)
                record["truncated"] = {"max_length": m, "ids": tok.encode(line).ids}
                tok.no_truncation()
            if i % 10 == 0:
                record["decoded"] = tok.decode(ids, skip_special_tokens=False)
                record["decoded_skip"] = tok.decode(ids, skip_special_tokens=True)
            f.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


def main():
    corpus = make_lines(20261202, SENTENCES, 2400)
    training_sentences = SENTENCES[::2] + TRAINING_ONLY
    training = make_lines(7, training_sentences, 3000)
    write_text(os.path.join(ROOT, "Fixtures/text/corpus.txt"), corpus)
    training_file = os.path.join(ROOT, "Fixtures/text/training.txt")
    write_text(training_file, training)

    spm_vocab, spm_merges = train_spm_model(training_file)
    built = {
        "llama3-bpe": make_llama3(training_file),
        "gpt2-bpe": make_gpt2(training_file),
        "qwen2-bpe": make_qwen2(training_file),
        "llama2-spm": make_llama2(spm_vocab, spm_merges),
        "mistral-spm": make_mistral(spm_vocab, spm_merges),
        "bert-wordpiece": make_bert(training_file),
    }
    golden_dir = os.path.join(ROOT, "Fixtures/golden/tokenizers")
    os.makedirs(golden_dir, exist_ok=True)
    for name, (tok, config) in built.items():
        assert tok.get_vocab_size(with_added_tokens=True) <= MAX_VOCAB, name
        folder = os.path.join(ROOT, "Fixtures/tokenizers", name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "tokenizer.json")
        tok.save(path, pretty=True)
        tok = Tokenizer.from_file(path)  # the golden ids come from the file as written
        with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        write_golden(os.path.join(golden_dir, name + ".jsonl"), name, tok, corpus)
        print(name, tok.get_vocab_size(with_added_tokens=True))
    write_variants(os.path.join(golden_dir, "variants.json"))
    loaded = {name: Tokenizer.from_file(os.path.join(ROOT, "Fixtures/tokenizers", name, "tokenizer.json"))
              for name in built}
    write_fuzz(os.path.join(golden_dir, "fuzz.jsonl"), loaded)
    print("corpus lines:", len(corpus))


if __name__ == "__main__":
    main()
