import CheckpointIO
import Foundation
import SwiftCompressKit
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Writes a safetensors file of F32 tensors with `SafeTensorsWriter`.
func writeF32(_ path: String, _ tensors: [(name: String, shape: [Int], values: [Float])]) throws {
  let writer = try SafeTensorsWriter(
    destination: path, tensors: tensors.map { PlannedTensor(name: $0.name, dtype: .f32, shape: $0.shape) })
  for tensor in tensors {
    try tensor.values.withUnsafeBytes { try writer.write(tensor.name, $0) }
  }
  try writer.finish()
}

/// A 4 x 128 linear weight (a group of 128 divides its rows) with one bad value.
func linearWeight(badValue: Float? = nil, at index: Int = 5) -> [Float] {
  var values = (0..<512).map { Float($0 % 17) / 17 - 0.5 }
  if let badValue { values[index] = badValue }
  return values
}

/// Everything below `folder`, relative to it, hidden entries included.
func treeListing(_ folder: String) -> [String] {
  (FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] ?? []).sorted()
}

/// The staging folders (`.<name>.partial-<pid>-<random>`) in `folder`.
func stagingFolders(_ folder: String) -> [String] {
  ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.contains(".partial-") }.sorted()
}

/// One hostile or broken input, the command run on it, and what must come out.
struct BadInputCase: Sendable, CustomTestStringConvertible {
  var name: String
  /// Writes the input into the folder and returns its path.
  var make: @Sendable (TemporaryFolder) throws -> String
  /// The command and its options; the input and output paths are added.
  var command: [String]
  var status: Int32
  /// Fragments the message on stderr must hold: the problem and what to do.
  var fragments: [String]
  var testDescription: String { name + " (" + command[0] + ")" }

  static func raw(_ header: String, _ data: [UInt8] = [], declaredLength: UInt64? = nil)
    -> @Sendable (TemporaryFolder) throws -> String
  {
    { folder in
      let path = folder.file("in.safetensors")
      writeRawSafetensors(path, header: header, data: data, declaredLength: declaredLength)
      return path
    }
  }

  static func bytes(_ bytes: [UInt8]) -> @Sendable (TemporaryFolder) throws -> String {
    { folder in
      let path = folder.file("in.safetensors")
      _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
      return path
    }
  }

  /// A copy of a malformed fixture (a folder or a file).
  static func fixtureCopy(_ name: String) -> @Sendable (TemporaryFolder) throws -> String {
    { folder in
      let path = folder.file(name)
      try FileManager.default.copyItem(atPath: fixture("malformed/" + name), toPath: path)
      return path
    }
  }

  /// A valid two-tensor file cut `cut` bytes short.
  static func truncated(by cut: Int) -> @Sendable (TemporaryFolder) throws -> String {
    { folder in
      let path = folder.file("in.safetensors")
      try writeF32(path, [("a.weight", [4, 128], linearWeight()), ("b.weight", [4, 128], linearWeight())])
      let handle = try #require(FileHandle(forWritingAtPath: path))
      let size = try handle.seekToEnd()
      try handle.truncate(atOffset: size - UInt64(cut))
      try handle.close()
      return path
    }
  }

  static func weight(_ value: Float, at index: Int = 5) -> @Sendable (TemporaryFolder) throws -> String {
    { folder in
      let path = folder.file("in.safetensors")
      try writeF32(path, [("model.layers.0.mlp.up_proj.weight", [4, 128], linearWeight(badValue: value, at: index))])
      return path
    }
  }

  static let convert = ["convert"]
  static let quantize = ["quantize", "--scheme", "W8A16"]
  static let f32 = #"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#
  static let truncatedAdvice = "looks truncated"
  static let headerAdvice = "re-save it with a correct writer"

  static let all: [BadInputCase] = [
    BadInputCase(
      name: "empty file (0 bytes)", make: bytes([]), command: convert, status: 65,
      fragments: ["the file is 0 bytes long", "file-too-small", truncatedAdvice]),
    BadInputCase(
      name: "empty file (0 bytes)", make: bytes([]), command: quantize, status: 65,
      fragments: ["the file is 0 bytes long", "file-too-small", truncatedAdvice]),
    BadInputCase(
      name: "truncated inside the length prefix", make: bytes([8, 0, 0]), command: convert, status: 65,
      fragments: ["the file is 3 bytes long", "file-too-small", truncatedAdvice]),
    BadInputCase(
      name: "truncated file (cut 100 bytes short)", make: truncated(by: 100), command: convert, status: 65,
      fragments: [
        "tensor 'b.weight'", "the data section needs 4096 bytes but the file has 3996", "data-past-end",
        truncatedAdvice,
      ]),
    BadInputCase(
      name: "truncated file (cut 100 bytes short)", make: truncated(by: 100), command: quantize, status: 65,
      fragments: ["data-past-end", truncatedAdvice]),
    BadInputCase(
      name: "header longer than the file", make: raw(#"{"a":\#(f32)}"#, [0, 0, 0, 0], declaredLength: 4096),
      command: convert, status: 65,
      fragments: ["the header declares 4096 bytes but the file has", "header-incomplete", truncatedAdvice]),
    BadInputCase(
      name: "header length above 100 MB", make: raw("{}", declaredLength: 1 << 40), command: convert, status: 65,
      fragments: ["the header declares 1099511627776 bytes", "header-too-large", "not a valid safetensors file"]),
    BadInputCase(
      name: "offsets past the end",
      make: raw(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, [0, 0, 0, 0]), command: convert,
      status: 65, fragments: ["tensor 'a'", "needs 16 bytes but the file has 4", "data-past-end", truncatedAdvice]),
    BadInputCase(
      name: "offsets beyond 64 bits",
      make: raw(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551615]}}"#, [0]),
      command: convert, status: 65,
      fragments: ["tensor 'a'", "lie beyond any file", "data-past-end"]),
    BadInputCase(
      name: "dtype/shape size mismatch",
      make: raw(#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}"#, [UInt8](repeating: 0, count: 16)),
      command: convert, status: 65,
      fragments: ["shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 16] span 16", "size-mismatch", headerAdvice]
    ),
    BadInputCase(
      name: "dtype/shape size mismatch",
      make: raw(#"{"a.weight":{"dtype":"BF16","shape":[4],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
      command: quantize, status: 65, fragments: ["needs 8 bytes", "size-mismatch"]),
    BadInputCase(
      name: "shape product overflows Int64",
      make: raw(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
      command: convert, status: 65,
      fragments: ["tensor 'a'", "more elements than fit in 64 bits", "size-overflow", headerAdvice]),
    BadInputCase(
      name: "element count x element size overflows Int64",
      make: raw(#"{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
      command: quantize, status: 65, fragments: ["overflow 64 bits", "size-overflow"]),
    BadInputCase(
      name: "dimension above Int64",
      make: raw(#"{"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,1]}}"#, [0]),
      command: convert, status: 65, fragments: ["does not fit in 63 bits", "size-overflow"]),
    BadInputCase(
      name: "non-UTF-8 tensor name",
      make: { folder in
        let path = folder.file("in.safetensors")
        let header = Array(#"{"a"#.utf8) + [0xFF, 0xFE] + Array(#"":\#(f32)}"#.utf8)
        let bytes: [UInt8] = [UInt8(header.count), 0, 0, 0, 0, 0, 0, 0] + header + [0, 0, 0, 0]
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
      }, command: convert, status: 65, fragments: ["is not valid UTF-8", "header-not-utf8", "not a valid safetensors"]),
    BadInputCase(
      name: "tensor name with a lone surrogate escape", make: raw(#"{"a\udc80":\#(f32)}"#, [0, 0, 0, 0]),
      command: convert, status: 65, fragments: ["lone trailing surrogate", "header-not-json"]),
    BadInputCase(
      name: "NaN weight", make: weight(.nan), command: quantize, status: 65,
      fragments: [
        "tensor 'model.layers.0.mlp.up_proj.weight'", "element [0, 5] is nan", "quantization needs finite weights",
        "swiftcompress verify", "--ignore",
      ]),
    BadInputCase(
      name: "infinite weight", make: weight(.infinity, at: 300),
      command: ["prune", "--method", "magnitude", "--sparsity", "0.5"],
      status: 65, fragments: ["element [2, 44] is inf", "pruning needs finite weights", "swiftcompress verify"]),
    BadInputCase(
      name: "NaN weight", make: weight(-.nan, at: 129), command: ["prune", "--method", "nm", "--pattern", "2:4"],
      status: 65, fragments: ["element [1, 1] is", "pruning needs finite weights"]),
    BadInputCase(
      name: "negative infinite weight", make: weight(-.infinity, at: 511), command: ["factorize", "--rank", "2"],
      status: 65, fragments: ["element [3, 127] is -inf", "factorization needs finite weights", "swiftcompress verify"]),
    BadInputCase(
      name: "NaN weight", make: weight(.nan), command: ["quantize", "--scheme", "NVFP4"], status: 65,
      fragments: ["element [0, 5] is nan"]),
    BadInputCase(
      name: "shard missing from the index", make: fixtureCopy("index-shard-missing"), command: convert, status: 65,
      fragments: ["which is not in the folder", "index-shard-missing", "copy every model-*.safetensors file"]),
    BadInputCase(
      name: "shard missing from the index", make: fixtureCopy("index-shard-missing"), command: quantize,
      status: 65, fragments: ["index-shard-missing"]),
    BadInputCase(
      name: "index names a tensor twice", make: fixtureCopy("index-duplicate-tensor"), command: convert,
      status: 65,
      fragments: ["tensor 'x.weight'", "names the tensor more than once", "index-duplicate-tensor", "regenerate"]),
    BadInputCase(
      name: "tensor in the index but not in its shard", make: fixtureCopy("index-tensor-missing"),
      command: convert, status: 65,
      fragments: ["tensor 'z.weight'", "which does not hold it", "index-tensor-missing", "obtain a matching set"]),
    BadInputCase(
      name: "tensor in a shard but not in the index", make: fixtureCopy("index-tensor-unlisted"),
      command: quantize, status: 65, fragments: ["tensor 'y.extra'", "index-tensor-unlisted"]),
    BadInputCase(
      name: "shard path escapes the folder", make: fixtureCopy("index-path-escape"), command: convert, status: 65,
      fragments: ["'../model-00002-of-00002.safetensors' is not a plain relative path", "index-path-escape"]),
    BadInputCase(
      name: "absolute shard path to an existing file",
      make: { folder in
        let checkpoint = folder.file("ckpt")
        try FileManager.default.createDirectory(atPath: checkpoint, withIntermediateDirectories: false)
        try writeF32(folder.file("elsewhere.safetensors"), [("x.weight", [1], [1])])
        let index = #"{"weight_map": {"x.weight": "\#(folder.file("elsewhere.safetensors"))"}}"#
        _ = FileManager.default.createFile(
          atPath: checkpoint + "/model.safetensors.index.json", contents: Data(index.utf8))
        return checkpoint
      }, command: convert, status: 65, fragments: ["is not a plain relative path", "index-path-escape"]),
  ]
}

@Suite("Bad input through the command line")
struct BadInputTests {
  /// Every case: the documented exit code, a message naming the problem and what to
  /// do, nothing on stdout, and no output or staging folder left behind.
  @Test(arguments: BadInputCase.all)
  func badInputIsRefusedCleanly(_ bad: BadInputCase) throws {
    let folder = TemporaryFolder()
    let input = try bad.make(folder)
    let before = treeListing(folder.path)
    let out = folder.file("out")
    let result = try runProcess(swiftcompressExecutable, [bad.command[0], input, out] + bad.command.dropFirst())
    #expect(result.status == bad.status, "\(result.stderr)")
    for fragment in bad.fragments {
      #expect(result.stderr.contains(fragment), "missing '\(fragment)' in: \(result.stderr)")
    }
    #expect(result.stderr.hasPrefix("error: "), "\(result.stderr)")
    #expect(result.stdout.isEmpty)
    #expect(!FileManager.default.fileExists(atPath: out))
    #expect(treeListing(folder.path) == before, "left behind: \(stagingFolders(folder.path))")
    // inspect and verify refuse the same structural problems (values are their own rule).
    if bad.command == BadInputCase.convert {
      #expect(try runProcess(swiftcompressExecutable, ["inspect", input]).status == 65)
      #expect(try runProcess(swiftcompressExecutable, ["verify", input]).status == 65)
    }
  }

  /// Tensor names are never used as paths: a checkpoint whose names look like paths
  /// (`../../etc/passwd`, `a/b`, an absolute path, NUL, a terminal escape) converts and
  /// quantizes into exactly the usual files, keeps every name, and writes nothing else.
  @Test func pathLikeTensorNamesAreOnlyNames() throws {
    let folder = TemporaryFolder()
    let input = folder.file("in.safetensors")
    let names = [
      "../../etc/passwd", "../../../tmp/escaped.weight", "a/b/c.weight", "/abs/path.weight", "nul\u{0}name.weight",
      "..", ".", "x\\y.weight", "model.safetensors", "swiftcompress-report.json", "esc\u{1B}[2J.weight",
    ]
    try writeF32(input, names.map { ($0, [4, 128], linearWeight()) })
    let expected: Set = [
      "model.safetensors", Report.jsonFileName, Report.markdownFileName, Report.svgFileName, Report.htmlFileName,
      Recipe.fileName, Manifest.fileName,
    ]
    for (command, extra) in [("convert", ["--dtype", "bf16"]), ("quantize", ["--scheme", "W8A16"])] {
      let out = folder.file(command)
      let result = try runProcess(swiftcompressExecutable, [command, input, out] + extra)
      #expect(result.status == 0, "\(result.stderr)")
      // Control characters are shown escaped, never sent raw to a terminal.
      #expect(!result.stdout.contains("\u{1B}[2J") && !result.stdout.contains("\u{0}"))
      let files = Set(try FileManager.default.contentsOfDirectory(atPath: out))
      #expect(files.contains("model.safetensors") && files.isSubset(of: expected), "\(files)")
      let inspect = try runProcess(swiftcompressExecutable, ["inspect", out, "--json"])
      #expect(inspect.status == 0)
      let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as! [String: Any]
      let written = Set((json["tensors"] as! [[String: Any]]).map { $0["name"] as! String })
      for name in names {
        #expect(written.contains(name) || written.contains(name + "_packed"), "\(name)")
      }
      #expect(try runProcess(swiftcompressExecutable, ["verify", out]).status == 0)
      // The Markdown report shows them escaped too.
      let markdown = try String(contentsOfFile: out + "/" + Report.markdownFileName, encoding: .utf8)
      #expect(!markdown.contains("\u{1B}") && !markdown.contains("\u{0}") && markdown.contains("esc\\u001B[2J"))
    }
    #expect(
      treeListing(folder.path).filter { !$0.hasPrefix("convert") && !$0.hasPrefix("quantize") } == ["in.safetensors"])
    #expect(!FileManager.default.fileExists(atPath: "/tmp/escaped.weight"))
    #expect(!FileManager.default.fileExists(atPath: folder.path + "/../escaped.weight"))
  }

  /// convert is a format change, not a check: NaN and infinite weights pass through
  /// unchanged (F32) or as the same special values (BF16), deliberately, so a broken
  /// checkpoint can still be resharded or inspected; `verify` then reports them.
  @Test func convertPassesNonFiniteWeightsThroughAndVerifyReportsThem() throws {
    let folder = TemporaryFolder()
    let input = folder.file("in.safetensors")
    var values = linearWeight(badValue: .nan)
    values[7] = .infinity
    try writeF32(input, [("model.layers.0.mlp.up_proj.weight", [4, 128], values)])
    for extra in [[], ["--dtype", "bf16"]] {
      let out = folder.file("out\(extra.count)")
      let result = try runProcess(swiftcompressExecutable, ["convert", input, out] + extra)
      #expect(result.status == 0, "\(result.stderr)")
      let verify = try runProcess(swiftcompressExecutable, ["verify", out])
      #expect(verify.status == 65)
      #expect(verify.stdout.contains("1 NaN and 1 infinite values among 512"))
      #expect(verify.stdout.contains("non-finite-values"))
    }
  }

  /// A file with no tensors (with or without metadata) and tensors with no elements are
  /// valid: convert and quantize write a valid checkpoint; quantize keeps empty weights.
  @Test func emptyCheckpointsAndZeroSizeTensorsAreValid() throws {
    let folder = TemporaryFolder()
    let inputs: [(String, String, [UInt8])] = [
      ("none", "{}", []),
      ("metadata-only", #"{"__metadata__":{"format":"pt"}}"#, []),
      (
        "zero-size",
        #"{"a.weight":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},"b.weight":{"dtype":"F32","shape":[4,0],"data_offsets":[0,0]},"c":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"d.bias":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#,
        [0, 0, 128, 63, 0, 0, 0, 64]
      ),
    ]
    let commands: [[String]] = [
      ["convert"], ["convert", "--dtype", "bf16"], ["quantize", "--scheme", "W8A16"],
      ["quantize", "--scheme", "W4A16", "--group-size", "0"], ["quantize", "--scheme", "FP8_DYNAMIC"],
      ["prune", "--method", "magnitude", "--sparsity", "0.5"], ["factorize", "--rank", "1"],
    ]
    for (name, header, data) in inputs {
      let input = folder.file(name + ".safetensors")
      writeRawSafetensors(input, header: header, data: data)
      for (index, command) in commands.enumerated() {
        let out = folder.file("\(name)-\(index)")
        let result = try runProcess(swiftcompressExecutable, [command[0], input, out] + command.dropFirst())
        #expect(result.status == 0, "\(name) \(command): \(result.stderr)")
        let verify = try runProcess(swiftcompressExecutable, ["verify", out])
        #expect(verify.status == 0, "\(name) \(command): \(verify.stdout)")
        if name == "zero-size" && command[0] != "convert" {
          let report = try String(contentsOfFile: out + "/swiftcompress-report.json", encoding: .utf8)
          #expect(report.contains("has no elements"), "\(name) \(command)")
        }
      }
    }
  }
}
