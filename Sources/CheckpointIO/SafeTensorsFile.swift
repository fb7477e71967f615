/// Where one tensor lives in a safetensors file.
public struct TensorInfo: Sendable, Equatable, Hashable {
  public var name: String
  public var dtype: DType
  /// Logical shape (element counts, also for `F4`).
  public var shape: [Int]
  /// Byte range relative to the start of the data section.
  public var dataOffsets: Range<Int>

  public init(name: String, dtype: DType, shape: [Int], dataOffsets: Range<Int>) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.dataOffsets = dataOffsets
  }

  /// Number of elements (validated not to overflow when read from a file).
  public var elementCount: Int { CheckpointIO.elementCount(of: shape) ?? 0 }
  public var byteCount: Int { dataOffsets.count }
}

/// A validated, memory-mapped safetensors file.
///
/// Opening checks every rule of the format (see `ValidationRule`): the reference
/// implementation's rules and more (duplicate names, `__metadata__` types, strict
/// JSON). Tensor data is never copied: `bytes(of:)` returns a view of the mapping.
public final class SafeTensorsFile: Sendable {
  /// The most bytes a header may declare, as in the reference implementation.
  public static let maxHeaderLength = 100_000_000

  public let path: String
  public let mapping: MappedFile
  /// `__metadata__`, when present.
  public let metadata: [String: String]?
  /// Tensors in file order (ascending offsets).
  public let tensors: [TensorInfo]
  /// Offset of the data section from the start of the file (8 + header length).
  public let dataStart: Int
  private let indexByName: [String: Int]

  /// Opens and validates `path`, throwing the first problem found.
  public convenience init(path: String) throws(CheckpointError) {
    let mapping = try MappedFile(path: path)
    let parsed = SafeTensorsFile.parse(mapping)
    if let first = parsed.problems.first { throw .invalid(first) }
    self.init(mapping: mapping, parsed: parsed)
  }

  private init(mapping: MappedFile, parsed: ParsedHeader) {
    self.path = mapping.path
    self.mapping = mapping
    self.metadata = parsed.metadata
    self.tensors = parsed.tensors
    self.dataStart = parsed.dataStart
    var index: [String: Int] = [:]
    for (i, tensor) in parsed.tensors.enumerated() { index[tensor.name] = i }
    self.indexByName = index
  }

  /// Validates `path` and returns every problem found (empty when the file is valid)
  /// together with the opened file when it is valid. Throws only when the file
  /// cannot be opened at all.
  public static func validate(path: String) throws(CheckpointError) -> (
    file: SafeTensorsFile?, problems: [ValidationProblem]
  ) {
    let mapping = try MappedFile(path: path)
    let parsed = parse(mapping)
    if parsed.problems.isEmpty {
      return (SafeTensorsFile(mapping: mapping, parsed: parsed), [])
    }
    return (nil, parsed.problems)
  }

  /// The tensor named `name`.
  public func tensor(named name: String) -> TensorInfo? {
    indexByName[name].map { tensors[$0] }
  }

  /// The stored bytes of `tensor` (a view of the mapping; no copy).
  public func bytes(of tensor: TensorInfo) -> UnsafeRawBufferPointer {
    mapping.bytes(fileRange(of: tensor))
  }

  /// The byte range of `tensor` within the file.
  public func fileRange(of tensor: TensorInfo) -> Range<Int> {
    (dataStart + tensor.dataOffsets.lowerBound)..<(dataStart + tensor.dataOffsets.upperBound)
  }

  /// Drops `tensor`'s pages from the resident set once it has been processed.
  public func release(_ tensor: TensorInfo) {
    mapping.release(fileRange(of: tensor))
  }

  /// Total bytes of tensor data.
  public var dataByteCount: Int { mapping.size - dataStart }
}

// MARK: - Parsing and validation

/// The result of validating a whole safetensors file: its header's contents and
/// every problem found. `tensors` and `metadata` are only meaningful when
/// `problems` is empty.
public struct ParsedHeader: Sendable {
  /// `__metadata__`, when present and valid.
  public var metadata: [String: String]?
  /// Tensors in file order (ascending offsets).
  public var tensors: [TensorInfo] = []
  /// Offset of the data section from the start of the file (8 + header length).
  public var dataStart = 0
  /// Every problem found; empty when the file is valid.
  public var problems: [ValidationProblem] = []
}

extension SafeTensorsFile {
  /// Validates a whole safetensors file held in memory (`bytes` is the entire file,
  /// from the 8-byte header length to the last data byte) with exactly the checks
  /// `validate(path:)` runs on a mapped file. Never touches the disk and never traps,
  /// whatever `bytes` holds; `file` only names the input in the problems.
  ///
  /// - Returns: every problem found; empty when the bytes are a valid file.
  public static func validate(bytes: UnsafeRawBufferPointer, file: String = "<memory>") -> [ValidationProblem] {
    parse(bytes, file: file).problems
  }

  /// Validates a whole safetensors file held in memory, like `validate(bytes:file:)`,
  /// and also returns the header's tensors, metadata and data offset. When the
  /// result has no problems, every tensor's `dataStart + dataOffsets` lies inside
  /// `bytes`.
  public static func parseHeader(bytes: UnsafeRawBufferPointer, file: String = "<memory>") -> ParsedHeader {
    parse(bytes, file: file)
  }

  /// Parses and validates the whole of `mapping`.
  static func parse(_ mapping: MappedFile) -> ParsedHeader {
    parse(mapping.bytes(0..<mapping.size), file: mapping.path)
  }

  /// Parses and validates the header of the file held in `bytes`. Header-level
  /// problems stop the parse; entry-level problems are all collected.
  static func parse(_ bytes: UnsafeRawBufferPointer, file: String) -> ParsedHeader {
    var result = ParsedHeader()
    func fail(_ rule: ValidationRule, _ tensor: String? = nil, _ detail: String) {
      result.problems.append(ValidationProblem(rule: rule, file: file, tensor: tensor, detail: detail))
    }
    let size = bytes.count
    guard size >= 8 else {
      fail(.fileTooSmall, nil, "the file is \(size) bytes long")
      return result
    }
    let lengthBytes = UnsafeRawBufferPointer(rebasing: bytes[0..<8])
    var declared: UInt64 = 0
    for i in (0..<8).reversed() { declared = declared << 8 | UInt64(lengthBytes[i]) }
    guard declared <= UInt64(maxHeaderLength) else {
      fail(.headerTooLarge, nil, "the header declares \(declared) bytes")
      return result
    }
    let headerLength = Int(declared)
    guard headerLength <= size - 8 else {
      fail(
        .headerIncomplete, nil,
        "the header declares \(headerLength) bytes but the file has \(size - 8) after the length")
      return result
    }
    result.dataStart = 8 + headerLength
    let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)])
      .assumingMemoryBound(to: UInt8.self)
    guard String(validating: headerBytes, as: UTF8.self) != nil else {
      fail(.headerNotUTF8, nil, "the \(headerLength)-byte header is not valid UTF-8")
      return result
    }
    guard headerLength > 0, headerBytes[0] == UInt8(ascii: "{") else {
      let first = headerLength > 0 ? "byte 0x\(String(headerBytes[0], radix: 16))" : "nothing"
      fail(.headerStart, nil, "the header starts with \(first)")
      return result
    }
    let json: JSONValue
    do {
      json = try JSONParser.parse(headerBytes)
    } catch {
      fail(.headerNotJSON, nil, "the header is not valid JSON: \(error)")
      return result
    }
    guard let members = json.members else {
      fail(.headerStart, nil, "the header is \(json.kindName), not an object")
      return result
    }

    var seen = Set<String>()
    var entries: [TensorInfo] = []
    for member in members {
      let name = member.key
      if !seen.insert(name).inserted {
        fail(
          name == "__metadata__" ? .metadataNotStringMap : .duplicateName, name,
          "the name appears more than once in the header")
        continue
      }
      if name == "__metadata__" {
        guard let pairs = member.value.members else {
          fail(.metadataNotStringMap, nil, "__metadata__ is \(member.value.kindName)")
          continue
        }
        var metadata: [String: String] = [:]
        var valid = true
        for pair in pairs {
          guard let value = pair.value.stringValue else {
            fail(.metadataNotStringMap, nil, "__metadata__ key '\(pair.key)' holds \(pair.value.kindName)")
            valid = false
            continue
          }
          if metadata.updateValue(value, forKey: pair.key) != nil {
            fail(.metadataNotStringMap, nil, "__metadata__ key '\(pair.key)' appears twice")
            valid = false
          }
        }
        if valid { result.metadata = metadata }
        continue
      }
      if let entry = parseEntry(name: name, value: member.value, fail: fail) {
        entries.append(entry)
      }
    }
    guard result.problems.isEmpty else { return result }

    // Layout: contiguous from 0, no gaps, no overlaps, ending exactly at end of file.
    entries.sort {
      ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound)
    }
    var expectedStart = 0
    var previous: String?
    for entry in entries {
      let begin = entry.dataOffsets.lowerBound
      if begin > expectedStart {
        let after = previous.map { "after '\($0)' ends at \(expectedStart)" } ?? "the data section starts at 0"
        fail(.offsetsGap, entry.name, "it begins at \(begin) but \(after)")
      } else if begin < expectedStart {
        fail(
          .offsetsOverlap, entry.name,
          "it begins at \(begin), inside '\(previous ?? "?")' which ends at \(expectedStart)")
      }
      expectedStart = max(expectedStart, entry.dataOffsets.upperBound)
      previous = entry.name
    }
    let available = size - result.dataStart
    if result.problems.isEmpty {
      if expectedStart > available {
        let last = entries.last { $0.dataOffsets.upperBound > available }
        fail(
          .dataPastEnd, last?.name,
          "the data section needs \(expectedStart) bytes but the file has \(available) after the header")
      } else if expectedStart < available {
        fail(
          .trailingBytes, nil, "the tensors end at \(expectedStart) but \(available - expectedStart) more bytes follow")
      }
    }
    result.tensors = entries
    return result
  }

  private static func parseEntry(
    name: String, value: JSONValue, fail: (ValidationRule, String?, String) -> Void
  ) -> TensorInfo? {
    guard let fields = value.members else {
      fail(.entryNotObject, name, "the entry is \(value.kindName)")
      return nil
    }
    var ok = true
    for key in ["dtype", "shape", "data_offsets"] where fields.filter({ $0.key == key }).count > 1 {
      fail(.entryNotObject, name, "the entry has '\(key)' twice")
      ok = false
    }
    var dtype: DType?
    switch value["dtype"] {
    case nil:
      fail(.missingDType, name, "the entry has no 'dtype'")
      ok = false
    case .string(let text)?:
      dtype = DType(rawValue: text)
      if dtype == nil {
        fail(.unknownDType, name, "unknown dtype '\(text)'")
        ok = false
      }
    case let other?:
      fail(.unknownDType, name, "dtype is \(other.kindName)")
      ok = false
    }
    var shape: [Int] = []
    if let shapeValue = value["shape"] {
      if let dims = shapeValue.arrayValue {
        for dim in dims {
          guard let d = dim.uint64Value else {
            fail(.invalidShape, name, "shape holds \(dim.kindName)")
            ok = false
            break
          }
          guard d <= UInt64(Int.max) else {
            fail(.sizeOverflow, name, "dimension \(d) does not fit in 63 bits")
            ok = false
            break
          }
          shape.append(Int(d))
        }
      } else {
        fail(.invalidShape, name, "shape is \(shapeValue.kindName)")
        ok = false
      }
    } else {
      fail(.missingShape, name, "the entry has no 'shape'")
      ok = false
    }
    var offsets: Range<Int>?
    if let offsetsValue = value["data_offsets"] {
      if let pair = offsetsValue.arrayValue, pair.count == 2, let begin = pair[0].uint64Value,
        let end = pair[1].uint64Value
      {
        if begin > UInt64(Int.max) || end > UInt64(Int.max) {
          fail(.dataPastEnd, name, "data_offsets [\(begin), \(end)] lie beyond any file")
          ok = false
        } else if end < begin {
          fail(.offsetsReversed, name, "data_offsets [\(begin), \(end)] end before they begin")
          ok = false
        } else {
          offsets = Int(begin)..<Int(end)
        }
      } else {
        fail(
          .invalidDataOffsets, name,
          "data_offsets is \(offsetsValue.kindName)\(offsetsValue.arrayValue.map { " of \($0.count)" } ?? "")")
        ok = false
      }
    } else {
      fail(.missingDataOffsets, name, "the entry has no 'data_offsets'")
      ok = false
    }
    guard ok, let dtype, let offsets else { return nil }
    guard let count = elementCount(of: shape) else {
      fail(.sizeOverflow, name, "shape \(shape) has more elements than fit in 64 bits")
      return nil
    }
    let (bits, overflow) = count.multipliedReportingOverflow(by: dtype.bitsPerElement)
    guard !overflow else {
      fail(.sizeOverflow, name, "\(count) elements of \(dtype.rawValue) overflow 64 bits")
      return nil
    }
    guard bits % 8 == 0 else {
      fail(.subByteMisaligned, name, "\(count) elements of \(dtype.rawValue) are \(bits) bits, not whole bytes")
      return nil
    }
    guard bits / 8 == offsets.count else {
      fail(
        .sizeMismatch, name,
        "shape \(shape) of \(dtype.rawValue) needs \(bits / 8) bytes but data_offsets [\(offsets.lowerBound), \(offsets.upperBound)] span \(offsets.count)"
      )
      return nil
    }
    return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: offsets)
  }
}
