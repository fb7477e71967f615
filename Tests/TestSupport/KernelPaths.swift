import CKernels
import Synchronization

/// The C kernels' two paths, for tests that compare them: `sck_force_portable_for_testing`
/// switches the whole process, so every test that switches it holds one lock while it
/// does (suites run in parallel; `.serialized` orders only a suite's own tests). A test
/// that does not switch may run on either path meanwhile, which is the same by design.
public enum KernelPaths {
  private static let lock = Mutex(())

  /// `body` on the portable paths, then with the run-time dispatch (AVX2 where the CPU
  /// has it), and the dispatch level seen during the second run.
  public static func both<T>(_ body: () throws -> T) rethrows -> (portable: T, dispatched: T, level: Int32) {
    try lock.withLock { _ in
      sck_force_portable_for_testing(1)
      defer { sck_force_portable_for_testing(0) }
      let portable = try body()
      sck_force_portable_for_testing(0)
      return (portable, try body(), sck_simd_level())
    }
  }

  /// `body` with the portable paths forced, under the same lock.
  public static func portable<T>(_ body: () throws -> T) rethrows -> T {
    try lock.withLock { _ in
      sck_force_portable_for_testing(1)
      defer { sck_force_portable_for_testing(0) }
      return try body()
    }
  }
}
