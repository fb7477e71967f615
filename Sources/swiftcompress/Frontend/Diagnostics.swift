import ArgumentParser
import CheckpointIO
import Foundation
import SwiftCompressKit

/// Exit codes (sysexits.h), documented in the README.
enum ExitStatus {
  static let usage: Int32 = 64
  static let invalidData: Int32 = 65
  static let inputNotFound: Int32 = 66
  static let cannotCreateOutput: Int32 = 73
  static let other: Int32 = 1
  /// A quality gate failed (the output and report were written), or a `diff`
  /// tensor's error is above `--max-error`.
  static let gateFailed: Int32 = 3

  static func code(for category: ErrorCategory) -> Int32 {
    switch category {
    case .usage: usage
    case .invalidInput: invalidData
    case .inputNotFound: inputNotFound
    case .cannotCreateOutput: cannotCreateOutput
    case .other: other
    }
  }
}

/// Diagnostics on standard error; colour and progress only on a terminal.
enum Diagnostics {
  static let isTerminal = isatty(STDERR_FILENO) == 1

  /// TERM=dumb: a terminal without colour or cursor control.
  static let isDumbTerminal = ProcessInfo.processInfo.environment["TERM"] == "dumb"

  /// Colour on a terminal, unless NO_COLOR is set to anything non-empty (no-color.org)
  /// or the terminal is dumb.
  static let usesColour =
    isTerminal && !isDumbTerminal && (ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty

  /// The progress line redraws itself in place, which needs a terminal with cursor control.
  static let drawsProgress = isTerminal && !isDumbTerminal

  static func error(_ message: String) {
    let prefix = usesColour ? "\u{1B}[1;31merror:\u{1B}[0m " : "error: "
    write(prefix + visible(message) + "\n")
  }

  static func warning(_ message: String) {
    let prefix = usesColour ? "\u{1B}[1;33mwarning:\u{1B}[0m " : "warning: "
    write(prefix + visible(message) + "\n")
  }

  static func note(_ message: String) {
    let prefix = isTerminal ? "\u{1B}[1;36mnote:\u{1B}[0m " : "note: "
    write(prefix + visible(message) + "\n")
  }

  /// `text` with control characters but newline and tab written as `\uXXXX`.
  static func visible(_ text: String) -> String { Format.visible(text) }

  static func write(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
  }

  /// Runs `body`, turning library errors into a message on stderr and the exit code
  /// of their category.
  static func reportingErrors(_ body: () throws -> Void) throws {
    do {
      try body()
    } catch let error as ExitCode {
      throw error
    } catch let error as CategorizedError {
      self.error((error as? LocalizedError)?.errorDescription ?? "\(error)")
      throw ExitCode(ExitStatus.code(for: error.category))
    } catch {
      self.error("\(error)")
      throw ExitCode(ExitStatus.other)
    }
  }
}

/// A progress line on stderr, redrawn at most 10 times a second, only on a terminal that
/// is not dumb.
final class ProgressLine: @unchecked Sendable {
  private let lock = NSLock()
  private var lastDraw = ContinuousClock.now - .seconds(1)
  private var drawn = false

  func update(_ p: ProgressUpdate) {
    lock.lock()
    defer { lock.unlock() }
    let now = ContinuousClock.now
    guard now - lastDraw >= .milliseconds(100) || p.tensorsDone == p.tensorCount else { return }
    lastDraw = now
    let rate = p.elapsed > 0 ? Double(p.bytesDone) / p.elapsed : 0
    let left = rate > 0 ? Double(p.byteCount - p.bytesDone) / rate : 0
    let line =
      "\r\u{1B}[2K[\(p.tensorsDone)/\(p.tensorCount)] \(Format.bytes(p.bytesDone)) of \(Format.bytes(p.byteCount)), \(Format.bytes(Int(rate)))/s, \(Format.fixed(left, 0)) s left"
    Diagnostics.write(line)
    drawn = true
  }

  func finish() {
    lock.lock()
    defer { lock.unlock() }
    if drawn { Diagnostics.write("\r\u{1B}[2K") }
  }
}

/// Standard output for results.
func printResult(_ text: String) {
  FileHandle.standardOutput.write(Data(Diagnostics.visible(text).utf8))
}
