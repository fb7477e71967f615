import Foundation

/// A recipe stage's options decoded straight into a pass configuration through its
/// `Decodable` conformance, the one the pass registry reads JSON with. A stage is one flat
/// mapping, so:
/// - a key is the configuration's coding key in snake_case (`groupSize` is `group_size`);
/// - a nested record (a `RankRule`, the quantization options of a quantize stage) takes
///   its keys from the same mapping, beside the others;
/// - scalars are read by the type asked for, with the messages recipes give: "must be a
///   number, not 'x'", "'x' is not allowed; allowed: a, b" (``RecipeChoice``);
/// - a list stands for a list of strings, and a single value is a list of one.
///
/// Errors are `DecodingError`s whose coding path ends with the key and whose description
/// is the reason; ``RecipeOptionDecoder/recipeError(_:options:file:stageLine:kind:)``
/// turns them into file:line:key errors.
struct RecipeOptionDecoder: Decoder {
  let options: [String: RecipeOption]
  let codingPath: [any CodingKey]
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  init(_ options: [String: RecipeOption], codingPath: [any CodingKey] = []) {
    self.options = options
    self.codingPath = codingPath
  }

  /// `T` decoded from `options`.
  static func decode<T: Decodable>(_ type: T.Type, from options: [String: RecipeOption]) throws -> T {
    try T(from: RecipeOptionDecoder(options))
  }

  func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
    KeyedDecodingContainer(Options<Key>(options: options, codingPath: codingPath))
  }

  func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
    throw DecodingError.typeMismatch(
      [String].self, .init(codingPath: codingPath, debugDescription: "a stage's options are a mapping"))
  }

  func singleValueContainer() throws -> any SingleValueDecodingContainer {
    throw DecodingError.typeMismatch(
      String.self, .init(codingPath: codingPath, debugDescription: "a stage's options are a mapping"))
  }

  /// The recipe key of a coding key: its name in snake_case, as JSONEncoder's
  /// `convertToSnakeCase` writes it (`groupSize` is `group_size`; `max_error` stays).
  static func key(_ key: any CodingKey) -> String {
    let name = Array(key.stringValue)
    var out = ""
    for (i, c) in name.enumerated() {
      if c.isUppercase, i > 0 {
        let previous = name[i - 1]
        let nextIsLower = i + 1 < name.count && name[i + 1].isLowercase
        if previous.isLowercase || previous.isNumber || (previous.isUppercase && nextIsLower) { out += "_" }
      }
      out += c.lowercased()
    }
    return out
  }

  /// The file:line:key error a failure to decode `options` stands for: the key is the
  /// last of the error's coding path (the stage kind when there is none), the line that
  /// key's (the stage's when the key is not given).
  static func recipeError(
    _ error: DecodingError, options: [String: RecipeOption], file: String, stageLine: Int, kind: StageKind
  ) -> SwiftCompressError {
    let path: [any CodingKey]
    let reason: String
    switch error {
    case .keyNotFound(let key, let context):
      path = context.codingPath + [key]
      reason = context.debugDescription
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
      path = context.codingPath
      reason = context.debugDescription
    @unknown default:
      return .invalidRecipe(file: file, line: stageLine, key: kind.rawValue, reason: "\(error)")
    }
    let key = path.last.map(Self.key)
    return .invalidRecipe(
      file: file, line: key.flatMap { options[$0]?.line } ?? stageLine, key: key ?? kind.rawValue, reason: reason)
  }

  // MARK: - Containers

  /// The options as a keyed container (the stage, or a record nested in it).
  struct Options<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let options: [String: RecipeOption]
    let codingPath: [any CodingKey]

    var allKeys: [Key] {
      options.keys.sorted().compactMap { name in
        [Key(stringValue: name), Key(stringValue: Self.camelCase(name))].compactMap { $0 }.first {
          RecipeOptionDecoder.key($0) == name
        }
      }
    }

    static func camelCase(_ name: String) -> String {
      let words = name.split(separator: "_")
      return (words.first.map(String.init) ?? "") + words.dropFirst().map(\.capitalized).joined()
    }

    func contains(_ key: Key) -> Bool { options[RecipeOptionDecoder.key(key)] != nil }

    /// A recipe has no null options: `~` is the text "~".
    func decodeNil(forKey key: Key) throws -> Bool { false }

    func value(_ key: Key) -> Value {
      Value(options: options, option: options[RecipeOptionDecoder.key(key)], codingPath: codingPath + [key])
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
      try value(key).decode(type)
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try value(key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try value(key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try value(key).decode(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try value(key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try value(key).decode(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try value(key).decode(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try value(key).decode(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try value(key).decode(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try value(key).decode(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try value(key).decode(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try value(key).decode(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try value(key).decode(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try value(key).decode(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try value(key).decode(type) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
      -> KeyedDecodingContainer<NestedKey>
    {
      try value(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
      try value(key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { RecipeOptionDecoder(options, codingPath: codingPath) }

    func superDecoder(forKey key: Key) throws -> any Decoder { value(key) }
  }

  /// The value at one key (nil when the key is not given): a scalar, a list of strings,
  /// or a record whose keys sit beside the others.
  struct Value: Decoder, SingleValueDecodingContainer {
    let options: [String: RecipeOption]
    let option: RecipeOption?
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
      KeyedDecodingContainer(Options<Key>(options: options, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
      switch try given() {
      case .scalar(let s): return List(items: [s], codingPath: codingPath)
      case .list(let l): return List(items: l, codingPath: codingPath)
      }
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func given(allowed: [String]? = nil) throws -> RecipeValue {
      guard let option else {
        let reason = "is required" + (allowed.map { "; allowed: \($0.joined(separator: ", "))" } ?? "")
        guard let key = codingPath.last else {
          throw DecodingError.valueNotFound(String.self, .init(codingPath: codingPath, debugDescription: reason))
        }
        throw DecodingError.keyNotFound(key, .init(codingPath: codingPath.dropLast(), debugDescription: reason))
      }
      return option.value
    }

    /// The value as one scalar's text.
    func text(allowed: [String]? = nil) throws -> String {
      switch try given(allowed: allowed) {
      case .scalar(let s): return s
      case .list:
        throw DecodingError.typeMismatch(
          String.self, .init(codingPath: codingPath, debugDescription: "must be a single value, not a list"))
      }
    }

    func failure<T>(_ type: T.Type, _ reason: String) -> DecodingError {
      .typeMismatch(type, .init(codingPath: codingPath, debugDescription: reason))
    }

    func choice(_ type: any RecipeChoice.Type) throws -> any RecipeChoice {
      let s = try text(allowed: type.choices)
      guard let value = type.init(choice: s) else {
        throw DecodingError.dataCorrupted(
          .init(
            codingPath: codingPath,
            debugDescription: "'\(s)' is not allowed; allowed: \(type.choices.joined(separator: ", "))"))
      }
      return value
    }

    func decodeNil() -> Bool { option == nil }

    func decode(_ type: String.Type) throws -> String { try text() }

    func decode(_ type: Bool.Type) throws -> Bool {
      let s = try text()
      guard let v = Bool(s) else { throw failure(type, "must be true or false, not '\(s)'") }
      return v
    }

    func decode(_ type: Double.Type) throws -> Double {
      let s = try text()
      guard let v = Double(s), v.isFinite else { throw failure(type, "must be a number, not '\(s)'") }
      return v
    }

    func decode(_ type: Float.Type) throws -> Float {
      let s = try text()
      guard let v = Float(s), v.isFinite else { throw failure(type, "must be a number, not '\(s)'") }
      return v
    }

    func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
      let s = try text()
      guard let v = I(s) else {
        throw failure(type, "must be a whole number\(I.isSigned ? "" : " >= 0"), not '\(s)'")
      }
      return v
    }

    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
      if let choices = T.self as? any RecipeChoice.Type, let value = try choice(choices) as? T {
        return value
      }
      return try T(from: self)
    }
  }

  /// A list option's items, each a string.
  struct List: UnkeyedDecodingContainer {
    let items: [String]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    mutating func next() throws -> String {
      guard !isAtEnd else {
        throw DecodingError.valueNotFound(
          String.self, .init(codingPath: codingPath, debugDescription: "has fewer items than needed"))
      }
      defer { currentIndex += 1 }
      return items[currentIndex]
    }

    mutating func decodeNil() throws -> Bool { false }

    mutating func decode(_ type: String.Type) throws -> String { try next() }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
      let item = try next()
      return try T(from: Value(options: [:], option: RecipeOption(.scalar(item)), codingPath: codingPath))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
      -> KeyedDecodingContainer<NestedKey>
    {
      throw DecodingError.typeMismatch(
        [String: String].self, .init(codingPath: codingPath, debugDescription: "must be a list of values"))
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
      throw DecodingError.typeMismatch(
        [String].self, .init(codingPath: codingPath, debugDescription: "must be a list of values"))
    }

    mutating func superDecoder() throws -> any Decoder {
      Value(options: [:], option: RecipeOption(.scalar(try next())), codingPath: codingPath)
    }
  }
}

/// An option that takes one of a few names (an enum): a recipe reads it by name, and an
/// unknown name is an error listing the allowed ones.
public protocol RecipeChoice {
  /// The names, in the order messages list them.
  static var choices: [String] { get }
  init?(choice: String)
}

extension RecipeChoice where Self: CaseIterable & RawRepresentable, RawValue == String {
  public static var choices: [String] { allCases.map(\.rawValue) }
  public init?(choice: String) { self.init(rawValue: choice) }
}

extension QuantizationScheme: RecipeChoice {
  /// Case-insensitively, MXFP4 and NVFP4 naming the A16 presets (as on the command line).
  public init?(choice: String) { self.init(name: choice) }
}

extension ScaleSearch: RecipeChoice {}
extension PruneMethod: RecipeChoice {}
extension PruneScope: RecipeChoice {}
extension SparseFormat: RecipeChoice {}
extension StructuredUnit: RecipeChoice {}
extension UnitNorm: RecipeChoice {}
extension FactorizationMethod: RecipeChoice {}
