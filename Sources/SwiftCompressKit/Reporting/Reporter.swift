import CheckpointIO
import Foundation

/// One rendering of a run's report, written into the output folder as `fileName`.
public protocol Reporter: Sendable {
  /// The file it is written to in the output folder.
  var fileName: String { get }
  /// The report rendered; the same report gives the same text.
  func render(_ report: Report) -> String
}

extension Report {
  /// Every rendering a run (or a merge) writes beside its output, in the order written.
  public static let reporters: [any Reporter] = [
    JSONReporter(), MarkdownReporter(), SVGChartReporter(), HTMLReporter(),
  ]

  /// Every file a run writes for its report (they hold timings: the manifest lists
  /// them without checksums).
  public static var fileNames: Set<String> { Set(reporters.map(\.fileName)) }

  /// Writes every rendering into `folder`. They are rendered side by side, one per
  /// worker (each is a function of the report alone), then written in order.
  func write(into folder: OutputFolder) throws {
    let reporters = Report.reporters
    var texts = [String](repeating: "", count: reporters.count)
    texts.withUnsafeMutableBufferPointer { out in
      nonisolated(unsafe) let out = out
      Parallel.perform(iterations: reporters.count) { out[$0] = reporters[$0].render(self) }
    }
    for (reporter, text) in zip(reporters, texts) {
      try folder.write(text, to: reporter.fileName)
    }
  }
}

/// `swiftcompress-report.json`: the report as pretty, key-sorted JSON (schema in
/// docs/report-schema.md), as `--json` prints it.
public struct JSONReporter: Reporter {
  public init() {}

  public var fileName: String { Report.jsonFileName }

  public func render(_ report: Report) -> String { report.jsonText() }
}
