import CheckpointIO
import Foundation
import Testing

@Suite("Parallel loops")
struct ParallelTests {
  /// `--jobs` is a value of the run: bound for a body, seen by every loop inside it
  /// (nested ones in other workers too), gone after it; a run beside it on another
  /// thread keeps its own.
  @Test func theWorkerBoundIsScopedToTheRun() throws {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    #expect(Parallel.jobs == cores)
    #expect(Parallel.withJobs(nil) { Parallel.jobs } == cores)
    #expect(Parallel.withJobs(0) { Parallel.jobs } == cores)
    let seen = Parallel.withJobs(3) { () -> [Int] in
      let lock = NSLock()
      var seen: [Int] = []
      Parallel.perform(iterations: 8) { _ in
        Parallel.perform(iterations: 2) { _ in
          let jobs = Parallel.jobs
          lock.withLock { seen.append(jobs) }
        }
      }
      #expect(Parallel.withJobs(1) { Parallel.jobs } == 1)
      #expect(Parallel.jobs == 3)
      return seen
    }
    #expect(seen == [Int](repeating: 3, count: 16))
    #expect(Parallel.jobs == cores)

    let other = DispatchSemaphore(value: 0)
    let otherSeen = LockedValue(0)
    Parallel.withJobs(2) {
      Thread.detachNewThread {
        Parallel.withJobs(5) { otherSeen.set(Parallel.jobs) }
        other.signal()
      }
      other.wait()
      #expect(Parallel.jobs == 2)
    }
    #expect(otherSeen.get() == 5)
  }
}

final class LockedValue<T>: @unchecked Sendable {
  private let lock = NSLock()
  private var value: T
  init(_ value: T) { self.value = value }
  func set(_ new: T) { lock.withLock { value = new } }
  func get() -> T { lock.withLock { value } }
}
