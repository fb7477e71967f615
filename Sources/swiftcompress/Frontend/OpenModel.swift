import SwiftCompressKit

/// The model at `path` (a folder with config.json, or a file), ready to run forward.
func openModel(_ path: String) throws -> any ForwardModel {
  try ForwardModels.open(path)
}
