import CheckpointIO
import Foundation
import TestSupport
import Testing

@testable import SwiftCompressKit

private typealias M = ModelDescription

private func json(_ text: String) throws -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

private func adapter(_ model: String) throws -> any ModelAdapter {
  ModelAdapters.adapter(for: try Checkpoint.open(fixture(model)))
}

/// The Llama layer the fixtures have at `i`, written out.
private func llamaLayer(_ i: Int, prefix: String = "model.layers") -> M.Layer {
  let p = "\(prefix).\(i)"
  let (a, m) = (p + ".self_attn", p + ".mlp")
  let (inNorm, postNorm) = (p + ".input_layernorm", p + ".post_attention_layernorm")
  return M.Layer(
    index: i, name: p,
    modules: [
      .init(a + ".q_proj", reads: .norm(inNorm)), .init(a + ".k_proj", reads: .norm(inNorm)),
      .init(a + ".v_proj", reads: .norm(inNorm)), .init(a + ".o_proj", reads: .attention(a)),
      .init(m + ".gate_proj", reads: .norm(postNorm)), .init(m + ".up_proj", reads: .norm(postNorm)),
      .init(m + ".down_proj", reads: .gated(gate: m + ".gate_proj", up: m + ".up_proj")),
    ],
    norms: [.init(inNorm, role: .preAttention, kind: .rms), .init(postNorm, role: .preMLP, kind: .rms)],
    attention: .init(
      name: a, query: a + ".q_proj", key: a + ".k_proj", value: a + ".v_proj", output: a + ".o_proj",
      groupedKeyValue: true, heads: 4, keyValueHeads: 2, headDim: 32),
    mlp: .init(name: m, inputs: [m + ".gate_proj", m + ".up_proj"], output: m + ".down_proj", size: 384),
    fused: [
      .init(name: a + ".qkv", kind: .attention, modules: [a + ".q_proj", a + ".k_proj", a + ".v_proj"]),
      .init(name: m + ".gate_up", kind: .mlp, modules: [m + ".gate_proj", m + ".up_proj"]),
    ])
}

/// The BERT layer the fixtures have at `i` (hidden size `hidden`, intermediate 4 x hidden).
private func bertLayer(_ i: Int, hidden: Int) -> M.Layer {
  let p = "encoder.layer.\(i)"
  let a = p + ".attention"
  let input = i == 0 ? "embeddings.LayerNorm" : "encoder.layer.\(i - 1).output.LayerNorm"
  return M.Layer(
    index: i, name: p,
    modules: [
      .init(a + ".self.query", reads: .norm(input)), .init(a + ".self.key", reads: .norm(input)),
      .init(a + ".self.value", reads: .norm(input)), .init(a + ".output.dense", reads: .attention(a)),
      .init(p + ".intermediate.dense", reads: .norm(a + ".output.LayerNorm")),
      .init(p + ".output.dense", reads: .activated(p + ".intermediate.dense")),
    ],
    norms: [
      .init(a + ".output.LayerNorm", role: .postAttention, kind: .layer),
      .init(p + ".output.LayerNorm", role: .postMLP, kind: .layer),
    ],
    attention: .init(
      name: a, query: a + ".self.query", key: a + ".self.key", value: a + ".self.value", output: a + ".output.dense",
      groupedKeyValue: false, heads: 4, keyValueHeads: 4, headDim: hidden / 4),
    mlp: .init(
      name: p + ".intermediate", inputs: [p + ".intermediate.dense"], output: p + ".output.dense", size: 4 * hidden))
}

@Suite("Model adapters")
struct ModelAdapterTests {
  @Test(arguments: ["tiny-llama-f32", "tiny-llama-bf16", "tiny-llama-f16", "tiny-llama-sharded"])
  func llamaFixtures(_ name: String) throws {
    let model = try adapter(name).model
    #expect(model.family == "llama")
    #expect(model.modelType == "llama")
    #expect(model.layers == [llamaLayer(0), llamaLayer(1)])
    #expect(model.embeddings == [.init("model.embed_tokens", role: .tokens)])
    #expect(model.embeddingBlock == nil)
    #expect(model.norms == [.init("model.norm", role: .final, kind: .rms)])
    #expect(model.head == .init("lm_head", kind: .logits, reads: .norm("model.norm")))
    #expect(model.activation == "silu")
    #expect(model.normEpsilon == 1e-5)
    #expect(
      model.dimensions
        == .init(
          hiddenSize: 128, intermediateSize: 384, attentionHeads: 4, keyValueHeads: 2, headDim: 32, layerCount: 2,
          vocabularySize: 512))
    #expect(
      model.layers[0].sharedInputs == [
        ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj"],
        ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"],
      ])
  }

  @Test(arguments: [("tiny-bert", 64), ("tiny-bert-128", 128)])
  func bertFixtures(_ name: String, _ hidden: Int) throws {
    let adapter = try adapter(name)
    let model = adapter.model
    #expect(model.family == "bert")
    #expect(model.modelType == "bert")
    #expect(model.layers == [bertLayer(0, hidden: hidden), bertLayer(1, hidden: hidden)])
    #expect(
      model.embeddings == [
        .init("embeddings.word_embeddings", role: .tokens), .init("embeddings.position_embeddings", role: .positions),
        .init("embeddings.token_type_embeddings", role: .tokenTypes),
      ])
    #expect(model.embeddingBlock == "embeddings")
    #expect(model.norms == [.init("embeddings.LayerNorm", role: .embeddings, kind: .layer)])
    #expect(model.head == .init("pooler.dense", kind: .pooler, reads: .norm("encoder.layer.1.output.LayerNorm")))
    #expect(model.activation == "gelu")
    #expect(model.normEpsilon == 1e-12)
    #expect(
      model.layers[1].sharedInputs == [
        [
          "encoder.layer.1.attention.self.query", "encoder.layer.1.attention.self.key",
          "encoder.layer.1.attention.self.value",
        ]
      ])
    // The embedding block holds the LayerNorm and the position_ids buffer; the pooler is
    // a linear layer.
    #expect(adapter.isEmbedding("embeddings.LayerNorm.weight"))
    #expect(adapter.isEmbedding("embeddings.position_ids"))
    #expect(!adapter.isEmbedding("pooler.dense.weight"))
  }

  /// NVFP4 shares a global scale over what loaders fuse: q/k/v and gate/up in Llama;
  /// BERT's query/key/value read one input but keep a scale each (as before adapters).
  @Test func scaleSharingGroups() throws {
    let llama = try adapter("tiny-llama-f32")
    for part in ["q_proj", "k_proj", "v_proj"] {
      #expect(llama.scaleSharingGroup(ofModule: "model.layers.1.self_attn." + part) == "model.layers.1.self_attn.qkv")
    }
    for part in ["gate_proj", "up_proj"] {
      #expect(llama.scaleSharingGroup(ofModule: "model.layers.0.mlp." + part) == "model.layers.0.mlp.gate_up")
    }
    for module in ["model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj", "lm_head"] {
      #expect(llama.scaleSharingGroup(ofModule: module) == module)
    }
    let bert = try adapter("tiny-bert")
    for module in bert.model.linearModules.map(\.name) {
      #expect(bert.scaleSharingGroup(ofModule: module) == module)
    }
    // Names no description holds: the name rule (q_proj/k_proj/v_proj, gate_proj/up_proj
    // with one stem).
    let generic = ModelAdapters.generic
    let expected = [
      ("decoder.layers.3.encoder_attn.k_proj", "decoder.layers.3.encoder_attn.qkv"),
      ("blocks.0.ffn.up_proj", "blocks.0.ffn.gate_up"), ("blocks.0.ffn.down_proj", "blocks.0.ffn.down_proj"),
      ("x.q_proj_a", "x.q_proj_a"), ("q_proj", "q_proj"),
    ]
    for (module, group) in expected {
      #expect(generic.scaleSharingGroup(ofModule: module) == group)
      #expect(llama.scaleSharingGroup(ofModule: module) == group)
      #expect(bert.scaleSharingGroup(ofModule: module) == group)
    }
  }

  /// On every fixture the adapter answers what the name rules answered before adapters:
  /// embeddings, the `Linear` target, the default selection and the scale groups. The
  /// bare weight files have no config.json: the generic adapter.
  @Test(arguments: [
    ("tiny-llama-f32", "llama"), ("tiny-llama-sharded", "llama"), ("tiny-bert", "bert"), ("tiny-bert-128", "bert"),
    ("tiny-llama-f32/model.safetensors", "generic"), ("tiny-bert/model.safetensors", "generic"),
  ])
  func agreesWithTheNameRules(_ name: String, _ family: String) throws {
    let checkpoint = try Checkpoint.open(fixture(name))
    let adapter = ModelAdapters.adapter(for: checkpoint)
    #expect(adapter.model.family == family)
    let generic = try TensorSelection()
    let adapted = generic.adapted(to: adapter)
    for tensor in checkpoint.tensors {
      let descriptor = TensorDescriptor(tensor.info)
      #expect(adapter.isEmbedding(tensor.name) == GenericAdapter.looksLikeEmbedding(tensor.name))
      for shorthand in StageTargets.shorthands {
        #expect(
          StageTargets.isA(shorthand, descriptor, model: adapter) == StageTargets.isA(shorthand, descriptor))
      }
      #expect(adapted.decide(descriptor) == generic.decide(descriptor))
      let module = ModelAdapters.module(ofTensor: tensor.name)
      #expect(adapter.scaleSharingGroup(ofModule: module) == generic.model.scaleSharingGroup(ofModule: module))
    }
  }

  @Test func registryReadsModelTypeAndArchitectures() throws {
    let names = try Checkpoint.open(fixture("tiny-llama-f32")).tensors.map(\.name)
    for config in [
      #"{"model_type": "mistral"}"#, #"{"model_type": "qwen2"}"#, #"{"model_type": "qwen3"}"#,
      #"{"architectures": ["Qwen2ForCausalLM"]}"#, #"{"architectures": ["LlamaModel"]}"#,
    ] {
      #expect(ModelAdapters.adapter(config: try json(config), tensorNames: names).model.family == "llama")
    }
    for config in [#"{"model_type": "qwen2_moe"}"#, #"{"architectures": ["Qwen2MoeForCausalLM"]}"#, "{}"] {
      #expect(ModelAdapters.adapter(config: try json(config), tensorNames: names).model.family == "generic")
    }
    // A BERT under "bert." (BertForMaskedLM): the embeddings and the pooler beside the encoder.
    let bertNames = try Checkpoint.open(fixture("tiny-bert")).tensors.map { "bert." + $0.name }
    let bert = ModelAdapters.adapter(config: try json(#"{"model_type": "roberta"}"#), tensorNames: bertNames).model
    #expect(bert.family == "bert")
    #expect(bert.embeddingBlock == "bert.embeddings")
    #expect(bert.embeddings.first == .init("bert.embeddings.word_embeddings", role: .tokens))
    #expect(bert.head?.name == "bert.pooler.dense")
    #expect(bert.layers[1].modules[0].input == .norm("bert.encoder.layer.0.output.LayerNorm"))
  }

  /// Qwen3's per-head q_norm/k_norm, a tied head with no lm_head stored, layers in number
  /// order (not name order).
  @Test func qwen3TiedAndManyLayers() throws {
    var names = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in 0..<12 {
      let p = "model.layers.\(i)."
      names += ["q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"].map { p + "self_attn." + $0 + ".weight" }
      names += ["gate_proj", "up_proj", "down_proj"].map { p + "mlp." + $0 + ".weight" }
      names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    }
    let config = try json(
      #"{"model_type": "qwen3", "tie_word_embeddings": true, "hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "hidden_act": "silu"}"#
    )
    let model = ModelAdapters.adapter(config: config, tensorNames: names).model
    #expect(model.family == "llama")
    #expect(model.layers.map(\.index) == Array(0..<12))
    #expect(
      model.layers[10].norms.map(\.role) == [.preAttention, .query, .key, .preMLP]
        && model.layers[10].norms[1].name == "model.layers.10.self_attn.q_norm")
    #expect(model.layers[0].attention?.headDim == 8)
    #expect(model.layers[0].attention?.keyValueHeads == 4)
    #expect(model.head == .init("lm_head", kind: .logits, tiedTo: "model.embed_tokens", reads: .norm("model.norm")))
    #expect(model.normEpsilon == 1e-6)
  }

  /// No known family: the generic adapter, which knows what names alone tell (the units
  /// Llama- and BERT-style names show, with config.json's head counts) and nothing of
  /// inputs, norms or the head.
  @Test func genericFallback() throws {
    // A bare weight file: no config.json.
    let bare = try adapter("tiny-llama-f32/model.safetensors").model
    #expect(bare.family == "generic")
    #expect(bare.layers.map(\.name) == ["model.layers.0", "model.layers.1"])
    #expect(bare.layers.allSatisfy { $0.modules.isEmpty && $0.norms.isEmpty && $0.fused.isEmpty })
    #expect(bare.layers[0].mlp?.inputs == ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"])
    #expect(bare.layers[0].attention?.heads == nil)
    #expect(bare.embeddings.isEmpty && bare.head == nil && bare.activation == nil)
    // config.json says llama but the names are someone else's: not described as Llama.
    let renamed = ModelAdapters.adapter(
      config: try json(#"{"model_type": "llama", "num_attention_heads": 4}"#),
      tensorNames: ["net.tok.weight", "net.blocks.0.attn.wq.weight", "net.blocks.0.ffn.w1.weight", "out.weight"])
    #expect(renamed.model.family == "generic")
    #expect(renamed.model.layers.isEmpty)
    #expect(renamed.model.dimensions.attentionHeads == 4)
    #expect(renamed.isEmbedding("net.tok_embed.weight") && !renamed.isEmbedding("net.blocks.0.attn.wq.weight"))
    #expect(renamed.fusedModules(of: "net.blocks.0.attn.wq") == nil)
    // Units found by names leave the questions to the name rules, even on odd names.
    let odd = ModelAdapters.adapter(
      config: nil,
      tensorNames: ["embedder.layers.0.self_attn.q_proj.weight", "embedder.layers.0.mlp.gate_proj.weight"])
    #expect(odd.model.layers.count == 1)
    #expect(odd.isEmbedding("embedder.layers.0.self_attn.q_proj.weight"))
    #expect(odd.scaleSharingGroup(ofModule: "embedder.layers.0.mlp.gate_proj") == "embedder.layers.0.mlp.gate_up")
  }

  /// Structured pruning of a model whose config.json names no known family (the generic
  /// adapter) cuts what it cuts in the same model described as Llama.
  @Test(arguments: [StructuredUnit.mlp, .heads])
  func structuredPruningWithTheGenericAdapter(_ structure: StructuredUnit) throws {
    let folder = TemporaryFolder()
    let unknown = folder.file("unknown")
    try FileManager.default.createDirectory(atPath: unknown, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      atPath: fixture("tiny-llama-f32/model.safetensors"), toPath: unknown + "/model.safetensors")
    var config = try String(contentsOfFile: fixture("tiny-llama-f32/config.json"), encoding: .utf8)
    config = config.replacingOccurrences(of: #""model_type": "llama""#, with: #""model_type": "unknown""#)
      .replacingOccurrences(of: "LlamaForCausalLM", with: "UnknownForCausalLM")
    try config.write(toFile: unknown + "/config.json", atomically: true, encoding: .utf8)
    #expect(ModelAdapters.adapter(for: try Checkpoint.open(unknown)).model.family == "generic")

    let pass = try PrunePass(configuration: .init(method: .structured, structure: structure, ratio: 0.5))
    let known = try #require(try pass.prepared(for: try Checkpoint.open(fixture("tiny-llama-f32"))).structuredPlan)
    let generic = try #require(try pass.prepared(for: try Checkpoint.open(unknown)).structuredPlan)
    #expect(!known.cuts.isEmpty)
    #expect(known == generic)
  }
}
