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

@Suite("Side jobs")
struct SideJobsTests {
  struct Failure: Error, Equatable { let job: Int }

  /// A submitted job runs exactly once, on a worker of the next loop with more than
  /// one worker (while the loop's iterations all run too) or else in `finish()`; jobs
  /// run in the order submitted and with a worker bound of 1.
  @Test func eachJobRunsOnceInOrderBesideTheNextLoop() throws {
    let queue = SideJobs()
    let log = LockedValue<[String]>([])
    try Parallel.withJobs(2) {
      try Parallel.withSideJobs(queue) {
        for job in 0..<20 {
          try queue.submit {
            log.set(log.get() + ["job \(job) jobs \(Parallel.jobs)"])
          }
          #expect(log.get().count == job)
          // A loop: every iteration runs once, and the job has run when it returns.
          var hits = [Int](repeating: 0, count: 64)
          hits.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out
            Parallel.perform(iterations: 64) { out[$0] += 1 }
          }
          #expect(hits == [Int](repeating: 1, count: 64))
          #expect(log.get().count == job + 1)
        }
        // Loops with one worker leave a job to `finish()`.
        try queue.submit { log.set(log.get() + ["job 20 jobs \(Parallel.jobs)"]) }
        Parallel.withJobs(1) { Parallel.perform(iterations: 8) { _ in } }
        #expect(log.get().count == 20)
        try queue.finish()
      }
    }
    #expect(log.get() == (0...20).map { "job \($0) jobs 1" })
    // Outside `withSideJobs`, loops leave the queue alone.
    try queue.submit { log.set(log.get() + ["late"]) }
    Parallel.withJobs(2) { Parallel.perform(iterations: 8) { _ in } }
    #expect(log.get().count == 21)
    try queue.finish()
    #expect(log.get().last == "late")
  }

  /// A failing job's error is thrown by the next `finish()` or `submit`, and no job
  /// after it runs.
  @Test func aFailureIsThrownAndStopsTheQueue() throws {
    let queue = SideJobs()
    let ran = LockedValue<[Int]>([])
    try queue.submit {
      ran.set(ran.get() + [0])
      throw Failure(job: 0)
    }
    Parallel.withJobs(2) {
      Parallel.withSideJobs(queue) { Parallel.perform(iterations: 4) { _ in } }
    }
    #expect(throws: Failure(job: 0)) {
      try queue.submit { ran.set(ran.get() + [1]) }
    }
    #expect(throws: Failure(job: 0)) { try queue.finish() }
    #expect(ran.get() == [0])
  }
}

final class LockedValue<T>: @unchecked Sendable {
  private let lock = NSLock()
  private var value: T
  init(_ value: T) { self.value = value }
  func set(_ new: T) { lock.withLock { value = new } }
  func get() -> T { lock.withLock { value } }
}
