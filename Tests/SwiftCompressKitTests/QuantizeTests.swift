import CheckpointIO
import Foundation
import LinearAlgebra
import TestSupport
import Testing

@testable import SwiftCompressKit

/// Byte-for-byte comparison with the goldens llm-compressor 0.14 / compressed-tensors
/// 0.20 wrote for the same input (Fixtures/golden/quantization, made by
/// Scripts/reference/make_quantization_goldens.py).
@Suite("Quantization against the reference goldens")
struct QuantizeTests {
  static let cases: [(String, QuantizationScheme)] = ["tiny-llama-f32", "tiny-llama-f16", "tiny-llama-bf16"].flatMap {
    model in
    QuantizationScheme.allCases.map { (model, $0) }
  }

  @Test(arguments: cases)
  func outputIsByteIdenticalToTheReference(_ model: String, _ scheme: QuantizationScheme) throws {
    let folder = TemporaryFolder()
    let out = folder.file("q")
    let pass = try QuantizePass(configuration: .init(scheme: scheme, ignore: ["lm_head", "re:.*embed_tokens.*"]))
    let report = try Compressor.run(
      pass: pass,
      options: CompressionOptions(
        input: fixture(model), output: out, selection: try TensorSelection(), command: "quantize"))
    let golden = fixture("golden/quantization/\(model)/\(scheme.rawValue)")
    let reference = try Checkpoint.open(golden)
    let ours = try Checkpoint.open(out)
    #expect(Set(ours.tensors.map(\.name)) == Set(reference.tensors.map(\.name)))
    var differing: [String] = []
    for tensor in reference.tensors {
      guard let mine = ours.tensor(named: tensor.name) else { continue }
      if mine.info.dtype != tensor.info.dtype || mine.info.shape != tensor.info.shape
        || Array(ours.bytes(of: mine)) != Array(reference.bytes(of: tensor))
      {
        differing.append(tensor.name)
      }
    }
    #expect(differing.isEmpty, "\(differing.count) tensors differ, e.g. \(differing.prefix(3))")
    if scheme.keepsWeightName {
      // FP8 keeps the name `weight`: compressed-tensors' model-free dequantizer looks for
      // the scale of every `M.weight` not ignored, and stops at the norms the reference
      // leaves out of `ignore` (its own output fails that way). Ours lists them after the
      // reference's entries; the rest of config.json is the reference's, byte for byte.
      let norms = try Checkpoint.open(fixture(model)).tensors.map(\.name).filter { $0.hasSuffix("norm.weight") }.map {
        String($0.dropLast(".weight".count))
      }
      #expect(norms.count == 5)
      let reference = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: golden + "/config.json"))))
      let referenceIgnore = reference["quantization_config"]?["ignore"]?.arrayValue ?? []
      let expected = reference.setting(
        "quantization_config",
        to: reference["quantization_config"]!.setting(
          "ignore", to: .array(referenceIgnore + norms.map { .string($0) }))!)!
      #expect(
        try String(contentsOfFile: out + "/config.json", encoding: .utf8)
          == JSONText.pretty(expected, trailingNewline: false))
    } else {
      #expect(
        FileManager.default.contentsEqual(atPath: out + "/config.json", andPath: golden + "/config.json"),
        "config.json differs from the reference")
    }
    #expect(report.totals.transformed == 14)
    // Codes of `bits` bits plus one 16- or 32-bit scale per 128 or more values (+ zero points).
    let expected = Double(scheme.bits)
    for entry in report.tensors where !entry.isKept {
      #expect(entry.bitsPerWeightAfter > expected && entry.bitsPerWeightAfter < expected + 0.6)
      #expect(entry.metrics != nil)
    }
  }

  @Test func aRowLengthTheGroupDoesNotDivideIsRejectedBeforeWriting() throws {
    let folder = TemporaryFolder()
    let pass = try QuantizePass(configuration: .init(scheme: .w4a16, groupSize: 256))
    do {
      _ = try Compressor.run(
        pass: pass,
        options: CompressionOptions(
          input: fixture("tiny-llama-f32"), output: folder.file("q"), selection: try TensorSelection(),
          command: "quantize"))
      Issue.record("quantized rows of 128 in groups of 256")
    } catch let error as SwiftCompressError {
      #expect(error.category == .invalidInput)
      #expect(error.errorDescription?.contains("group size 256") == true)
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
  }

  /// The first non-finite weight in row order is named, by round-to-nearest and by the
  /// MSE search (whose rows run in parallel: a later row's infinity must not win).
  @Test(arguments: [
    (QuantizationScheme.w8a16, ScaleSearch.none), (.w8a16, .mse), (.w4a16, .mse), (.mxfp4, .mse), (.nvfp4, .mse),
  ])
  func nonFiniteWeightsAreRejectedNamingTheTensorAndNothingIsWritten(
    _ scheme: QuantizationScheme, _ scaleSearch: ScaleSearch
  ) throws {
    let folder = TemporaryFolder()
    let input = folder.file("nan.safetensors")
    var values = [Float](repeating: 0.5, count: 40 * 128)
    values[130] = .nan
    values[128 * 37 + 5] = .infinity
    let writer = try SafeTensorsWriter(
      destination: input, tensors: [PlannedTensor(name: "layer.weight", dtype: .f32, shape: [40, 128])])
    try values.withUnsafeBytes { try writer.write("layer.weight", $0) }
    try writer.finish()
    #expect(
      throws: SwiftCompressError.invalidTensor(
        name: "layer.weight",
        reason:
          "element [1, 2] is nan; quantization needs finite weights; run 'swiftcompress verify' on the input to list every NaN or infinite weight (the checkpoint is probably corrupted), or leave the module out with --ignore"
      )
    ) {
      _ = try Compressor.run(
        pass: try QuantizePass(configuration: .init(scheme: scheme, scaleSearch: scaleSearch)),
        options: CompressionOptions(
          input: input, output: folder.file("q"), selection: try TensorSelection(), command: "quantize"))
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["nan.safetensors"])
  }

  /// A run that fails while the previous tensor's outputs wait to be written behind (the
  /// failing tensor's 16 rows make a loop of one block, which takes no side job) reports
  /// the failure and leaves nothing: the waiting write is dropped unrun, with its writer's
  /// temporary file (SideJobs' deinit also balances its dispatch group, which Darwin's
  /// libdispatch would otherwise trap on).
  @Test(arguments: [ScaleSearch.none, .mse])
  func aFailureWithAWriteWaitingIsReportedAndLeavesNothing(_ scaleSearch: ScaleSearch) throws {
    let folder = TemporaryFolder()
    let input = folder.file("two.safetensors")
    let finite = [Float](repeating: 0.25, count: 16 * 128)
    var broken = finite
    broken[7] = .infinity
    let planned = ["a.weight", "b.weight"].map { PlannedTensor(name: $0, dtype: .f32, shape: [16, 128]) }
    let writer = try SafeTensorsWriter(destination: input, tensors: planned)
    try finite.withUnsafeBytes { try writer.write("a.weight", $0) }
    try broken.withUnsafeBytes { try writer.write("b.weight", $0) }
    try writer.finish()
    var options = CompressionOptions(
      input: input, output: folder.file("q"), selection: try TensorSelection(), command: "quantize")
    options.jobs = 2
    for _ in 0..<3 {
      #expect(throws: SwiftCompressError.self) {
        _ = try Compressor.run(
          pass: try QuantizePass(configuration: .init(scheme: .w8a16, scaleSearch: scaleSearch)), options: options)
      }
      #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["two.safetensors"])
    }
  }

  @Test func ignoreRulesFollowCompressedTensors() throws {
    let pass = try QuantizePass(configuration: .init(scheme: .w4a16, ignore: ["lm_head", "re:model\\.layers\\.1\\."]))
    let descriptor = { (name: String) in PlannedTensor(name: name, dtype: .f32, shape: [128, 128]) }
    #expect(try pass.plan(descriptor("lm_head.weight")) == .keep(reason: "ignored by 'lm_head'"))
    #expect(
      try pass.plan(descriptor("model.layers.1.mlp.up_proj.weight"))
        == .keep(reason: "ignored by 're:model\\.layers\\.1\\.'"))
    // re: matches from the start of the module name, like Python's re.match.
    let anchored = try QuantizePass(configuration: .init(scheme: .w4a16, ignore: ["re:mlp"]))
    if case .keep = try anchored.plan(descriptor("model.layers.0.mlp.up_proj.weight")) {
      Issue.record("re:mlp matched in the middle of the name")
    }
    #expect(throws: SwiftCompressError.self) {
      _ = try QuantizePass(configuration: .init(scheme: .w4a16, ignore: ["re:(["]))
    }
    #expect(throws: SwiftCompressError.self) {
      _ = try QuantizePass(configuration: .init(scheme: .w4a16, groupSize: 12))
    }
  }
}

@Suite("FP4 building blocks")
struct FP4Tests {
  /// E2M1 rounding: each grid value maps to its code, midpoints go to the even code,
  /// and a negative value that rounds to zero keeps its sign (code 8).
  @Test func e2m1RoundsToNearestEvenOnTheGrid() {
    let table = Float32Conversion.e2m1Table
    for code in 0..<16 where code != 8 {
      #expect(MXFP4Codec.e2m1Code(table[code]) == UInt8(code))
    }
    let ties: [(Float, UInt8)] = [(0.25, 0), (0.75, 2), (1.25, 2), (1.75, 4), (2.5, 4), (3.5, 6), (5, 6)]
    for (value, code) in ties {
      #expect(MXFP4Codec.e2m1Code(value) == code, "\(value)")
      #expect(MXFP4Codec.e2m1Code(-value) == code | 8, "\(-value)")
    }
    #expect(MXFP4Codec.e2m1Code(-0.1) == 8)
  }

  /// The reference's MX exponent: floor(log2(amax)) - 2 + 127, except that a mantissa of
  /// 1.75 or more rounds amax up to the next power of two first (llama.cpp does not).
  @Test func mxExponentFollowsTheReferenceRule() {
    #expect(MXFP4Codec.mxExponent(6) == 127)  // 1.5 x 2^2: 6 / 2^0 = 6
    #expect(MXFP4Codec.mxExponent(7) == 128)  // 1.75 x 2^2 rounds up to 2^3
    #expect(MXFP4Codec.mxExponent(Float(1.75).nextDown * 4) == 127)
    #expect(MXFP4Codec.mxExponent(1) == 125)
    #expect(MXFP4Codec.mxExponent(0) == 0)
  }
}

@Suite("Decompression against the reference dequantizer")
struct DecompressTests {
  static let cases = QuantizeTests.cases

  /// Every dequantized weight's F32 bytes hash to what compressed-tensors' dequantizer
  /// produced (Fixtures/golden/quantization/*/dequantized.json), checked by Python.
  @Test(arguments: cases)
  func dequantizedWeightsEqualTheReference(_ model: String, _ scheme: QuantizationScheme) throws {
    let python = try #require(referencePython, "the reference Python is missing: run `make venv`")
    let golden = fixture("golden/quantization/\(model)/\(scheme.rawValue)")
    let folder = TemporaryFolder()
    let out = folder.file("dense")
    _ = try Compressor.run(
      pass: try DecompressPass(configuration: .init(dtype: .f32)),
      options: CompressionOptions(input: golden, output: out, selection: try TensorSelection(), command: "decompress"))
    let check = try runProcess(
      python,
      [
        repositoryRoot + "/Tests/Interop/check_safetensors.py", "sha256", out + "/model.safetensors",
        golden + "/dequantized.json",
      ])
    #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    let dense = try Checkpoint.open(out)
    #expect(!dense.tensors.contains { $0.name.hasSuffix("_scale") || $0.name.hasSuffix("_packed") })
    let config = try JSONParser.parse(Array(FileManager.default.contents(atPath: out + "/config.json")!))
    #expect(config["quantization_config"] == nil)
    #expect(config["torch_dtype"] == .string("float32"))
  }

  @Test func defaultDTypeIsTheConfigsAndPlainCheckpointsAreRefused() throws {
    let folder = TemporaryFolder()
    let out = folder.file("dense")
    _ = try Compressor.run(
      pass: try DecompressPass(),
      options: CompressionOptions(
        input: fixture("golden/quantization/tiny-llama-bf16/W4A16"), output: out, selection: try TensorSelection(),
        command: "decompress"))
    #expect(try Checkpoint.open(out).tensor(named: "model.layers.0.mlp.up_proj.weight")?.info.dtype == .bf16)
    #expect(throws: SwiftCompressError.self) {
      _ = try Compressor.run(
        pass: try DecompressPass(),
        options: CompressionOptions(
          input: fixture("tiny-llama-f32"), output: folder.file("x"), selection: try TensorSelection(),
          command: "decompress"))
    }
    #expect(!FileManager.default.fileExists(atPath: folder.file("x")))
  }
}

@Suite("Quantize refuses quantized input")
struct AlreadyQuantizedTests {
  @Test(arguments: [
    "golden/quantization/tiny-llama-f32/W4A16", "golden/quantization/tiny-llama-f32/W4A16/model.safetensors",
  ])
  func alreadyQuantizedInputIsRefused(_ path: String) throws {
    let folder = TemporaryFolder()
    do {
      _ = try Compressor.run(
        pass: try QuantizePass(configuration: .init(scheme: .w8a16)),
        options: CompressionOptions(
          input: fixture(path), output: folder.file("q"), selection: try TensorSelection(), command: "quantize"))
      Issue.record("quantized an already quantized checkpoint")
    } catch let error as SwiftCompressError {
      #expect(error.category == .invalidInput)
      #expect(error.errorDescription?.contains("decompress") == true)
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
  }
}

@Suite("Scale search")
struct ScaleSearchTests {
  /// For every scheme and input dtype, the MSE search lowers the error against plain
  /// round-to-nearest (both reported), and the written checkpoint decodes to exactly the
  /// values the report measured (checked through decompress; NVFP4's reference decoder
  /// rounds to BF16, so it is compared within BF16 precision).
  @Test(arguments: QuantizeTests.cases)
  func mseSearchLowersTheErrorAndStaysInTheFormat(_ model: String, _ scheme: QuantizationScheme) throws {
    let folder = TemporaryFolder()
    let quantized = folder.file("q")
    let report = try Compressor.run(
      pass: try QuantizePass(configuration: .init(scheme: scheme, scaleSearch: .mse)),
      options: CompressionOptions(
        input: fixture(model), output: quantized, selection: try TensorSelection(), command: "quantize"))
    let searched = try #require(report.totals.metrics)
    let nearest = try #require(report.totals.roundToNearestMetrics)
    #expect(searched.relativeFrobeniusError < nearest.relativeFrobeniusError, "\(searched) vs \(nearest)")
    for entry in report.tensors where !entry.isKept {
      let a = try #require(entry.metrics), b = try #require(entry.roundToNearestMetrics)
      #expect(a.relativeFrobeniusError <= b.relativeFrobeniusError, "\(entry.name)")
    }

    let dense = folder.file("dense")
    _ = try Compressor.run(
      pass: try DecompressPass(configuration: .init(dtype: .f32)),
      options: CompressionOptions(
        input: quantized, output: dense, selection: try TensorSelection(), command: "decompress"))
    let original = try Checkpoint.open(fixture(model))
    let decoded = try Checkpoint.open(dense)
    var total = ErrorAccumulator()
    for entry in report.tensors where !entry.isKept {
      let a = try #require(original.tensor(named: entry.name))
      let b = try #require(decoded.tensor(named: entry.name))
      let x = Float32Conversion.floats(original.bytes(of: a), dtype: a.info.dtype, count: a.info.elementCount)
      let y = Float32Conversion.floats(decoded.bytes(of: b), dtype: .f32, count: b.info.elementCount)
      x.withUnsafeBufferPointer { xs in y.withUnsafeBufferPointer { total.add(reference: xs, reconstruction: $0) } }
    }
    let tolerance = scheme == .nvfp4 ? 2e-3 : 1e-12  // relative
    #expect(
      abs(total.metrics.relativeFrobeniusError - searched.relativeFrobeniusError) <= tolerance
        * searched.relativeFrobeniusError)
  }
}

@Suite("FP8 input")
struct FP8InputTests {
  /// An FP8 checkpoint is dequantized first: quantizing it gives exactly what
  /// quantizing its decompressed copy gives, and the run says so in a warning.
  @Test(arguments: ["FP8_DYNAMIC", "FP8_BLOCK"], [QuantizationScheme.w4a16, .nvfp4])
  func fp8InputIsDequantizedFirst(_ source: String, _ scheme: QuantizationScheme) throws {
    let folder = TemporaryFolder()
    let golden = fixture("golden/quantization/tiny-llama-bf16/\(source)")
    let configuration = QuantizePass.Configuration(scheme: scheme, ignore: ["lm_head", "re:.*embed_tokens.*"])
    func options(_ input: String, _ output: String) throws -> CompressionOptions {
      CompressionOptions(input: input, output: output, selection: try TensorSelection(), command: "test")
    }
    let direct = try Compressor.run(
      pass: try QuantizePass(configuration: configuration), options: try options(golden, folder.file("direct")))
    #expect(direct.warnings.count == 1 && direct.warnings[0].contains("14 FP8 weights"))
    _ = try Compressor.run(pass: try DecompressPass(), options: try options(golden, folder.file("dense")))
    _ = try Compressor.run(
      pass: try QuantizePass(configuration: configuration),
      options: try options(folder.file("dense"), folder.file("via")))
    let a = try Checkpoint.open(folder.file("direct"))
    let b = try Checkpoint.open(folder.file("via"))
    #expect(a.tensors.map(\.name).sorted() == b.tensors.map(\.name).sorted())
    for tensor in b.tensors {
      let other = try #require(a.tensor(named: tensor.name))
      #expect(Array(a.bytes(of: other)) == Array(b.bytes(of: tensor)), "\(tensor.name)")
    }
    #expect(
      FileManager.default.contentsEqual(
        atPath: folder.file("direct/config.json"), andPath: folder.file("via/config.json")))
  }
}

@Suite("Per-channel integer quantization")
struct PerChannelTests {
  static let cases: [(String, QuantizationScheme)] = ["tiny-llama-f32", "tiny-llama-f16", "tiny-llama-bf16"].flatMap {
    model in [(model, QuantizationScheme.w8a16), (model, .w4a16)]
  }

  /// `--group-size 0` (one scale per output row) against the reference's custom
  /// `channel` scheme: tensors and config.json byte for byte, and decompress's values.
  @Test(arguments: cases)
  func perChannelMatchesTheReference(_ model: String, _ scheme: QuantizationScheme) throws {
    let python = try #require(referencePython, "the reference Python is missing: run `make venv`")
    let golden = fixture("golden/quantization/\(model)/\(scheme.rawValue)-channel")
    let folder = TemporaryFolder()
    let out = folder.file("q")
    _ = try Compressor.run(
      pass: try QuantizePass(
        configuration: .init(scheme: scheme, groupSize: 0, ignore: ["lm_head", "re:.*embed_tokens.*"])),
      options: CompressionOptions(
        input: fixture(model), output: out, selection: try TensorSelection(), command: "quantize"))
    let reference = try Checkpoint.open(golden)
    let ours = try Checkpoint.open(out)
    for tensor in reference.tensors {
      let mine = try #require(ours.tensor(named: tensor.name))
      #expect(Array(ours.bytes(of: mine)) == Array(reference.bytes(of: tensor)), "\(tensor.name)")
    }
    #expect(FileManager.default.contentsEqual(atPath: out + "/config.json", andPath: golden + "/config.json"))
    let dense = folder.file("dense")
    _ = try Compressor.run(
      pass: try DecompressPass(configuration: .init(dtype: .f32)),
      options: CompressionOptions(input: out, output: dense, selection: try TensorSelection(), command: "decompress"))
    let check = try runProcess(
      python,
      [
        repositoryRoot + "/Tests/Interop/check_safetensors.py", "sha256", dense + "/model.safetensors",
        golden + "/dequantized.json",
      ])
    #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
  }
}

@Suite("Integer packing")
struct IntegerPackingTests {
  /// compressed-tensors' pack_to_int32 as a row bit stream: 3-bit codes 0...7 repeated give
  /// the words the reference writes (codes straddle word boundaries); an independent
  /// computation of each code's bits checks every width from 2 to 8 both ways.
  @Test func codesFormOneLittleEndianBitStreamPerRow() {
    let codes = (0..<32).map { UInt8($0 % 8) }
    var bytes = [UInt8](repeating: 0, count: 12)
    bytes.withUnsafeMutableBytes { IntegerPackCodec.pack(codes, bits: 3, into: $0, wordOffset: 0) }
    let words = bytes.withUnsafeBytes { raw in
      (0..<3).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self) }
    }
    #expect(words == [0x88fa_c688, 0xc688_fac6, 0xfac6_88fa])
    var random = SeededGaussian(seed: 7)
    for bits in 2...8 {
      let columns = 64
      let row = (0..<columns).map { _ in UInt8(Int(random.uniform() * 256) % (1 << bits)) }
      var packed = [UInt8](repeating: 0, count: columns * bits / 8)
      packed.withUnsafeMutableBytes { IntegerPackCodec.pack(row, bits: bits, into: $0, wordOffset: 0) }
      // Bit i of the stream is bit i % 8 of byte i / 8 (little-endian words).
      for (j, code) in row.enumerated() {
        var value = 0
        for b in 0..<bits where packed[(j * bits + b) / 8] >> ((j * bits + b) % 8) & 1 == 1 { value |= 1 << b }
        #expect(value == Int(code), "bits \(bits), code \(j)")
      }
      let unpacked = packed.withUnsafeBytes {
        IntegerPackCodec.unpackStream($0, rows: 1, columns: columns, bits: bits)
      }
      #expect(unpacked.map(UInt8.init) == row)
    }
  }
}

extension QuantizationScheme {
  /// Whether the quantized weight keeps the name `weight` (FP8, MXFP8), which makes
  /// swiftcompress list the norms in `ignore` too (asked of the scheme's codec).
  var keepsWeightName: Bool {
    let weight = PlannedTensor(name: "m.weight", dtype: .f32, shape: [128, 128])
    return (try? codec(groupSize: 128).layout(of: weight, module: "m").outputs.first?.name) == weight.name
  }
}

extension IntegerPackingTests {
  /// Zero points are read as whole codes per 32-bit word: a layout with zero points at a
  /// width that does not divide 32 is not read (decompress says the format is unsupported)
  /// rather than misread.
  @Test func zeroPointsAtWidthsNotDividing32AreNotRead() throws {
    func weights(_ bits: Int, symmetric: Bool) throws -> JSONValue {
      try JSONParser.parse(
        Array(#"{"num_bits": \#(bits), "symmetric": \#(symmetric), "strategy": "group", "group_size": 128}"#.utf8))
    }
    #expect(IntegerPackCodec.described(format: "pack-quantized", weights: try weights(3, symmetric: false)) == nil)
    #expect(IntegerPackCodec.described(format: "pack-quantized", weights: try weights(3, symmetric: true))?.bits == 3)
    #expect(
      IntegerPackCodec.described(format: "pack-quantized", weights: try weights(4, symmetric: false))?.symmetric
        == false)
  }
}

@Suite("MX scales and E2M3 codes")
struct MXBuildingBlockTests {
  /// The E8M0 rule of compressed-tensors' generate_mx_scales, at the thresholds measured
  /// by running the reference (compressed-tensors 0.20) on crafted weights:
  /// MXFP8 rounds amax up to the next power of two from a mantissa of 1.75 (E2M1's
  /// threshold, which the reference uses), MXFP6 from 1.9375; an all-zero group gives 0,
  /// except in F16 where 2^-127 underflows and the reference stores 127 with a scale of 1.
  @Test func e8m0ExponentFollowsTheReference() {
    let mx8 = MXFP8Codec.scaleRule
    let mx6 = MXFP6Codec.scaleRule
    #expect(mx8.scale(amax: 1.75, dtype: .f32).byte == 120)
    #expect(mx8.scale(amax: 1.7421875, dtype: .bf16).byte == 119)
    #expect(mx6.scale(amax: 1.9375, dtype: .f32).byte == 126)
    #expect(mx6.scale(amax: 1.9296875, dtype: .f16).byte == 125)
    #expect(mx8.scale(amax: 0.1298828125, dtype: .bf16).byte == 116)
    #expect(mx6.scale(amax: 0.1298828125, dtype: .bf16).byte == 122)
    #expect(mx6.scale(amax: 0, dtype: .f32).byte == 0)
    #expect(mx6.scale(amax: 0, dtype: .bf16).byte == 0)
    let f16Zero = mx8.scale(amax: 0, dtype: .f16)
    #expect(f16Zero.byte == 127 && f16Zero.scale == 1)
    // A maximum that rounds up past F16's largest power of two takes the next exponent,
    // as MXFP4's kernel does, not an infinite scale.
    #expect(mx6.scale(amax: 65504, dtype: .f16).byte == MXFP4Codec.mxExponent(65504))
    #expect(mx8.scale(amax: 60000, dtype: .f16).byte == 135)
  }

  /// The reference's worked example: x = 0.203125, -0.328125, -0.0722656, -0.953125 round
  /// to 0.25, -0.375, -0.125, -1 on the E2M3 grid, codes 0x02, 0x23, 0x21, 0x28; ties go to
  /// even; a negative value that rounds to zero keeps its sign; every code decodes to itself.
  @Test func e2m3CodesRoundToNearestEven() {
    #expect(
      [0.203125, -0.328125, -0.0722656, -0.953125].map { MXFP6Codec.code(Float($0)) } == [0x02, 0x23, 0x21, 0x28])
    #expect(MXFP6Codec.code(0.0625) == 0x00)  // halfway between 0 and 0.125: to even
    #expect(MXFP6Codec.code(0.1875) == 0x02)  // halfway between 0.125 and 0.25: to even (0.25)
    #expect(MXFP6Codec.code(-0.01) == 0x20)
    #expect(MXFP6Codec.code(7.5) == 0x1F && MXFP6Codec.code(-7.5) == 0x3F)
    for code in UInt8(0)..<64 { #expect(MXFP6Codec.code(MXFP6Codec.value(code)) == code) }
  }
}
