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

  /// The queue of the enclosing `withSideJobs`, nil outside any.
  @TaskLocal static var sideJobs: SideJobs?

  /// The worker bound: the enclosing `withJobs`'s, or one worker per core.
  public static var jobs: Int { bound > 0 ? bound : cores }

  /// The cores this process may use, read once: Foundation reads them from the cgroup
  /// files on every call (two files opened and parsed), and every parallel loop asks.
  static let cores = ProcessInfo.processInfo.activeProcessorCount

  /// Runs `body` with the worker bound `jobs`; nil, 0 or less means one worker per core.
  public static func withJobs<T>(_ jobs: Int?, _ body: () throws -> T) rethrows -> T {
    try $bound.withValue(max(0, jobs ?? 0), operation: body)
  }

  /// Runs `body` with `queue` as the side jobs of the parallel loops it starts (not of
  /// the loops nested in their workers).
  public static func withSideJobs<T>(_ queue: SideJobs, _ body: () throws -> T) rethrows -> T {
    try $sideJobs.withValue(queue, operation: body)
  }

  /// Runs `body(i)` for every i in 0..<iterations on at most `jobs` threads, which see
  /// the same bound. Each worker takes the next iteration not yet taken, so a worker
  /// that starts late (a pool thread still waking up) takes fewer, and none waits for
  /// another's share. With more than one worker, the first to start also runs the job
  /// waiting in the enclosing `withSideJobs` queue, if any, while the others loop.
  public static func perform(iterations: Int, _ body: (Int) -> Void) {
    let workers = min(iterations, jobs)
    guard workers > 1 else {
      for i in 0..<iterations { body(i) }
      return
    }
    let bound = self.bound
    let sideJobs = self.sideJobs
    let next = Atomic<Int>(0)
    withoutActuallyEscaping(body) { body in
      nonisolated(unsafe) let body = body
      DispatchQueue.concurrentPerform(iterations: workers) { _ in
        sideJobs?.runWaiting()
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

/// At most one job waiting to run beside the next parallel loop: the loop's first
/// worker to start runs it while the others take the loop's iterations, so work that
/// would otherwise leave a core idle (writing one tensor's outputs while the next is
/// transformed) fills the gaps of the loop. A job no loop takes runs in `finish()`.
///
/// Jobs run one at a time and in the order submitted: `submit` first finishes the job
/// before it. A job runs with a worker bound of 1, so it starts no parallel loop. The
/// first job's failure is thrown by `finish()` (and `submit`), and the queue runs no job
/// after it.
public final class SideJobs: Sendable {
  private let waiting = Mutex<(@Sendable () throws -> Void)?>(nil)
  private let failure = Mutex<(any Error)?>(nil)
  private let running = DispatchGroup()

  public init() {}

  /// A job still waiting (its run failed before any loop or `finish()` took it) is
  /// dropped unrun, and the group left balanced.
  deinit {
    if waiting.withLock({ slot in slot.take() }) != nil { running.leave() }
  }

  /// Finishes the job before, then queues `job`.
  public func submit(_ job: @escaping @Sendable () throws -> Void) throws {
    try finish()
    running.enter()
    waiting.withLock { $0 = job }
  }

  /// Runs the waiting job on this thread unless a worker took it, returns once it is
  /// done, and throws the failure of a job, if one failed.
  public func finish() throws {
    runWaiting()
    running.wait()
    if let failure = failure.withLock({ $0 }) { throw failure }
  }

  /// Runs the waiting job, if any, on this thread.
  func runWaiting() {
    guard let job = waiting.withLock({ slot in slot.take() }) else { return }
    defer { running.leave() }
    do {
      try Parallel.$bound.withValue(1, operation: job)
    } catch {
      failure.withLock { $0 = error }
    }
  }
}
