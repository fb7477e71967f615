// swift-tools-version: 6.0
// The libFuzzer target over the safetensors reader. A package of its own so that the
// root package's `swift build` and `make test` never see code that needs
// `-sanitize=fuzzer`; built and run only by `make fuzz` (see docs/fuzzing.md).
import PackageDescription

let package = Package(
  name: "swiftcompress-fuzz",
  platforms: [.macOS(.v14)],
  dependencies: [
    .package(name: "swiftcompress", path: "..")
  ],
  targets: [
    // Declares libFuzzer's LLVMFuzzerRunDriver for Swift.
    .target(name: "CFuzzerDriver", path: "CFuzzerDriver"),
    .executableTarget(
      name: "SafeTensorsFuzz",
      dependencies: ["CFuzzerDriver", .product(name: "CheckpointIO", package: "swiftcompress")],
      path: "SafeTensorsFuzz"
    ),
  ],
  swiftLanguageModes: [.v6]
)
