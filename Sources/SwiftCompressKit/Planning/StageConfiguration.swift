import CheckpointIO
import Foundation

/// The options of one kind of recipe stage. A stage's options decode straight into it
/// (``RecipeOptionDecoder``, through the same `Codable` conformance the pass registry
/// reads JSON with), the pass it makes validates it, and the pass gives it back
/// (``CompressionPass/recipeStage``) to be encoded as the effective recipe.
public protocol RecipeStageConfiguration: Codable, Sendable {
  static var stageKind: StageKind { get }

  /// The keys a stage of this kind takes besides targets, exclude and overrides, in the
  /// order messages list them.
  static var optionKeys: [String] { get }

  /// The keys an override may change: those that do not change what the whole model's
  /// config.json says (a quantization scheme, a sparse format) or need whole-model
  /// statistics (global pruning, structured pruning, rank budgets).
  static var overrideKeys: [String] { get }

  /// The pass these options describe; its initializer validates them.
  func pass() throws(SwiftCompressError) -> any CompressionPass
}

extension RecipeStageConfiguration {
  /// Every option with its value, defaults included.
  public var recipeOptions: [String: RecipeOption] { RecipeOptionEncoder.options(self) }
}

extension StageKind {
  /// The options of this kind of stage.
  public var configurationType: any RecipeStageConfiguration.Type {
    switch self {
    case .prune: PrunePass.Configuration.self
    case .factorize: FactorizePass.Configuration.self
    case .quantize: QuantizeStageConfiguration.self
    }
  }

  /// The pass a stage's options describe. Errors name the file, the line and the key;
  /// those of the pass, which names its command-line option, name the recipe key.
  func pass(options: [String: RecipeOption], file: String, stageLine: Int) throws(SwiftCompressError)
    -> any CompressionPass
  {
    do throws(SwiftCompressError) {
      let configuration: any RecipeStageConfiguration
      do {
        configuration = try RecipeOptionDecoder.decode(configurationType, from: options)
      } catch let error as DecodingError {
        throw RecipeOptionDecoder.recipeError(
          error, options: options, file: file, stageLine: stageLine, kind: self)
      } catch let error as SwiftCompressError {
        throw error
      } catch {
        throw .invalidRecipe(file: file, line: stageLine, key: rawValue, reason: "\(error)")
      }
      return try configuration.pass()
    } catch {
      switch error {
      case .invalidRecipe: throw error
      case .invalidOption(let option, let reason):
        let key = option.hasPrefix("--") ? String(option.dropFirst(2)).replacingOccurrences(of: "-", with: "_") : option
        let known = options[key] != nil
        throw .invalidRecipe(
          file: file, line: options[key]?.line ?? stageLine, key: known ? key : rawValue,
          reason: known ? reason : "\(option): \(reason)")
      default:
        throw .invalidRecipe(file: file, line: stageLine, key: rawValue, reason: error.errorDescription ?? "\(error)")
      }
    }
  }
}

extension Recipe {
  /// The one-stage recipe of a single-pass command (quantize, prune, factorize), with
  /// every option: `--include` patterns become the stage's targets.
  public static func singleStage(
    _ pass: any CompressionPass, selection: TensorSelection, gates: QualityGates = QualityGates()
  ) -> Recipe? {
    guard let stage = pass.recipeStage else { return nil }
    return Recipe(
      file: "command line",
      stages: [
        RecipeStage(
          kind: type(of: stage).stageKind, targets: selection.include.isEmpty ? nil : selection.include,
          exclude: selection.exclude, options: stage.recipeOptions)
      ], gates: gates)
  }
}
