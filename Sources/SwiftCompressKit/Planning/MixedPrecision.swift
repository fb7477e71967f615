import CheckpointIO
import Foundation

/// What one linear module is stored as in a mixed-precision checkpoint: a quantization
/// scheme with its group size, or `keep` (the weight is written as it is).
///
/// Spelled `W4A16` (the run's group size), `W4A16:g32` (32 inputs per group; `g0` is one
/// scale per output channel), `NVFP4`, or `keep`.
public struct SchemeChoice: Hashable, Sendable, SpelledCodable, Comparable {
  /// nil: kept unquantized.
  public let scheme: QuantizationScheme?
  /// Inputs per group for the integer schemes (0: one scale per output channel); 0 for the
  /// schemes with fixed groups and for `keep`.
  public let groupSize: Int

  public static let keep = SchemeChoice(scheme: nil, groupSize: 0)

  public init(scheme: QuantizationScheme?, groupSize: Int) {
    self.scheme = scheme
    self.groupSize = scheme?.fixedGrouping == nil && scheme != nil ? groupSize : 0
  }

  /// Parses `W4A16`, `W4A16:g32`, `NVFP4` or `keep`; `defaultGroupSize` is an integer
  /// scheme's group without `:g`. Throws with the spellings accepted.
  public init(parsing text: String, defaultGroupSize: Int) throws(SwiftCompressError) {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    if trimmed.lowercased() == "keep" {
      self = .keep
      return
    }
    let parts = trimmed.split(separator: ":", maxSplits: 1).map(String.init)
    guard let name = parts.first, let scheme = QuantizationScheme(name: name) else {
      throw .invalidOption(
        option: "scheme",
        reason:
          "unknown scheme '\(text)'; use one of \(QuantizationScheme.allCases.map(\.rawValue).joined(separator: ", ")), optionally with :gN for an integer scheme's group size (W4A16:g32), or keep"
      )
    }
    var group = defaultGroupSize
    if parts.count == 2 {
      guard scheme.fixedGrouping == nil else {
        throw .invalidOption(
          option: "scheme",
          reason:
            "'\(text)': \(scheme.rawValue) always uses \(scheme.fixedGrouping ?? "its own groups"); leave out :\(parts[1])"
        )
      }
      let digits = parts[1].hasPrefix("g") ? String(parts[1].dropFirst()) : parts[1]
      guard let value = Int(digits) else {
        throw .invalidOption(option: "scheme", reason: "'\(text)': the group size is :gN with N an integer (W4A16:g32)")
      }
      group = value
    }
    let multiple = IntegerPackCodec.groupMultiple(bits: scheme.bits)
    if scheme.fixedGrouping == nil, !(group >= 0 && group % multiple == 0) {
      throw .invalidOption(
        option: "scheme",
        reason:
          "'\(text)': the group size must be 0 (one scale per output channel) or a positive multiple of \(multiple) for \(scheme.rawValue), not \(group)"
      )
    }
    self.init(scheme: scheme, groupSize: group)
  }

  /// The codec that stores it, nil for `keep`.
  public var codec: (any QuantizationCodec)? { scheme?.codec(groupSize: groupSize) }

  public var description: String {
    guard let scheme else { return "keep" }
    return scheme.fixedGrouping == nil ? "\(scheme.rawValue):g\(groupSize)" : scheme.rawValue
  }

  /// How the plan's notes name it (`NVFP4`, `W4A16`).
  var label: String { scheme?.label ?? "keep" }

  public static func < (a: SchemeChoice, b: SchemeChoice) -> Bool { a.description < b.description }

  /// The allocator's default candidates, from the smallest to the largest: NVFP4 (4.5 bits
  /// per weight with its scales), MXFP4 (4.25), W4A16 in groups of 128 (4.125) and 32
  /// (4.5), W8A16 in groups of 128 (8.125), and the weight as it is.
  public static let defaultCandidates: [SchemeChoice] = [
    SchemeChoice(scheme: .nvfp4, groupSize: 0), SchemeChoice(scheme: .mxfp4, groupSize: 0),
    SchemeChoice(scheme: .w4a16, groupSize: 128), SchemeChoice(scheme: .w4a16, groupSize: 32),
    SchemeChoice(scheme: .w8a16, groupSize: 128), .keep,
  ]

  /// A comma-separated list of choices.
  public static func list(_ text: String, defaultGroupSize: Int) throws(SwiftCompressError) -> [SchemeChoice] {
    var result: [SchemeChoice] = []
    for part in text.split(separator: ",") {
      let choice = try SchemeChoice(parsing: String(part), defaultGroupSize: defaultGroupSize)
      if !result.contains(choice) { result.append(choice) }
    }
    guard !result.isEmpty else { throw .invalidOption(option: "--candidates", reason: "the list is empty") }
    return result
  }
}

/// One `--scheme-for REGEX=SCHEME` rule: weights whose name the regular expression is found
/// in are stored as the scheme (later rules win).
public struct SchemeRule: Hashable, @unchecked Sendable, SpelledCodable {  // Regex is immutable
  /// A regular expression searched in the weight's tensor name.
  public let pattern: String
  public let choice: SchemeChoice
  private let regex: Regex<AnyRegexOutput>

  public init(pattern: String, choice: SchemeChoice) throws(SwiftCompressError) {
    do {
      regex = try Regex(pattern)
    } catch {
      throw .invalidPattern(option: "--scheme-for", pattern: pattern, reason: "\(error)")
    }
    self.pattern = pattern
    self.choice = choice
  }

  public static func == (a: SchemeRule, b: SchemeRule) -> Bool { a.pattern == b.pattern && a.choice == b.choice }
  public func hash(into hasher: inout Hasher) {
    hasher.combine(pattern)
    hasher.combine(choice)
  }

  /// Parses `REGEX=SCHEME` (the last `=` separates them).
  public init(parsing text: String, defaultGroupSize: Int) throws(SwiftCompressError) {
    guard let equals = text.lastIndex(of: "="), equals != text.startIndex else {
      throw .invalidOption(
        option: "--scheme-for", reason: "'\(text)' is not REGEX=SCHEME (for example 'mlp\\.down_proj=W8A16')")
    }
    try self.init(
      pattern: String(text[..<equals]),
      choice: try SchemeChoice(parsing: String(text[text.index(after: equals)...]), defaultGroupSize: defaultGroupSize))
  }

  func matches(_ name: String) -> Bool {
    ((try? regex.firstMatch(in: name)) ?? nil) != nil
  }

  public var description: String { "\(pattern)=\(choice)" }

}

/// The size an allocation must fit.
public enum AllocationTarget: Sendable, Equatable, Codable, CustomStringConvertible {
  /// At most this many stored bits per weight over the allocated modules (scales and zero
  /// points included).
  case bitsPerWeight(Double)
  /// At most this many bytes for the whole output checkpoint's files.
  case size(Int)

  public var description: String {
    switch self {
    case .bitsPerWeight(let b): "\(Format.fixed(b, 3)) bits per weight"
    case .size(let s): "\(Format.bytes(s))"
    }
  }

  enum CodingKeys: String, CodingKey { case bitsPerWeight, size }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    if let b = try c.decodeIfPresent(Double.self, forKey: .bitsPerWeight) {
      self = .bitsPerWeight(b)
    } else {
      self = .size(try c.decode(Int.self, forKey: .size))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    switch self {
    case .bitsPerWeight(let b): try c.encode(b, forKey: .bitsPerWeight)
    case .size(let s): try c.encode(s, forKey: .size)
    }
  }

  /// Parses a size: bytes, or a number with K, M, G (powers of 1000) or KiB, MiB, GiB.
  public static func parseSize(_ text: String) -> Int? {
    let units: [(String, Double)] = [
      ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("K", 1e3),
      ("M", 1e6), ("G", 1e9), ("B", 1),
    ]
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
      guard let value = Double(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)),
        value.isFinite, value > 0
      else { return nil }
      return Int((value * factor).rounded(.down))
    }
    guard let value = Int(trimmed), value > 0 else { return nil }
    return value
  }
}

/// The multiple-choice knapsack of mixed precision: choose one option per item (a module,
/// or modules that must share a scheme) to minimise the summed loss with the summed bits
/// within a budget.
///
/// Method: each item's options are reduced to the lower convex hull of (bits, loss); a
/// Lagrangian sweep over the price λ of a bit takes the hull steps in order of decreasing
/// loss saved per bit while they fit, which solves the LP relaxation (Sinha & Zoltners
/// 1979); a greedy fill then spends what is left on any option that fits; and the result
/// is never worse than any uniform choice that fits. The LP optimum is a lower bound on
/// the exact optimum, so `lowerBound` states the gap; it is at most the loss of the one
/// hull step the sweep could not take.
public enum Allocator {
  /// One option of an item.
  public struct Option: Sendable, Equatable {
    public var choice: SchemeChoice
    /// Stored bits of the item's weights (with their scales).
    public var bits: Double
    /// The estimated loss (summed over the item's modules).
    public var loss: Double

    public init(choice: SchemeChoice, bits: Double, loss: Double) {
      self.choice = choice
      self.bits = bits
      self.loss = loss
    }
  }

  /// A module, or modules that must share a scheme, with the options that can store it.
  public struct Item: Sendable, Equatable {
    public var name: String
    public var modules: [String]
    public var options: [Option]

    public init(name: String, modules: [String], options: [Option]) {
      self.name = name
      self.modules = modules
      self.options = options
    }
  }

  public struct Solution: Sendable, Equatable {
    /// The chosen option of each item, in item order.
    public var choices: [Option]
    public var bits: Double
    public var loss: Double
    /// A lower bound on the least loss within the budget (the LP relaxation's optimum).
    public var lowerBound: Double
  }

  /// The feasible range of budgets: the cheapest choice of every item, and the most any
  /// choice of every item can use.
  public static func range(_ items: [Item]) -> ClosedRange<Double> {
    let low = items.reduce(0) { $0 + ($1.options.map(\.bits).min() ?? 0) }
    let high = items.reduce(0) { $0 + ($1.options.map(\.bits).max() ?? 0) }
    return low...max(low, high)
  }

  /// The options of `options` on the lower convex hull of (bits, loss), by increasing
  /// bits (and so decreasing loss); ties go to the earlier option.
  static func hull(_ options: [Option]) -> [Option] {
    let sorted = options.enumerated().sorted { a, b in
      a.element.bits != b.element.bits
        ? a.element.bits < b.element.bits
        : (a.element.loss != b.element.loss ? a.element.loss < b.element.loss : a.offset < b.offset)
    }.map(\.element)
    // Drop the dominated: keep only options with strictly less loss than every cheaper one.
    var frontier: [Option] = []
    for option in sorted where frontier.last.map({ option.loss < $0.loss }) ?? true {
      if let last = frontier.last, last.bits == option.bits { continue }
      frontier.append(option)
    }
    var hull: [Option] = []
    for option in frontier {
      while hull.count >= 2 {
        let (a, b) = (hull[hull.count - 2], hull[hull.count - 1])
        // b is above the segment a-option: not on the lower hull.
        let cross = (b.bits - a.bits) * (option.loss - a.loss) - (b.loss - a.loss) * (option.bits - a.bits)
        if cross <= 0 { hull.removeLast() } else { break }
      }
      hull.append(option)
    }
    return hull
  }

  /// The allocation of `items` within `budget` bits. Throws when the budget is below the
  /// cheapest allocation.
  public static func allocate(_ items: [Item], budget: Double) throws(SwiftCompressError) -> Solution {
    let hulls = items.map { hull($0.options) }
    if let empty = items.indices.first(where: { hulls[$0].isEmpty }) {
      throw .invalidModule(name: items[empty].name, reason: "no candidate scheme can store it")
    }
    var position = [Int](repeating: 0, count: items.count)
    var bits = hulls.reduce(0) { $0 + $1[0].bits }
    var loss = hulls.reduce(0) { $0 + $1[0].loss }
    guard bits <= budget * (1 + 1e-12) else {
      throw .invalidOption(
        option: "target", reason: "\(budget) bits are below the cheapest allocation, \(bits) bits: give a larger target"
      )
    }
    // The hull steps, by decreasing loss saved per bit (convexity keeps each item's steps in order).
    struct Step {
      var item: Int
      var to: Int
      var slope: Double
    }
    var steps: [Step] = []
    for (i, h) in hulls.enumerated() where h.count > 1 {
      for k in 1..<h.count {
        steps.append(Step(item: i, to: k, slope: (h[k - 1].loss - h[k].loss) / (h[k].bits - h[k - 1].bits)))
      }
    }
    steps.sort { $0.slope != $1.slope ? $0.slope > $1.slope : ($0.item != $1.item ? $0.item < $1.item : $0.to < $1.to) }
    var lowerBound = loss
    var blocked = false
    for step in steps {
      let h = hulls[step.item]
      guard position[step.item] == step.to - 1 else { continue }
      let extra = h[step.to].bits - h[step.to - 1].bits
      let saved = h[step.to - 1].loss - h[step.to].loss
      if !blocked {
        if bits + extra <= budget {
          bits += extra
          loss -= saved
          lowerBound = loss
          position[step.item] = step.to
        } else {
          // The LP relaxation takes this step in part: its loss is the bound.
          lowerBound = loss - saved * max(0, budget - bits) / extra
          blocked = true
        }
      }
    }
    if !blocked { lowerBound = loss }
    var chosen = items.indices.map { hulls[$0][position[$0]] }
    // Greedy fill: the largest loss saved per extra bit among options that still fit.
    while true {
      var best: (item: Int, option: Option, rate: Double)?
      for (i, item) in items.enumerated() {
        for option in item.options where option.loss < chosen[i].loss {
          let extra = option.bits - chosen[i].bits
          guard bits + extra <= budget else { continue }
          let rate = extra <= 0 ? Double.infinity : (chosen[i].loss - option.loss) / extra
          if best == nil || rate > best!.rate { best = (i, option, rate) }
        }
      }
      guard let best else { break }
      bits += best.option.bits - chosen[best.item].bits
      loss -= chosen[best.item].loss - best.option.loss
      chosen[best.item] = best.option
    }
    // Never worse than one choice for every item, when that fits.
    var uniformChoices: [SchemeChoice] = []
    for item in items {
      for option in item.options where !uniformChoices.contains(option.choice) { uniformChoices.append(option.choice) }
    }
    for choice in uniformChoices {
      let options = items.compactMap { $0.options.first { $0.choice == choice } }
      guard options.count == items.count else { continue }
      let (b, l) = options.reduce((0.0, 0.0)) { ($0.0 + $1.bits, $0.1 + $1.loss) }
      if b <= budget, l < loss { (chosen, bits, loss) = (options, b, l) }
    }
    return Solution(choices: chosen, bits: bits, loss: loss, lowerBound: min(lowerBound, loss))
  }
}

/// A value written in JSON and recipes as its spelling (`description`), parsed back with the
/// default group size.
public protocol SpelledCodable: Codable, CustomStringConvertible {
  init(parsing text: String, defaultGroupSize: Int) throws(SwiftCompressError)
}

extension SpelledCodable {
  public init(from decoder: any Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    do {
      try self.init(parsing: text, defaultGroupSize: QuantizePass.Configuration.defaultGroupSize)
    } catch {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: error.errorDescription ?? "\(error)"))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(description)
  }
}
