import SwiftCompressKit

// MERGE: the forward-pass branch brings `ForwardModels.open(_:)`. Until the three branches are
// merged this stub refuses, so that evaluate and calibrate compile; the merge replaces its body
// with `try ForwardModels.open(path)`.

/// The model at `path` (a folder with config.json, or a file), ready to run forward.
func openModel(_ path: String) throws -> any ForwardModel {
  throw SwiftCompressError.invalidCheckpoint(
    path: path, reason: "this build has no forward pass (ForwardModels.open arrives with the forward-pass work)")
}
