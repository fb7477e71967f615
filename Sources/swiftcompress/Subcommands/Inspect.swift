import ArgumentParser
import Foundation
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "inspect",
      abstract: "List a checkpoint's tensors: name, dtype, shape, parameters and bytes.")

    @Argument(help: "A .safetensors file, or a folder with model.safetensors or model.safetensors.index.json.")
    var path: String

    @Flag(name: .long, help: "Also read every tensor and show min, max, mean, std, absmax and the fraction of zeros.")
    var stats = false

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
      try Diagnostics.reportingErrors {
        let report = try InspectionReport.inspect(path, statistics: stats)
        printResult(json ? Format.json(report) : InspectTable.render(report, statistics: stats))
      }
    }
  }
}

/// The table `inspect` prints for people.
enum InspectTable {
  static func render(_ report: InspectionReport, statistics: Bool) -> String {
    var header = ["tensor", "dtype", "shape", "parameters", "bytes"]
    if statistics { header += ["min", "max", "mean", "std", "absmax", "zeros"] }
    var rows: [[String]] = []
    for t in report.tensors {
      var row = [
        t.name, t.dtype, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", "\(t.parameters)", "\(t.bytes)",
      ]
      if statistics, let s = t.stats {
        row += [
          Format.metric(s.min), Format.metric(s.max), Format.metric(s.mean), Format.metric(s.std),
          Format.metric(s.absMax), Format.fixed(s.zeroFraction * 100, 2) + "%",
        ]
        if s.nanCount + s.infCount > 0 { row[row.count - 1] += " (\(s.nanCount) NaN, \(s.infCount) inf)" }
      }
      rows.append(row)
    }
    var text = TextTable.render(header: header, rows: rows, rightAligned: Set(3..<header.count))
    let dtypes = report.totals.byDType.keys.sorted().map { key in
      let t = report.totals.byDType[key]!
      return
        "\(key): \(Format.count(t.tensors, "tensor")), \(Format.count(t.parameters, "parameter")), \(Format.bytes(t.bytes))"
    }
    text +=
      "\n\(Format.count(report.totals.tensors, "tensor")), \(Format.count(report.totals.parameters, "parameter")), \(Format.count(report.totals.bytes, "byte")) (\(Format.bytes(report.totals.bytes))) in \(Format.count(report.files.count, "file")), \(report.layout)\n"
    text += dtypes.joined(separator: "\n") + "\n"
    return text
  }
}

/// Plain aligned text tables.
enum TextTable {
  static func render(header: [String], rows: [[String]], rightAligned: Set<Int>) -> String {
    var widths = header.map(\.count)
    for row in rows {
      for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
      let text = cells.enumerated().map { i, cell in
        let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
        return rightAligned.contains(i) ? pad + cell : cell + pad
      }.joined(separator: "  ")
      // Trailing white space trimmed by hand: a regular expression per line cost more
      // than the rest of the table (the regex engine starts once per call).
      return String(text[..<(text.lastIndex(where: { !$0.isWhitespace }).map(text.index(after:)) ?? text.startIndex)])
    }
    var out = line(header) + "\n"
    out += line(widths.map { String(repeating: "-", count: $0) }) + "\n"
    for row in rows { out += line(row) + "\n" }
    return out
  }
}
