import Foundation

/// What kind of failure an error is, so a command-line front end can map it to an
/// exit code without knowing every case.
public enum ErrorCategory: String, Sendable {
  /// The command line itself is wrong (exit 64).
  case usage
  /// The input exists but its data is invalid (exit 65).
  case invalidInput
  /// The input does not exist or cannot be opened (exit 66).
  case inputNotFound
  /// The output cannot be created or written (exit 73).
  case cannotCreateOutput
  /// Anything else, including bugs (exit 1).
  case other
}

/// An error that knows its category.
public protocol CategorizedError: Error {
  var category: ErrorCategory { get }
}

/// One rule of the safetensors format (and of sharded checkpoints) that an input can
/// break. The raw values are stable identifiers used in messages and `verify --json`.
public enum ValidationRule: String, CaseIterable, Sendable, Codable {
  // File level.
  case fileTooSmall = "file-too-small"
  case headerTooLarge = "header-too-large"
  case headerIncomplete = "header-incomplete"
  case headerNotUTF8 = "header-not-utf8"
  case headerStart = "header-start"
  case headerNotJSON = "header-not-json"
  case metadataNotStringMap = "metadata-not-string-map"
  case entryNotObject = "entry-not-object"
  case missingDType = "missing-dtype"
  case missingShape = "missing-shape"
  case missingDataOffsets = "missing-data-offsets"
  case unknownDType = "unknown-dtype"
  case invalidShape = "invalid-shape"
  case invalidDataOffsets = "invalid-data-offsets"
  case offsetsReversed = "offsets-reversed"
  case offsetsGap = "offsets-gap"
  case offsetsOverlap = "offsets-overlap"
  case sizeOverflow = "size-overflow"
  case sizeMismatch = "size-mismatch"
  case subByteMisaligned = "sub-byte-misaligned"
  case dataPastEnd = "data-past-end"
  case trailingBytes = "trailing-bytes"
  case duplicateName = "duplicate-name"
  // Folder level.
  case indexNotJSON = "index-not-json"
  case indexMissingWeightMap = "index-missing-weight-map"
  case indexShardMissing = "index-shard-missing"
  case indexTensorMissing = "index-tensor-missing"
  case indexTensorUnlisted = "index-tensor-unlisted"
  case tensorInTwoShards = "tensor-in-two-shards"
  case indexPathEscape = "index-path-escape"
  case indexDuplicateTensor = "index-duplicate-tensor"
  // Values.
  case nonFiniteValues = "non-finite-values"
  case sparsityPattern = "sparsity-pattern"
  // Outputs.
  case manifestMismatch = "manifest-mismatch"
  // config.json against the tensors (what loaders will do with them).
  case configDenseTarget = "config-dense-target"
  case configIgnoredQuantized = "config-ignored-quantized"
  case configLayout = "config-layout"
  case layoutUnguarded = "layout-unguarded"

  /// Rules about tensor values, an output's manifest or its config.json rather than the
  /// safetensors structure (no malformed file breaks them).
  public var isValueRule: Bool {
    switch self {
    case .nonFiniteValues, .sparsityPattern, .manifestMismatch, .configDenseTarget, .configIgnoredQuantized,
      .configLayout, .layoutUnguarded:
      true
    default: false
    }
  }

  /// What the rule requires, in a few words.
  public var requirement: String {
    switch self {
    case .fileTooSmall: "a safetensors file starts with an 8-byte header length"
    case .headerTooLarge: "the header is at most 100,000,000 bytes"
    case .headerIncomplete: "the header fits inside the file"
    case .headerNotUTF8: "the header is valid UTF-8"
    case .headerStart: "the header is a JSON object starting with '{'"
    case .headerNotJSON: "the header is valid JSON"
    case .metadataNotStringMap: "__metadata__ maps strings to strings"
    case .entryNotObject: "each tensor entry is a JSON object"
    case .missingDType: "each tensor entry has a dtype"
    case .missingShape: "each tensor entry has a shape"
    case .missingDataOffsets: "each tensor entry has data_offsets"
    case .unknownDType: "the dtype is one of \(DType.knownNames)"
    case .invalidShape: "the shape is an array of non-negative integers"
    case .invalidDataOffsets: "data_offsets is an array of two non-negative integers"
    case .offsetsReversed: "each tensor's end offset is not before its begin offset"
    case .offsetsGap: "tensors are contiguous from offset 0, with no unused bytes"
    case .offsetsOverlap: "tensors do not overlap"
    case .sizeOverflow: "the tensor size fits in 64 bits"
    case .sizeMismatch: "the byte length equals element count x element size"
    case .subByteMisaligned: "a 4-bit tensor holds a whole number of bytes"
    case .dataPastEnd: "tensor data lies inside the file"
    case .trailingBytes: "the last tensor ends exactly at the end of the file"
    case .duplicateName: "tensor names are unique"
    case .indexNotJSON: "model.safetensors.index.json is a valid JSON object"
    case .indexMissingWeightMap: "the index has a weight_map of tensor name to shard file"
    case .indexShardMissing: "every shard the index names exists"
    case .indexTensorMissing: "every tensor the index names is in its shard"
    case .indexTensorUnlisted: "every tensor in a shard is listed in the index"
    case .tensorInTwoShards: "no tensor name appears in two shards"
    case .indexPathEscape: "shard paths are plain file names inside the checkpoint folder"
    case .indexDuplicateTensor: "the index names each tensor once"
    case .nonFiniteValues: "floating-point weights are finite"
    case .sparsityPattern:
      "every group of M consecutive weights of a row holds at most N non-zeros (verify --pattern N:M)"
    case .manifestMismatch: "every file swiftcompress-manifest.json lists exists with its size and CRC-32"
    case .configDenseTarget:
      "a module whose weight is stored unquantized is named in quantization_config.ignore when a config group targets it"
    case .configIgnoredQuantized: "a module stored quantized is targeted by a config group and not ignored"
    case .configLayout: "a quantized module's tensors have the names, dtypes and shapes its config group describes"
    case .layoutUnguarded:
      "a layout no standard loader reads (factorized weights, a low-rank residual, bitmask sparsity) stops standard loaders"
    }
  }

  /// What the user can do about it.
  public var advice: String {
    switch self {
    case .fileTooSmall, .headerIncomplete, .dataPastEnd:
      "The file looks truncated: download or copy it again and compare its size or checksum."
    case .trailingBytes:
      "The file has extra bytes at its end: it was probably appended to or copied badly; obtain a clean copy."
    case .headerTooLarge, .headerNotUTF8, .headerStart, .headerNotJSON:
      "This is not a valid safetensors file: check that the path points at a .safetensors file and that it is not corrupted."
    case .indexNotJSON, .indexMissingWeightMap, .indexDuplicateTensor:
      "Fix or regenerate model.safetensors.index.json (transformers' save_pretrained writes it)."
    case .indexShardMissing:
      "A shard is missing: copy every model-*.safetensors file the index lists into the folder."
    case .indexTensorMissing, .indexTensorUnlisted, .tensorInTwoShards:
      "The index and the shards disagree: the shards may come from different versions; obtain a matching set."
    case .indexPathEscape:
      "Refusing a shard path outside the checkpoint folder; fix the index."
    case .nonFiniteValues:
      "The weights contain NaN or infinity: the checkpoint is probably corrupted or was saved after a diverged training step."
    case .manifestMismatch:
      "The output was changed or damaged after swiftcompress wrote it: copy it again, or rerun the command (its recipe is in the folder)."
    case .configDenseTarget:
      "Add the module to quantization_config.ignore (swiftcompress derives it from the tensors it writes): transformers would otherwise expect a quantized weight and fail or initialise the module at random, and compressed-tensors' model-free dequantizer would look for its scales."
    case .configIgnoredQuantized:
      "Remove the module from ignore (or add a config group that targets it): loaders would read its quantized tensors as unexpected keys and initialise its weight at random."
    case .configLayout:
      "The tensors and quantization_config disagree: rewrite the checkpoint with the tool that made it, or run 'swiftcompress decompress' and quantize again."
    case .layoutUnguarded:
      "transformers would load this with the layers' weights missing and initialised at random: run 'swiftcompress decompress' for a dense checkpoint, or rewrite it with a current swiftcompress, which guards the layout."
    case .sparsityPattern:
      "These weights are not N:M sparse: prune them with 'swiftcompress prune --method nm --pattern N:M' (verify checks every linear weight but embeddings and lm_head)."
    default:
      "The file's header is inconsistent: it was written by a broken tool or corrupted; re-save it with a correct writer."
    }
  }
}

/// One broken rule, located as precisely as possible.
public struct ValidationProblem: Sendable, Equatable, Codable, CustomStringConvertible {
  public var rule: ValidationRule
  /// The file (or folder) the problem is in.
  public var file: String
  /// The tensor concerned, when there is one.
  public var tensor: String?
  /// The specific facts: offsets, sizes, the offending value.
  public var detail: String

  public init(rule: ValidationRule, file: String, tensor: String? = nil, detail: String) {
    self.rule = rule
    self.file = file
    self.tensor = tensor
    self.detail = detail
  }

  public var description: String {
    var text = file
    if let tensor { text += ": tensor '\(tensor)'" }
    text += ": \(detail) [\(rule.rawValue): \(rule.requirement)]"
    return text
  }
}

/// Errors of checkpoint reading and writing.
public enum CheckpointError: Error, LocalizedError, Equatable, CategorizedError {
  /// The input breaks a rule of the format.
  case invalid(ValidationProblem)
  /// Several problems were found (by `verify`-style validation).
  case invalidMany([ValidationProblem])
  /// The path does not exist.
  case inputNotFound(path: String)
  /// A folder that holds no model weights this tool recognises.
  case notACheckpoint(path: String, contents: [String])
  /// The input exists but cannot be read.
  case unreadable(path: String, reason: String)
  /// The output cannot be created or written.
  case cannotCreateOutput(path: String, reason: String)
  /// The output exists and overwriting was not requested.
  case outputExists(path: String)
  /// The output would be the input, contain it, or lie inside it.
  case outputOverlapsInput(path: String, input: String)
  /// A tensor name that the checkpoint does not hold.
  case tensorNotFound(name: String, checkpoint: String)
  /// A conversion this library does not implement.
  case unsupportedConversion(tensor: String, from: DType, to: DType)
  /// A writer was used out of order; a bug in the caller.
  case writerMisuse(path: String, reason: String)

  public var category: ErrorCategory {
    switch self {
    case .invalid, .invalidMany, .unsupportedConversion: .invalidInput
    case .inputNotFound, .notACheckpoint, .unreadable: .inputNotFound
    case .cannotCreateOutput, .outputExists, .outputOverlapsInput: .cannotCreateOutput
    case .tensorNotFound: .usage
    case .writerMisuse: .other
    }
  }

  public var errorDescription: String? {
    switch self {
    case .invalid(let problem):
      return "\(problem). \(problem.rule.advice)"
    case .invalidMany(let problems):
      return problems.map { "\($0). \($0.rule.advice)" }.joined(separator: "\n")
    case .inputNotFound(let path):
      return "\(path): no such file or folder. Check the path."
    case .notACheckpoint(let path, let contents):
      let listing = contents.isEmpty ? "it is empty" : "it holds: \(contents.prefix(12).joined(separator: ", "))"
      return
        "\(path): not a safetensors checkpoint (\(listing)). Point at a .safetensors file, or at a folder with model.safetensors or model.safetensors.index.json."
    case .unreadable(let path, let reason):
      return "\(path): cannot read: \(reason). Check permissions and that the file is not being written."
    case .cannotCreateOutput(let path, let reason):
      return
        "\(path): cannot create output: \(reason). Check free space and permissions, or choose another output path."
    case .outputExists(let path):
      return "\(path) already exists. Delete it, choose a new output path, or pass --force to replace it."
    case .outputOverlapsInput(let path, let input):
      return
        "\(path): refusing to write there: it would overwrite, contain or sit inside the input \(input). Choose an output folder outside the input."
    case .tensorNotFound(let name, let checkpoint):
      return "\(checkpoint): no tensor named '\(name)'. Run 'swiftcompress inspect \(checkpoint)' to list the tensors."
    case .unsupportedConversion(let tensor, let from, let to):
      return
        "tensor '\(tensor)': converting \(from.rawValue) to \(to.rawValue) is not supported. Exclude the tensor or choose another dtype."
    case .writerMisuse(let path, let reason):
      return "\(path): internal error while writing: \(reason). Please report this bug."
    }
  }
}

/// The text of `errno`, for messages.
func errnoDescription(_ code: Int32 = errno) -> String {
  let text = String(cString: strerror(code))
  switch code {
  case EFBIG: return text + " (the file-size limit was reached: see 'ulimit -f')"
  case ENOSPC: return text + " (the disk is full)"
  case EDQUOT: return text + " (the disk quota is used up)"
  default: return text
  }
}
