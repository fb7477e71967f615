import Foundation

/// A tensor of a checkpoint: which file holds it, and where.
public struct CheckpointTensor: Sendable, Equatable {
  /// Index into `Checkpoint.files`.
  public var file: Int
  public var info: TensorInfo
  public var name: String { info.name }
}

/// A safetensors checkpoint: one file, a folder with one weight file, or a folder
/// of shards with an index (`model.safetensors.index.json`).
///
/// Which files are read: a path to a file is that file alone. In a folder, an index
/// (`*.safetensors.index.json`, exactly one) wins; otherwise `model.safetensors`;
/// otherwise the folder's only `*.safetensors` file. Every other file of the folder
/// (config.json, tokenizer files, subfolders such as `1_Pooling/`) is an auxiliary
/// file that writers copy unchanged. Hidden files and other `.safetensors` files
/// (which would be stale duplicates of the weights) are not copied.
public final class Checkpoint: Sendable {
  public enum Layout: String, Sendable, Codable {
    /// A path to one `.safetensors` file.
    case file
    /// A folder with one weight file.
    case folder
    /// A folder with an index and shards.
    case sharded
  }

  public static let defaultIndexName = "model.safetensors.index.json"

  /// The path as given.
  public let path: String
  /// The folder holding the weights (the file's folder for `.file`).
  public let folder: String
  public let layout: Layout
  /// Weight files in read order.
  public let files: [SafeTensorsFile]
  /// Every tensor, in read order (file order, then offset order).
  public let tensors: [CheckpointTensor]
  /// Non-weight files to carry over, relative to `folder` (empty for `.file`).
  public let auxiliaryFiles: [String]
  /// `.safetensors` files in the folder that are not part of the model.
  public let ignoredWeightFiles: [String]
  /// The weight file name stem to use for outputs ("model" unless the input uses another).
  public let weightStem: String
  /// The index file name, for `.sharded`.
  public let indexFileName: String?
  private let byName: [String: Int]

  private init(
    path: String, folder: String, layout: Layout, files: [SafeTensorsFile], tensors: [CheckpointTensor],
    auxiliaryFiles: [String], ignoredWeightFiles: [String], weightStem: String, indexFileName: String? = nil
  ) {
    self.indexFileName = indexFileName
    self.path = path
    self.folder = folder
    self.layout = layout
    self.files = files
    self.tensors = tensors
    self.auxiliaryFiles = auxiliaryFiles
    self.ignoredWeightFiles = ignoredWeightFiles
    self.weightStem = weightStem
    var byName: [String: Int] = [:]
    for (i, tensor) in tensors.enumerated() { byName[tensor.name] = i }
    self.byName = byName
  }

  /// Opens `path`, validating every file; throws the first problem found.
  public static func open(_ path: String) throws(CheckpointError) -> Checkpoint {
    let (checkpoint, problems) = try validate(path)
    if let checkpoint { return checkpoint }
    if let first = problems.first { throw .invalid(first) }
    throw .notACheckpoint(path: path, contents: [])
  }

  /// Validates `path` and returns every problem found, with the opened checkpoint
  /// when there are none. Throws only when `path` is missing or is not a checkpoint.
  public static func validate(_ path: String) throws(CheckpointError) -> (
    checkpoint: Checkpoint?, problems: [ValidationProblem]
  ) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw .inputNotFound(path: path)
    }
    if !isDirectory.boolValue {
      let (file, problems) = try SafeTensorsFile.validate(path: path)
      guard let file else { return (nil, problems) }
      let folder = (path as NSString).deletingLastPathComponent
      return (
        Checkpoint(
          path: path, folder: folder.isEmpty ? "." : folder, layout: .file, files: [file],
          tensors: file.tensors.map { CheckpointTensor(file: 0, info: $0) }, auxiliaryFiles: [],
          ignoredWeightFiles: [], weightStem: "model"), []
      )
    }
    let listing = try FolderListing(root: path)
    let indexes = listing.files.filter { !$0.contains("/") && $0.hasSuffix(".safetensors.index.json") }
    let weights = listing.files.filter { !$0.contains("/") && $0.hasSuffix(".safetensors") }
    if indexes.count == 1 || indexes.contains(defaultIndexName) {
      let index = indexes.contains(defaultIndexName) ? defaultIndexName : indexes[0]
      return try openSharded(path: path, listing: listing, indexName: index)
    }
    let weightName: String
    if weights.contains("model.safetensors") {
      weightName = "model.safetensors"
    } else if weights.count == 1 {
      weightName = weights[0]
    } else {
      throw .notACheckpoint(path: path, contents: listing.files.filter { !$0.contains("/") }.sorted())
    }
    let filePath = path + "/" + weightName
    let (file, problems) = try SafeTensorsFile.validate(path: filePath)
    guard let file else { return (nil, problems) }
    return (
      Checkpoint(
        path: path, folder: path, layout: .folder, files: [file],
        tensors: file.tensors.map { CheckpointTensor(file: 0, info: $0) },
        auxiliaryFiles: listing.files.filter {
          !$0.hasSuffix(".safetensors") && !$0.hasSuffix(".safetensors.index.json")
        },
        ignoredWeightFiles: weights.filter { $0 != weightName },
        weightStem: (weightName as NSString).deletingPathExtension), []
    )
  }

  private static func openSharded(path: String, listing: FolderListing, indexName: String) throws(CheckpointError)
    -> (checkpoint: Checkpoint?, problems: [ValidationProblem])
  {
    let indexPath = path + "/" + indexName
    var problems: [ValidationProblem] = []
    func fail(_ rule: ValidationRule, _ file: String, _ tensor: String?, _ detail: String) {
      problems.append(ValidationProblem(rule: rule, file: file, tensor: tensor, detail: detail))
    }
    guard let data = FileManager.default.contents(atPath: indexPath) else {
      throw .unreadable(path: indexPath, reason: "cannot read the index")
    }
    let index = Array(data).withUnsafeBufferPointer { parseIndex($0, indexPath: indexPath) }
    problems = index.problems
    guard let mapMembers = index.weightMap else { return (nil, problems) }
    let indexMap = index.shardOf
    var shardNames = index.shards
    shardNames.sort()
    var files: [SafeTensorsFile] = []
    var holders: [String: [Int]] = [:]
    var shardOf: [String: Int] = [:]
    for shard in shardNames {
      let shardPath = path + "/" + shard
      guard FileManager.default.fileExists(atPath: shardPath) else {
        fail(.indexShardMissing, indexPath, nil, "the index names '\(shard)', which is not in the folder")
        continue
      }
      let (file, shardProblems) = try SafeTensorsFile.validate(path: shardPath)
      problems += shardProblems
      guard let file else { continue }
      shardOf[shard] = files.count
      for tensor in file.tensors { holders[tensor.name, default: []].append(files.count) }
      files.append(file)
    }
    for file in files {
      for tensor in file.tensors {
        guard let holding = holders[tensor.name] else { continue }
        if holding.count > 1 {
          if holding.first == shardOf[(file.path as NSString).lastPathComponent] {
            let names = holding.map { (files[$0].path as NSString).lastPathComponent }
            fail(
              .tensorInTwoShards, file.path, tensor.name, "also held by \(names.dropFirst().joined(separator: ", "))")
          }
        } else if indexMap[tensor.name] == nil {
          fail(.indexTensorUnlisted, file.path, tensor.name, "the shard holds it but the index does not list it")
        }
      }
    }
    for member in mapMembers {
      guard let shard = indexMap[member.key], let fileIndex = shardOf[shard] else { continue }
      if files[fileIndex].tensor(named: member.key) == nil {
        let actual =
          holders[member.key].map {
            " (it is in \($0.map { (files[$0].path as NSString).lastPathComponent }.joined(separator: ", ")))"
          } ?? ""
        fail(
          .indexTensorMissing, indexPath, member.key, "the index maps it to '\(shard)', which does not hold it\(actual)"
        )
      }
    }
    guard problems.isEmpty else { return (nil, problems) }
    var tensors: [CheckpointTensor] = []
    for (i, file) in files.enumerated() {
      tensors += file.tensors.map { CheckpointTensor(file: i, info: $0) }
    }
    let stem = indexName.replacingOccurrences(of: ".safetensors.index.json", with: "")
    let shardSet = Set(shardNames)
    return (
      Checkpoint(
        path: path, folder: path, layout: .sharded, files: files, tensors: tensors,
        auxiliaryFiles: listing.files.filter {
          !$0.hasSuffix(".safetensors") && $0 != indexName && !$0.hasSuffix(".safetensors.index.json")
        },
        ignoredWeightFiles: listing.files.filter { $0.hasSuffix(".safetensors") && !shardSet.contains($0) },
        weightStem: stem.isEmpty ? "model" : stem, indexFileName: indexName), []
    )
  }

  /// Validates the JSON of a sharded checkpoint's index (`model.safetensors.index.json`)
  /// held in memory: strict JSON, an object with a `weight_map` object whose values are
  /// plain relative shard paths, no tensor listed twice. The checks that need the
  /// shards themselves (missing shards, tensors not where the index says) are not run.
  /// Never touches the disk and never traps; `file` only names the input in the problems.
  ///
  /// - Returns: every problem found; empty when the index is valid on its own.
  public static func validateIndex(bytes: UnsafeRawBufferPointer, file: String = "<memory>") -> [ValidationProblem] {
    parseIndex(bytes.assumingMemoryBound(to: UInt8.self), indexPath: file).problems
  }

  /// Parses and validates an index's JSON. `weightMap` is nil when the index is
  /// unusable (not JSON, not an object, no `weight_map` object).
  static func parseIndex(_ bytes: UnsafeBufferPointer<UInt8>, indexPath: String) -> ParsedIndex {
    var result = ParsedIndex()
    func fail(_ rule: ValidationRule, _ file: String, _ tensor: String?, _ detail: String) {
      result.problems.append(ValidationProblem(rule: rule, file: file, tensor: tensor, detail: detail))
    }
    let json: JSONValue
    do {
      json = try JSONParser.parse(bytes)
    } catch {
      fail(.indexNotJSON, indexPath, nil, "not valid JSON: \(error)")
      return result
    }
    guard json.members != nil else {
      fail(.indexNotJSON, indexPath, nil, "the index is \(json.kindName), not an object")
      return result
    }
    guard let mapMembers = json["weight_map"]?.members else {
      let found = json["weight_map"].map { "weight_map is \($0.kindName)" } ?? "there is no weight_map"
      fail(.indexMissingWeightMap, indexPath, nil, found)
      return result
    }
    for member in mapMembers {
      guard let shard = member.value.stringValue else {
        fail(
          .indexMissingWeightMap, indexPath, member.key,
          "the weight_map entry is \(member.value.kindName), not a file name")
        continue
      }
      if result.shardOf[member.key] != nil {
        fail(.indexDuplicateTensor, indexPath, member.key, "the weight_map names the tensor more than once")
        continue
      }
      let components = shard.split(separator: "/", omittingEmptySubsequences: false)
      if shard.isEmpty || shard.hasPrefix("/") || components.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty })
        || shard.contains("\\")
      {
        fail(.indexPathEscape, indexPath, member.key, "shard path '\(shard)' is not a plain relative path")
        continue
      }
      result.shardOf[member.key] = shard
      if !result.shards.contains(shard) { result.shards.append(shard) }
    }
    result.weightMap = mapMembers
    return result
  }

  /// The tensor named `name`.
  public func tensor(named name: String) -> CheckpointTensor? {
    byName[name].map { tensors[$0] }
  }

  /// The stored bytes of `tensor` (a view of the mapping).
  public func bytes(of tensor: CheckpointTensor) -> UnsafeRawBufferPointer {
    files[tensor.file].bytes(of: tensor.info)
  }

  /// Drops `tensor`'s pages from the resident set.
  public func release(_ tensor: CheckpointTensor) {
    files[tensor.file].release(tensor.info)
  }

  /// `__metadata__` of the first weight file.
  public var metadata: [String: String]? { files.first?.metadata }

  /// Total bytes of tensor data.
  public var tensorByteCount: Int { tensors.reduce(0) { $0 + $1.info.byteCount } }

  /// Every path that belongs to this checkpoint's input, resolved (for refusing to
  /// write over an input).
  public var inputPaths: [String] {
    var paths = files.map(\.path)
    if layout != .file { paths.append(folder) }
    return paths.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().standardizedFileURL.path }
  }
}

/// The regular files below a folder, relative to it, following symbolic links (as
/// in a Hugging Face cache snapshot) and skipping hidden entries.
struct FolderListing {
  var files: [String] = []

  init(root: String) throws(CheckpointError) {
    try walk(root: root, relative: "", depth: 0)
    files.sort()
  }

  private mutating func walk(root: String, relative: String, depth: Int) throws(CheckpointError) {
    guard depth < 16 else { return }
    let folder = relative.isEmpty ? root : root + "/" + relative
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: folder)
    } catch {
      throw .unreadable(path: folder, reason: "cannot list the folder")
    }
    for name in names.sorted() where !name.hasPrefix(".") {
      let rel = relative.isEmpty ? name : relative + "/" + name
      var isDirectory: ObjCBool = false
      guard FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDirectory) else { continue }
      if isDirectory.boolValue {
        try walk(root: root, relative: rel, depth: depth + 1)
      } else {
        files.append(rel)
      }
    }
  }
}

/// An index's weight map as read by `Checkpoint.parseIndex`.
struct ParsedIndex {
  /// The `weight_map` members in file order; nil when the index is unusable.
  var weightMap: [JSONMember]?
  /// Tensor -> shard, for the entries that passed.
  var shardOf: [String: String] = [:]
  /// The shards named, in first-mention order.
  var shards: [String] = []
  var problems: [ValidationProblem] = []
}
