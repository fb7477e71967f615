import CheckpointIO
import Foundation

/// What config.json says of a forward pass beyond the adapter's structure: rotary embeddings,
/// sliding windows, activations.
enum ForwardConfiguration {
  /// The rotary inverse frequencies, headDim/2 values, as transformers computes them in float32:
  /// `1 / theta^(2i/d)`, then scaled by `rope_scaling`'s type: `default`, `linear` (divided by
  /// `factor`) or `llama3` (long wavelengths divided by `factor`, short ones kept, the band
  /// between interpolated). Reads transformers 5's `rope_parameters` and the older `rope_theta`
  /// with `rope_scaling`.
  static func inverseFrequencies(_ config: JSONValue, headDim: Int, path: String) throws(SwiftCompressError) -> [Float]
  {
    let parameters = config["rope_parameters"].flatMap { $0.members != nil ? $0 : nil }
    let scaling = config["rope_scaling"].flatMap { $0.members != nil ? $0 : nil }
    let theta = parameters?["rope_theta"]?.doubleValue ?? config["rope_theta"]?.doubleValue ?? 10000
    let record = parameters ?? scaling
    let type = record?["rope_type"]?.stringValue ?? record?["type"]?.stringValue ?? "default"
    if let partial = (parameters?["partial_rotary_factor"] ?? config["partial_rotary_factor"])?.doubleValue,
      partial != 1
    {
      throw .invalidCheckpoint(
        path: path, reason: "partial_rotary_factor \(partial) is not supported by the forward pass (only 1)")
    }
    func number(_ key: String) throws(SwiftCompressError) -> Float {
      guard let value = record?[key]?.doubleValue else {
        throw .invalidCheckpoint(path: path, reason: "RoPE scaling '\(type)' in config.json has no '\(key)'")
      }
      return Float(value)
    }
    let base = Float(theta)
    var inverse = stride(from: 0, to: headDim, by: 2).map { i in 1 / powf(base, Float(i) / Float(headDim)) }
    switch type {
    case "default":
      break
    case "linear":
      let factor = try number("factor")
      inverse = inverse.map { $0 / factor }
    case "llama3":
      let factor = try number("factor")
      let low = try number("low_freq_factor")
      let high = try number("high_freq_factor")
      let context = try number("original_max_position_embeddings")
      let lowWavelength = context / low
      let highWavelength = context / high
      inverse = inverse.map { f in
        let wavelength = 2 * Float.pi / f
        let scaled = wavelength > lowWavelength ? f / factor : f
        guard !(wavelength < highWavelength), !(wavelength > lowWavelength) else { return scaled }
        let smooth = (context / wavelength - low) / (high - low)
        return (1 - smooth) * scaled / factor + smooth * scaled
      }
    default:
      throw .invalidCheckpoint(
        path: path,
        reason: "RoPE scaling '\(type)' is not supported by the forward pass (supported: default, linear, llama3)")
    }
    return inverse
  }

  /// cos and sin of `p · invFreq[i]` for positions 0..<count (the product in float32, as transformers).
  static func rotaryTable(_ inverse: [Float], positions count: Int) -> RotaryTable {
    let half = inverse.count
    var cos = [Float](repeating: 0, count: count * half)
    var sin = [Float](repeating: 0, count: count * half)
    for p in 0..<count {
      for i in 0..<half {
        let angle = Double(Float(p) * inverse[i])
        cos[p * half + i] = Float(Foundation.cos(angle))
        sin[p * half + i] = Float(Foundation.sin(angle))
      }
    }
    return RotaryTable(cos: cos, sin: sin)
  }

  /// The sliding window of each of `layers` layers (nil: full causal attention): config.json's
  /// `sliding_window` unless `use_sliding_window` is false, on every layer (Mistral) or, when
  /// `layer_types` is given (Qwen2, Qwen3), on its "sliding_attention" layers.
  static func slidingWindows(_ config: JSONValue, layers: Int) -> [Int?] {
    guard let window = config["sliding_window"]?.uint64Value.flatMap({ Int(exactly: $0) }), window > 0,
      config["use_sliding_window"]?.boolValue != false
    else { return Array(repeating: nil, count: layers) }
    guard let types = config["layer_types"]?.arrayValue else { return Array(repeating: window, count: layers) }
    return (0..<layers).map { i in
      i < types.count && types[i].stringValue == "sliding_attention" ? window : nil
    }
  }

  /// An integer of config.json.
  static func int(_ config: JSONValue, _ key: String) -> Int? {
    config[key]?.uint64Value.flatMap { Int(exactly: $0) }
  }

  /// config.json's `hidden_act` as an activation.
  static func activation(_ name: String?, path: String) throws(SwiftCompressError) -> Activation {
    let name = name ?? "silu"
    guard let activation = Activation(configName: name) else {
      throw .invalidCheckpoint(
        path: path,
        reason:
          "hidden_act '\(name)' is not supported by the forward pass (supported: \(Activation.supportedNames.joined(separator: ", ")))"
      )
    }
    return activation
  }
}
