import Foundation

/// `swiftcompress-report.md`: the report for people, as Markdown.
public struct MarkdownReporter: Reporter {
  public init() {}

  public var fileName: String { Report.markdownFileName }

  public func render(_ report: Report) -> String { report.markdown() }
}

extension Report {
  /// The report for people, as Markdown.
  fileprivate func markdown() -> String {
    var lines: [String] = []
    lines.append("# swiftcompress report")
    lines.append("")
    lines.append("- command: `\(command)`, pass `\(pass.identifier)` \(pass.configuration)")
    lines.append(
      "- input: `\(input.path)` (\(input.layout), \(Format.count(input.files.count, "file")), \(Format.count(input.tensorCount, "tensor")), \(Format.bytes(input.bytes)))"
    )
    lines.append(
      "- output: `\(output.path)` (\(Format.count(output.files.count, "file"))\(output.index.map { ", index \($0)" } ?? ""))"
    )
    if !selection.include.isEmpty {
      lines.append("- include: \(selection.include.map { "`\($0)`" }.joined(separator: ", "))")
    }
    if !selection.exclude.isEmpty {
      lines.append("- exclude: \(selection.exclude.map { "`\($0)`" }.joined(separator: ", "))")
    }
    for warning in warnings { lines.append("- warning: \(warning)") }
    for note in notes { lines.append("- note: \(note)") }
    lines.append("")
    lines.append("## Totals")
    lines.append("")
    lines.append(
      "| tensors | transformed | kept | parameters | bytes before | bytes after | bits/weight before | bits/weight after | ratio | rel. error | SQNR dB | cosine | max abs error |"
    )
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    let m = totals.metrics
    lines.append(
      "| \(totals.tensors) | \(totals.transformed) | \(totals.kept) | \(totals.parameters) | \(Format.bytes(totals.bytesBefore)) | \(Format.bytes(totals.bytesAfter)) | \(Format.fixed(totals.bitsPerWeightBefore, 3)) | \(Format.fixed(totals.bitsPerWeightAfter, 3)) | \(Format.fixed(totals.compressionRatio, 3)) | \(Format.metric(m?.relativeFrobeniusError)) | \(Format.sqnr(m)) | \(Format.cosine(m?.cosineSimilarity)) | \(Format.metric(m?.maxAbsError)) |"
    )
    if let sparsity = totals.sparsity {
      lines.append("")
      lines.append(Format.sparsitySummary(sparsity) + ".")
      let table = Self.unitTableMarkdown(sparsity)
      if !table.isEmpty {
        lines.append("")
        lines += table
      }
    }
    if !gates.isEmpty {
      lines.append("")
      lines.append("Quality gates: " + gates.map(\.summary).joined(separator: "; ") + ".")
    }
    if let rtn = totals.roundToNearestMetrics {
      lines.append("")
      lines.append(
        "Plain round-to-nearest would have cost: relative error \(Format.metric(rtn.relativeFrobeniusError)), SQNR \(Format.sqnr(rtn)) dB (the scale search gave \(Format.metric(m?.relativeFrobeniusError)), \(Format.sqnr(m)) dB)."
      )
    }
    lines.append("")
    lines.append("## Tensors")
    lines.append("")
    lines.append(
      "| tensor | dtype | shape | action | bytes before | bytes after | bits/weight | rel. error | SQNR dB | cosine | max abs error | note |"
    )
    lines.append("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for t in tensors {
      let outDTypes = Set(t.outputs.map(\.dtype)).sorted().joined(separator: "+")
      let dtype = t.action == "transformed" && outDTypes != t.dtype ? "\(t.dtype) -> \(outDTypes)" : t.dtype
      lines.append(
        "| `\(Format.markdownCell(t.name))` | \(dtype) | \(t.shape.map(String.init).joined(separator: "x")) | \(t.action) | \(t.bytesBefore) | \(t.bytesAfter) | \(Format.fixed(t.bitsPerWeightAfter, 3)) | \(Format.metric(t.metrics?.relativeFrobeniusError)) | \(Format.sqnr(t.metrics)) | \(Format.cosine(t.metrics?.cosineSimilarity)) | \(Format.metric(t.metrics?.maxAbsError)) | \(Format.markdownCell([t.reason, t.sparsity.map { "sparsity \(Format.fixed($0.achieved * 100, 1))%" }].compactMap { $0 }.joined(separator: "; "))) |"
      )
    }
    lines.append("")
    if !output.copiedFiles.isEmpty {
      lines.append("Copied unchanged: \(output.copiedFiles.map { "`\($0)`" }.joined(separator: ", ")).")
      lines.append("")
    }
    if !output.editedFiles.isEmpty {
      lines.append("Edited by the pass: \(output.editedFiles.map { "`\($0)`" }.joined(separator: ", ")).")
      lines.append("")
    }
    if !output.ignoredFiles.isEmpty {
      lines.append("Not copied (other weight files): \(output.ignoredFiles.map { "`\($0)`" }.joined(separator: ", ")).")
      lines.append("")
    }
    lines.append(
      "Time \(Format.fixed(timing.seconds, 3)) s, \(Format.bytes(Int(timing.bytesPerSecond)))/s, peak RSS \(Format.bytes(timing.peakRSSBytes))."
    )
    return lines.joined(separator: "\n") + "\n"
  }

  /// The same table in Markdown, names as code.
  static func unitTableMarkdown(_ sparsity: SparsityInfo) -> [String] {
    guard let (header, rows) = unitTable(sparsity) else { return [] }
    func line(_ cells: [String]) -> String { "|" + cells.map { $0.isEmpty ? " |" : " \($0) |" }.joined() }
    var lines = [line(header), "|---:|---|" + String(repeating: "---:|", count: header.count - 2)]
    for row in rows {
      var cells = row
      if !cells[1].isEmpty { cells[1] = "`\(Format.markdownCell(cells[1]))`" }
      lines.append(line(cells))
    }
    return lines
  }
}
