// swift-tools-version: 6.0
import PackageDescription

let package = Package(
  name: "swiftcompress",
  platforms: [.macOS(.v14)],
  products: [
    .executable(name: "swiftcompress", targets: ["swiftcompress"]),
    .library(name: "CheckpointIO", targets: ["CheckpointIO"]),
    .library(name: "SwiftCompressKit", targets: ["SwiftCompressKit"]),
    .library(name: "LinearAlgebra", targets: ["LinearAlgebra"]),
    .library(name: "Tokenizers", targets: ["Tokenizers"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    // Recipes are YAML; Yams keeps each node's line and column for error messages.
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
  ],
  targets: [
    // cblas + lapacke from OpenBLAS (Debian: libopenblas0, liblapacke), loaded on the
    // first call (Sources/CLapack/lazy.c), not at start.
    .target(name: "CLapack", linkerSettings: [.linkedLibrary("dl")]),
    // The few hot loops (dtype conversion, reductions), with AVX2/F16C paths
    // chosen at run time and portable fallbacks. No global -target-cpu.
    .target(name: "CKernels", linkerSettings: [.linkedLibrary("z")]),
    .target(name: "LinearAlgebra", dependencies: ["CLapack"]),
    .target(name: "CheckpointIO", dependencies: ["CKernels"]),
    // Hugging Face tokenizer.json (BPE byte-level and SentencePiece-style, WordPiece), token-exact.
    .target(name: "Tokenizers", dependencies: ["CheckpointIO"]),
    .target(
      name: "SwiftCompressKit",
      dependencies: ["CheckpointIO", "CKernels", "LinearAlgebra", .product(name: "Yams", package: "Yams")]),
    .executableTarget(
      name: "swiftcompress",
      dependencies: [
        "SwiftCompressKit", "CheckpointIO", "CKernels", "LinearAlgebra", "Tokenizers",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .executableTarget(
      name: "swiftcompress-bench",
      dependencies: ["CheckpointIO", "CKernels", "LinearAlgebra", "SwiftCompressKit"],
      path: "Benchmarks/swiftcompress-bench"
    ),
    .target(name: "TestSupport", dependencies: ["CKernels"], path: "Tests/TestSupport"),
    .testTarget(name: "KernelsTests", dependencies: ["CKernels", "TestSupport"]),
    .testTarget(name: "LinearAlgebraTests", dependencies: ["LinearAlgebra", "TestSupport"]),
    .testTarget(name: "CheckpointIOTests", dependencies: ["CheckpointIO", "TestSupport"]),
    .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "TestSupport"]),
    .testTarget(name: "SwiftCompressKitTests", dependencies: ["SwiftCompressKit", "CheckpointIO", "TestSupport"]),
    .testTarget(name: "CLITests", dependencies: ["swiftcompress", "CheckpointIO", "SwiftCompressKit", "TestSupport"]),
  ],
  swiftLanguageModes: [.v6]
)
