import Foundation

/// A pass configuration written back as a recipe stage's options through its `Encodable`
/// conformance: the mirror of ``RecipeOptionDecoder``. Keys are the coding keys in
/// snake_case, a nested record's keys sit beside the others, numbers are written as
/// `%g`, strings and enums as their text, and lists as lists of strings. Keys the
/// configuration leaves out (`encodeIfPresent` of nil) are not written.
struct RecipeOptionEncoder: Encoder {
  final class Storage {
    var values: [String: RecipeValue] = [:]
    var failure: String?
  }

  let storage: Storage
  let codingPath: [any CodingKey]
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  /// The options `value` encodes to. A configuration that cannot be written as one flat
  /// mapping of values and lists (a list of records, say) is a programming error, which
  /// RecipeOptionsTests would catch for every stage configuration.
  static func options(_ value: some Encodable) -> [String: RecipeOption] {
    let storage = Storage()
    do {
      try value.encode(to: RecipeOptionEncoder(storage: storage, codingPath: []))
    } catch {
      storage.failure = "\(error)"
    }
    if let failure = storage.failure {
      preconditionFailure("\(type(of: value)) cannot be written as recipe options: \(failure)")
    }
    return storage.values.mapValues { RecipeOption($0) }
  }

  func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
    KeyedEncodingContainer(Options<Key>(storage: storage, codingPath: codingPath))
  }

  func unkeyedContainer() -> any UnkeyedEncodingContainer {
    storage.failure = "a stage's options are a mapping, not a list"
    return List(storage: storage, key: "", codingPath: codingPath)
  }

  func singleValueContainer() -> any SingleValueEncodingContainer {
    storage.failure = "a stage's options are a mapping, not a value"
    return Value(storage: storage, key: "", codingPath: codingPath)
  }

  /// A scalar's text, as a recipe writes it.
  static func text(_ value: some Encodable) -> String? {
    switch value {
    case let v as String: v
    case let v as Bool: "\(v)"
    case let v as Double: YAMLText.number(v)
    case let v as Float: YAMLText.number(Double(v))
    case let v as any FixedWidthInteger: "\(v)"
    default: nil
    }
  }

  // MARK: - Containers

  /// The stage's options (or a record nested in them: its keys sit beside the others).
  struct Options<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let storage: Storage
    let codingPath: [any CodingKey]

    func value(_ key: Key) -> Value {
      Value(storage: storage, key: RecipeOptionDecoder.key(key), codingPath: codingPath + [key])
    }

    mutating func encodeNil(forKey key: Key) throws {}

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
      var v = self.value(key)
      try v.encode(value)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
      -> KeyedEncodingContainer<NestedKey>
    {
      value(key).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
      value(key).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { RecipeOptionEncoder(storage: storage, codingPath: codingPath) }

    mutating func superEncoder(forKey key: Key) -> any Encoder { value(key) }
  }

  /// The value at one key: a scalar, a list, or a record whose keys sit beside the others.
  struct Value: Encoder, SingleValueEncodingContainer {
    let storage: Storage
    let key: String
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
      KeyedEncodingContainer(Options<Key>(storage: storage, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
      storage.values[key] = .list([])
      return List(storage: storage, key: key, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    mutating func encodeNil() throws {}

    mutating func encode<T: Encodable>(_ value: T) throws { try put(value) }

    func put<T: Encodable>(_ value: T) throws {
      if let text = RecipeOptionEncoder.text(value) {
        storage.values[key] = .scalar(text)
      } else {
        try value.encode(to: self)
      }
    }

    // The primitive types too are written by `put`, as their text.
    mutating func encode(_ value: Bool) throws { try put(value) }
    mutating func encode(_ value: String) throws { try put(value) }
    mutating func encode(_ value: Double) throws { try put(value) }
    mutating func encode(_ value: Float) throws { try put(value) }
    mutating func encode(_ value: Int) throws { try put(value) }
    mutating func encode(_ value: Int8) throws { try put(value) }
    mutating func encode(_ value: Int16) throws { try put(value) }
    mutating func encode(_ value: Int32) throws { try put(value) }
    mutating func encode(_ value: Int64) throws { try put(value) }
    mutating func encode(_ value: UInt) throws { try put(value) }
    mutating func encode(_ value: UInt8) throws { try put(value) }
    mutating func encode(_ value: UInt16) throws { try put(value) }
    mutating func encode(_ value: UInt32) throws { try put(value) }
    mutating func encode(_ value: UInt64) throws { try put(value) }
  }

  /// A list option: its items' text.
  struct List: UnkeyedEncodingContainer {
    let storage: Storage
    let key: String
    let codingPath: [any CodingKey]
    var count = 0

    mutating func append(_ text: String) {
      if case .list(let items) = storage.values[key] { storage.values[key] = .list(items + [text]) }
      count += 1
    }

    mutating func encodeNil() throws {
      storage.failure = "a list option holds no nulls"
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
      guard let text = RecipeOptionEncoder.text(value) else {
        // An enum or other single value: encoded on its own, then appended.
        let item = Storage()
        try value.encode(to: Value(storage: item, key: key, codingPath: codingPath))
        guard case .scalar(let text) = item.values[key] else {
          storage.failure = "a list option holds values, not \(T.self)"
          return
        }
        append(text)
        return
      }
      append(text)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
      -> KeyedEncodingContainer<NestedKey>
    {
      storage.failure = "a list option holds values, not records"
      return KeyedEncodingContainer(Options<NestedKey>(storage: Storage(), codingPath: codingPath))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
      storage.failure = "a list option holds values, not lists"
      return List(storage: Storage(), key: key, codingPath: codingPath)
    }

    mutating func superEncoder() -> any Encoder {
      storage.failure = "a list option holds values, not records"
      return RecipeOptionEncoder(storage: Storage(), codingPath: codingPath)
    }
  }
}
