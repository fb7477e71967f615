import Dispatch
import Foundation

/// Data-parallel loops with a process-wide bound on worker threads (`--jobs`).
///
/// Every parallel loop of swiftcompress writes disjoint outputs per iteration and
/// combines per-iteration results in iteration order, so its bytes do not depend on the
/// number of workers: `--jobs 1` and `--jobs 8` write the same files (tested).
public enum Parallel {
  nonisolated(unsafe) private static var configured = 0

  /// The worker bound: set once, before any work starts (the command line does it).
  /// 0 or less means one worker per core.
  public static var jobs: Int {
    get { configured > 0 ? configured : ProcessInfo.processInfo.activeProcessorCount }
    set { configured = max(0, newValue) }
  }

  /// Runs `body(i)` for every i in 0..<iterations on at most `jobs` threads; iterations
  /// are dealt round-robin to the workers.
  public static func perform(iterations: Int, _ body: (Int) -> Void) {
    let workers = min(iterations, jobs)
    guard workers > 1 else {
      for i in 0..<iterations { body(i) }
      return
    }
    withoutActuallyEscaping(body) { body in
      nonisolated(unsafe) let body = body
      DispatchQueue.concurrentPerform(iterations: workers) { worker in
        var i = worker
        while i < iterations {
          body(i)
          i += workers
        }
      }
    }
  }
}
