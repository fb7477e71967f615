#!/usr/bin/env python3
"""Makes the forward-pass fixtures: tiny random models and transformers' outputs on them.

Reference versions: torch 2.15.0, transformers 5.24.0, sentence-transformers 6.3.0,
safetensors (CPU, float32). Deterministic: every model is made from its own seed, and the
goldens are computed in float32 with one thread.

usage: $REFERENCE_PYTHON Scripts/reference/make_forward_fixtures.py [ROOT]

Writes, under ROOT (default: the repository's Fixtures/):
  models/<name>/    a model saved with transformers `save_pretrained` (safetensors, F32):
                    hidden 64, 2 layers, vocab 1024, norm weights and biases random
                    (not ones), matrices N(0, 0.08^2) so every layer matters.
      llama         LlamaForCausalLM: 4 heads, 2 key-value heads, head_dim 32 (set in
                    config.json, not hidden/heads), `llama3` rope scaling, untied head
      llama-tied    LlamaForCausalLM: `linear` rope scaling (factor 2), tied embeddings
      mistral       MistralForCausalLM: sliding window 8 (the 16- and 33-token sequences exceed it)
      qwen2         Qwen2ForCausalLM: q/k/v biases
      qwen3         Qwen3ForCausalLM: per-head q/k RMSNorm
      bert          BertModel (pooler present, unused for embeddings)
      bert-mlm      BertForMaskedLM (names under `bert.`, MLM head ignored)
      bert-st       sentence-transformers folder: BertModel + 1_Pooling (mean) + 2_Normalize
      bert-st-cls   sentence-transformers folder: BertModel + 1_Pooling (CLS), no Normalize
  golden/forward/<name>.safetensors, for 3 sequences s = 0, 1, 2 of 7, 16 and 33 tokens
  (ids from a seeded generator; each uses id 0 and the largest id vocab-1):
      ids.<s>            int64 [n]          the token ids
      hidden.<s>.<i>     f32 [n, 64]        transformers' output_hidden_states[i], i = 0..layers
                                            (0: the embeddings' output)
      layer.<s>.<l>      f32 [n, 64]        the output of layer l (a forward hook), which for
                                            decoders is before the final norm
      final.<s>          f32 [n, 64]        last_hidden_state (decoders: after the final norm)
      logits.<s>         f32 [n, vocab]     decoders: the head's logits
      embedding.<s>      f32 [64]           encoders: the sentence embedding (sentence-transformers'
                                            own modules for the st folders, mean pooling by hand
                                            for bert and bert-mlm)
Each sequence is run alone, at its own length (what an attention mask over right padding gives).
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = 1024
HIDDEN = 64
LENGTHS = [7, 16, 33]
STD = 0.08


def common(**extra):
    base = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=128, initializer_range=STD)
    base.update(extra)
    return base


def decoders():
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)
    return {
        "llama": (LlamaForCausalLM, LlamaConfig(**common(
            num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-5, tie_word_embeddings=False,
            rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 32}))),
        "llama-tied": (LlamaForCausalLM, LlamaConfig(**common(
            num_key_value_heads=4, rms_norm_eps=1e-6, tie_word_embeddings=True,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}))),
        "mistral": (MistralForCausalLM, MistralConfig(**common(
            num_key_value_heads=2, sliding_window=8, rms_norm_eps=1e-5, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0}))),
        "qwen2": (Qwen2ForCausalLM, Qwen2Config(**common(
            num_key_value_heads=2, rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}))),
        "qwen3": (Qwen3ForCausalLM, Qwen3Config(**common(
            num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}))),
    }


def encoders():
    from transformers import BertConfig, BertForMaskedLM, BertModel
    config = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=64, initializer_range=STD, hidden_act="gelu",
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return {
        "bert": (BertModel, BertConfig(**config)),
        "bert-mlm": (BertForMaskedLM, BertConfig(**config)),
        "bert-st": (BertModel, BertConfig(**config)),
        "bert-st-cls": (BertModel, BertConfig(**config)),
    }


def randomize(model, seed):
    """Matrices N(0, STD^2); norm weights U(0.5, 1.5); every bias and norm bias N(0, 0.1^2)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
            elif p.dim() == 1:
                p.copy_(0.5 + torch.rand(p.shape, generator=generator))
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * STD)


def token_ids(seed):
    generator = torch.Generator().manual_seed(seed)
    result = []
    for n in LENGTHS:
        ids = torch.randint(0, VOCAB, (n,), generator=generator)
        ids[1] = VOCAB - 1
        ids[n // 2] = 0
        result.append(ids)
    return result


def layer_hooks(layers):
    captured = {}
    handles = []
    for i, layer in enumerate(layers):
        def hook(module, inputs, output, i=i):
            captured[i] = (output[0] if isinstance(output, tuple) else output).detach().clone()
        handles.append(layer.register_forward_hook(hook))
    return captured, handles


def run(name, cls, config, seed, models, goldens):
    torch.manual_seed(seed)
    config.architectures = [cls.__name__]
    model = cls(config).eval()
    randomize(model, seed)
    if getattr(config, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
        model.tie_weights()
    folder = os.path.join(models, name)
    shutil.rmtree(folder, ignore_errors=True)
    st_pooling = {"bert-st": "mean", "bert-st-cls": "cls"}.get(name)
    base = model.bert if hasattr(model, "bert") else (model.model if hasattr(model, "model") else model)
    layers = base.layers if hasattr(base, "layers") else base.encoder.layer
    tensors = {}
    if st_pooling:
        from sentence_transformers import SentenceTransformer, models as st_models
        transformer_dir = folder + "-tmp"
        model.save_pretrained(transformer_dir, safe_serialization=True)
        word = st_models.Transformer(transformer_dir)
        pooling = st_models.Pooling(HIDDEN, pooling_mode=st_pooling)
        modules = [word, pooling] + ([st_models.Normalize()] if st_pooling == "mean" else [])
        st = SentenceTransformer(modules=modules, device="cpu").eval()
        st.save(folder)
        shutil.rmtree(transformer_dir)
        model = st[0].auto_model.eval()
        layers = model.encoder.layer
    else:
        model.save_pretrained(folder, safe_serialization=True)
    captured, handles = layer_hooks(layers)
    for s, ids in enumerate(token_ids(seed + 1000)):
        tensors[f"ids.{s}"] = ids
        with torch.no_grad():
            out = model(input_ids=ids[None], output_hidden_states=True)
        for i, h in enumerate(out.hidden_states):
            tensors[f"hidden.{s}.{i}"] = h[0].contiguous()
        for l in range(len(layers)):
            tensors[f"layer.{s}.{l}"] = captured[l][0].contiguous()
        if hasattr(out, "logits") and cls.__name__.endswith("CausalLM"):
            tensors[f"logits.{s}"] = out.logits[0].contiguous()
            # The base model's last_hidden_state (after the final norm).
            with torch.no_grad():
                tensors[f"final.{s}"] = base(input_ids=ids[None]).last_hidden_state[0].contiguous()
        else:
            last = out.hidden_states[-1][0]
            tensors[f"final.{s}"] = last.contiguous()
            if st_pooling:
                with torch.no_grad():
                    features = st.forward({"input_ids": ids[None], "attention_mask": torch.ones_like(ids[None])})
                tensors[f"embedding.{s}"] = features["sentence_embedding"][0].contiguous()
            else:
                tensors[f"embedding.{s}"] = last.mean(dim=0).contiguous()
    for h in handles:
        h.remove()
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, os.path.join(goldens, name + ".safetensors"))
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(folder) for f in fs)
    print(f"{name}: {size / 1e6:.2f} MB model", file=sys.stderr)


# Each model gets the fixture tokenizer of its family (Scripts/reference/make_tokenizer_fixtures.py makes
# them; each has at most 1024 ids, the models' vocab_size), so that the commands take text for it.
TOKENIZERS = {
    "llama": "llama3-bpe", "llama-tied": "llama2-spm", "mistral": "mistral-spm", "qwen2": "qwen2-bpe",
    "qwen3": "qwen2-bpe", "bert": "bert-wordpiece", "bert-mlm": "bert-wordpiece", "bert-st": "bert-wordpiece",
    "bert-st-cls": "bert-wordpiece",
}


def attach_tokenizers(root):
    for name, tokenizer in TOKENIZERS.items():
        for file in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(root, "tokenizers", tokenizer, file), os.path.join(root, "models", name, file))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Fixtures")
    torch.set_num_threads(1)
    models = os.path.join(root, "models")
    goldens = os.path.join(root, "golden", "forward")
    os.makedirs(models, exist_ok=True)
    os.makedirs(goldens, exist_ok=True)
    seed = 1400
    for name, (cls, config) in list(decoders().items()) + list(encoders().items()):
        seed += 1
        run(name, cls, config, seed, models, goldens)
    attach_tokenizers(root)


if __name__ == "__main__":
    main()
