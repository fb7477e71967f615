import CheckpointIO
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// What the process does on SIGINT, SIGTERM, SIGHUP and SIGXFSZ.
///
/// The three termination signals are blocked in every thread (the mask is set before
/// any thread starts and threads inherit it) and taken by one thread with sigwait(2),
/// so the cleanup runs as ordinary code, not in a signal handler: it removes the
/// staging folders of unfinished outputs, holding the lock that `OutputFolder.commit`
/// renames under (so an output is either committed whole or removed), writes one line
/// on stderr and exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
/// SIGXFSZ is ignored, so that a write over the file-size limit fails with EFBIG and
/// becomes an error naming the file (exit 73) instead of killing the process.
enum ProcessSignals {
  static let terminating: [Int32] = [SIGINT, SIGTERM, SIGHUP]

  static func install() {
    signal(SIGXFSZ, SIG_IGN)
    var set = sigset_t()
    sigemptyset(&set)
    for signal in terminating { sigaddset(&set, signal) }
    guard pthread_sigmask(SIG_BLOCK, &set, nil) == 0 else { return }
    let waited = set
    Thread.detachNewThread {
      var set = waited
      var received: Int32 = 0
      while sigwait(&set, &received) != 0 {}
      let (removed, kept) = OutputCleanup.removeAllBeforeExit()
      var line = "\nswiftcompress: interrupted by \(name(of: received))"
      if !removed.isEmpty {
        line += "; removed the unfinished output, \(removed.joined(separator: ", ")) is left as it was"
      }
      if !kept.isEmpty {
        line +=
          "; the shards finished for \(kept.joined(separator: ", ")) are kept: rerun the same command to resume"
      }
      line += "\n"
      line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
      _exit(128 + received)
    }
  }

  static func name(of signal: Int32) -> String {
    switch signal {
    case SIGINT: "SIGINT"
    case SIGTERM: "SIGTERM"
    case SIGHUP: "SIGHUP"
    default: "signal \(signal)"
    }
  }
}
