import CheckpointIO
import Foundation

extension QuantizePass {
  public struct Configuration: Codable, Sendable, Equatable {
    public var scheme: QuantizationScheme
    /// Inputs per group (the row length must be a multiple); 0 for one scale per output
    /// channel (integer schemes: compressed-tensors' `channel` strategy).
    public var groupSize: Int
    /// Modules left unquantized and listed in `quantization_config.ignore`: exact module
    /// names, or `re:` followed by a regular expression matched from the start of the name.
    public var ignore: [String]

    /// How scales are chosen: round-to-nearest from the group maximum (the reference's
    /// rule), or the scale that minimises the group's squared error.
    public var scaleSearch: ScaleSearch

    public init(
      scheme: QuantizationScheme, groupSize: Int = 128, ignore: [String] = ["lm_head"], scaleSearch: ScaleSearch = .none
    ) {
      self.scheme = scheme
      self.groupSize = groupSize
      self.ignore = ignore
      self.scaleSearch = scaleSearch
    }
  }
}
