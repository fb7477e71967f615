import CheckpointIO
import Foundation

/// What to do about a NaN or infinite weight, appended to the passes' messages.
let nonFiniteAdvice =
  "; run 'swiftcompress verify' on the input to list every NaN or infinite weight (the checkpoint is probably corrupted), or leave the module out with --ignore"

/// Errors of the compression pipeline. Checkpoint reading and writing errors
/// (`CheckpointError`) pass through unchanged.
public enum SwiftCompressError: Error, LocalizedError, Equatable, CategorizedError {
  /// A pass identifier the registry does not know.
  case unknownPass(String, known: [String])
  /// A pass configuration that cannot be decoded or is out of range.
  case invalidConfiguration(pass: String, reason: String)
  /// A regular expression given for tensor selection does not compile.
  case invalidPattern(option: String, pattern: String, reason: String)
  /// An option value out of range.
  case invalidOption(option: String, reason: String)
  /// A tensor cannot be processed by the requested pass.
  case invalidTensor(name: String, reason: String)
  /// A module (a layer: its weight and the tensors that go with it, or its calibration
  /// statistics) cannot be processed.
  case invalidModule(name: String, reason: String)
  /// A checkpoint (a file or folder) the pass cannot process as a whole.
  case invalidCheckpoint(path: String, reason: String)
  /// A file that holds no tensors (config.json, a report, a part's records) is wrong.
  case invalidFile(path: String, reason: String)
  /// A folder (a part of a split run) is not what the command needs.
  case invalidFolder(path: String, reason: String)
  /// The folders given together (the parts of a split run) do not fit together.
  case invalidFolders(paths: [String], reason: String)
  /// Two planned outputs share a name.
  case outputNameClash(name: String, first: String, second: String)
  /// A pass broke its own plan (a bug).
  case passBrokePlan(pass: String, tensor: String, reason: String)
  /// A recipe that cannot be read or is wrong, with where (line 0 when unknown) and
  /// which key.
  case invalidRecipe(file: String, line: Int, key: String?, reason: String)
  /// A recipe file that does not exist.
  case recipeNotFound(String)
  /// `--strict` and the plan has warnings: nothing was written.
  case strictWarnings([String])

  public var category: ErrorCategory {
    switch self {
    case .unknownPass, .invalidConfiguration, .invalidPattern, .invalidOption, .invalidRecipe: .usage
    case .recipeNotFound: .inputNotFound
    case .invalidTensor, .invalidModule, .invalidCheckpoint, .invalidFile, .invalidFolder, .invalidFolders,
      .outputNameClash, .strictWarnings:
      .invalidInput
    case .passBrokePlan: .other
    }
  }

  public var errorDescription: String? {
    switch self {
    case .unknownPass(let name, let known):
      "unknown pass '\(name)'. Known passes: \(known.joined(separator: ", "))."
    case .invalidConfiguration(let pass, let reason):
      "pass '\(pass)': invalid configuration: \(reason)."
    case .invalidPattern(let option, let pattern, let reason):
      "\(option) '\(pattern)' is not a valid regular expression: \(reason). Escape literal dots as '\\.'."
    case .invalidOption(let option, let reason):
      "\(option): \(reason)."
    case .invalidTensor(let name, let reason):
      "tensor '\(name)': \(reason)."
    case .invalidModule(let name, let reason):
      "module '\(name)': \(reason)."
    case .invalidCheckpoint(let path, let reason):
      "checkpoint '\(path)': \(reason)."
    case .invalidFile(let path, let reason):
      "file '\(path)': \(reason)."
    case .invalidFolder(let path, let reason):
      "folder '\(path)': \(reason)."
    case .invalidFolders(let paths, let reason):
      "folders \(paths.map { "'\($0)'" }.joined(separator: ", ")): \(reason)."
    case .outputNameClash(let name, let first, let second):
      "output tensor '\(name)' would be written for both '\(first)' and '\(second)'. Exclude one of them."
    case .invalidRecipe(let file, let line, let key, let reason):
      "\(file)\(line > 0 ? ":\(line)" : "")\(key.map { ": '\($0)'" } ?? ""): \(reason)."
    case .recipeNotFound(let path):
      "recipe '\(path)' does not exist. Give the path of a YAML recipe (see docs/recipes.md)."
    case .strictWarnings(let warnings):
      "--strict: stopped before writing anything, on \(warnings.count == 1 ? "this warning" : "these \(warnings.count) warnings"):\n"
        + warnings.map { "  - " + $0 }.joined(separator: "\n")
        + "\nResolve \(warnings.count == 1 ? "it" : "them"), or run without --strict."
    case .passBrokePlan(let pass, let tensor, let reason):
      "internal error: pass '\(pass)' broke its plan for '\(tensor)': \(reason). Please report this bug."
    }
  }
}
