import Dispatch
import Foundation
import Synchronization

/// Data-parallel loops with a bound on worker threads (`--jobs`).
///
/// The bound is a value of the run, not of the process: `withJobs(_:_:)` binds it (a
/// task-local value) for the duration of a body, and every `perform` inside reads it,
/// including those nested in another loop's workers.
///
/// Every parallel loop of swiftcompress writes disjoint outputs per iteration and
/// combines per-iteration results in iteration order, so its bytes do not depend on the
/// number of workers: `--jobs 1` and `--jobs 8` write the same files (tested).
public enum Parallel {
  /// The bound of the enclosing `withJobs`; 0 outside any.
  @TaskLocal static var bound = 0

  /// The worker bound: the enclosing `withJobs`'s, or one worker per core.
  public static var jobs: Int { bound > 0 ? bound : ProcessInfo.processInfo.activeProcessorCount }

  /// Runs `body` with the worker bound `jobs`; nil, 0 or less means one worker per core.
  public static func withJobs<T>(_ jobs: Int?, _ body: () throws -> T) rethrows -> T {
    try $bound.withValue(max(0, jobs ?? 0), operation: body)
  }

  /// Runs `body(i)` for every i in 0..<iterations on at most `jobs` threads, which see
  /// the same bound. Each worker takes the next iteration not yet taken, so a worker
  /// that starts late (a pool thread still waking up) takes fewer, and none waits for
  /// another's share.
  public static func perform(iterations: Int, _ body: (Int) -> Void) {
    let workers = min(iterations, jobs)
    guard workers > 1 else {
      for i in 0..<iterations { body(i) }
      return
    }
    let bound = self.bound
    let next = Atomic<Int>(0)
    withoutActuallyEscaping(body) { body in
      nonisolated(unsafe) let body = body
      DispatchQueue.concurrentPerform(iterations: workers) { _ in
        $bound.withValue(bound) {
          while true {
            let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
            guard i < iterations else { return }
            body(i)
          }
        }
      }
    }
  }
}
