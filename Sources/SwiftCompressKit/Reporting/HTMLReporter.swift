import Foundation

/// `swiftcompress-report.html`: the report as one HTML5 page: summary, totals, the
/// chart inline, a per-layer and a per-tensor table. No external resources and no
/// scripts.
public struct HTMLReporter: Reporter {
  public init() {}

  public var fileName: String { Report.htmlFileName }

  public func render(_ report: Report) -> String { report.html() }
}

extension Report {
  /// The report as one self-contained web page (inline CSS and SVG, no scripts).
  public static let htmlFileName = "swiftcompress-report.html"

  /// The report as one HTML5 page: summary, totals, the chart inline, a per-layer and a
  /// per-tensor table. No external resources and no scripts.
  fileprivate func html() -> String {
    let e = Markup.escape
    var h: [String] = []
    h.append("<!DOCTYPE html>")
    h.append("<html lang=\"en\">")
    h.append("<head>")
    h.append("<meta charset=\"utf-8\">")
    h.append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    h.append("<title>swiftcompress report: \(e(command))</title>")
    h.append("<style>")
    h.append(Report.pageStyle)
    h.append("</style>")
    h.append("</head>")
    h.append("<body>")
    h.append("<h1>swiftcompress report</h1>")
    h.append("<ul class=\"summary\">")
    h.append(
      "<li>command: <code>\(e(command))</code>, pass <code>\(e(pass.identifier))</code> <code>\(e(pass.configuration))</code></li>"
    )
    h.append(
      "<li>input: <code>\(e(input.path))</code> (\(e(input.layout)), \(Format.count(input.files.count, "file")), \(Format.count(input.tensorCount, "tensor")), \(Format.bytes(input.bytes)))</li>"
    )
    h.append(
      "<li>output: <code>\(e(output.path))</code> (\(Format.count(output.files.count, "file"))\(output.index.map { ", index <code>\(e($0))</code>" } ?? ""))</li>"
    )
    if !selection.include.isEmpty {
      h.append("<li>include: \(selection.include.map { "<code>\(e($0))</code>" }.joined(separator: ", "))</li>")
    }
    if !selection.exclude.isEmpty {
      h.append("<li>exclude: \(selection.exclude.map { "<code>\(e($0))</code>" }.joined(separator: ", "))</li>")
    }
    for warning in warnings { h.append("<li class=\"warning\">warning: \(e(warning))</li>") }
    for note in notes { h.append("<li>note: \(e(note))</li>") }
    h.append("</ul>")

    h.append("<h2>Totals</h2>")
    let m = totals.metrics
    h.append("<div class=\"scroll\"><table>")
    h.append(
      Report.headerRow([
        "tensors", "transformed", "kept", "parameters", "bytes before", "bytes after", "bits/weight before",
        "bits/weight after", "ratio", "rel. error", "SQNR dB", "cosine", "max abs error",
      ]))
    h.append(
      Report.row(
        [
          "\(totals.tensors)", "\(totals.transformed)", "\(totals.kept)", "\(totals.parameters)",
          Format.bytes(totals.bytesBefore), Format.bytes(totals.bytesAfter),
          Format.fixed(totals.bitsPerWeightBefore, 3), Format.fixed(totals.bitsPerWeightAfter, 3),
          Format.fixed(totals.compressionRatio, 3), Format.metric(m?.relativeFrobeniusError), Format.sqnr(m),
          Format.cosine(m?.cosineSimilarity), Format.metric(m?.maxAbsError),
        ], textColumns: []))
    h.append("</table></div>")
    if let sparsity = totals.sparsity { h.append("<p>\(e(Format.sparsitySummary(sparsity))).</p>") }
    if let sparsity = totals.sparsity, let (header, rows) = Report.unitTable(sparsity) {
      h.append("<div class=\"scroll\"><table>")
      h.append(Report.headerRow(header, textColumns: [0, 1]))
      for cells in rows { h.append(Report.row(cells, textColumns: [0, 1], codeColumns: cells[1].isEmpty ? [] : [1])) }
      h.append("</table></div>")
    }
    if !gates.isEmpty {
      h.append("<p>Quality gates:</p><ul>")
      for gate in gates {
        h.append("<li class=\"\(gate.passed ? "passed" : "warning")\">\(e(gate.summary))</li>")
      }
      h.append("</ul>")
    }
    if let rtn = totals.roundToNearestMetrics {
      h.append(
        "<p>Plain round-to-nearest would have cost: relative error \(Format.metric(rtn.relativeFrobeniusError)), SQNR \(Format.sqnr(rtn)) dB (the scale search gave \(Format.metric(m?.relativeFrobeniusError)), \(Format.sqnr(m)) dB).</p>"
      )
    }

    let layers = layerSummaries()
    h.append("<h2>Size and error per layer</h2>")
    h.append("<div class=\"chart\">")
    h.append(svgElement(layers))
    h.append("</div>")
    h.append(
      "<p class=\"note\">The error of a layer is sqrt(sum of ||W - W'||&#178; / sum of ||W||&#178;) over its measured transformed tensors, as for the totals.</p>"
    )
    h.append("<div class=\"scroll\"><table>")
    h.append(
      Report.headerRow(
        [
          "layer", "tensors", "transformed", "parameters", "bytes before", "bytes after", "ratio", "rel. error",
        ], textColumns: [0]))
    for layer in layers {
      h.append(
        Report.row(
          [
            layer.label, "\(layer.tensorNames.count)", "\(layer.transformed)", "\(layer.parameters)",
            Format.bytes(layer.bytesBefore), Format.bytes(layer.bytesAfter),
            layer.bytesAfter > 0 ? Format.fixed(Double(layer.bytesBefore) / Double(layer.bytesAfter), 3) : "-",
            Report.errorText(layer),
          ], textColumns: [0]))
    }
    h.append("</table></div>")

    h.append("<h2>Tensors</h2>")
    h.append("<div class=\"scroll\"><table>")
    h.append(
      Report.headerRow(
        [
          "tensor", "dtype", "shape", "action", "bytes before", "bytes after", "bits/weight", "rel. error", "SQNR dB",
          "cosine", "max abs error", "note",
        ], textColumns: [0, 1, 2, 3, 11]))
    for t in tensors {
      let outDTypes = Set(t.outputs.map(\.dtype)).sorted().joined(separator: "+")
      let dtype = t.action == "transformed" && outDTypes != t.dtype ? "\(t.dtype) -> \(outDTypes)" : t.dtype
      let note = [t.reason, t.sparsity.map { "sparsity \(Format.fixed($0.achieved * 100, 1))%" }].compactMap { $0 }
        .joined(separator: "; ")
      h.append(
        Report.row(
          [
            t.name, dtype, t.shape.map(String.init).joined(separator: "x"), t.action, "\(t.bytesBefore)",
            "\(t.bytesAfter)", Format.fixed(t.bitsPerWeightAfter, 3), Format.metric(t.metrics?.relativeFrobeniusError),
            Format.sqnr(t.metrics), Format.cosine(t.metrics?.cosineSimilarity), Format.metric(t.metrics?.maxAbsError),
            note,
          ], textColumns: [0, 1, 2, 3, 11], codeColumns: [0], wrapColumns: [11]))
    }
    h.append("</table></div>")

    if !output.copiedFiles.isEmpty {
      h.append(
        "<p>Copied unchanged: \(output.copiedFiles.map { "<code>\(e($0))</code>" }.joined(separator: ", ")).</p>")
    }
    if !output.editedFiles.isEmpty {
      h.append(
        "<p>Edited by the pass: \(output.editedFiles.map { "<code>\(e($0))</code>" }.joined(separator: ", ")).</p>")
    }
    if !output.ignoredFiles.isEmpty {
      h.append(
        "<p>Not copied (other weight files): \(output.ignoredFiles.map { "<code>\(e($0))</code>" }.joined(separator: ", ")).</p>"
      )
    }
    h.append(
      "<p>Time \(Format.fixed(timing.seconds, 3)) s, \(Format.bytes(Int(timing.bytesPerSecond)))/s, peak RSS \(Format.bytes(timing.peakRSSBytes)). \(e(tool.name)) \(e(tool.version)), report schema \(schemaVersion).</p>"
    )
    h.append("</body>")
    h.append("</html>")
    return h.joined(separator: "\n") + "\n"
  }

  static let pageStyle = """
    body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif; font-size: 14px; color: #222222; margin: 24px; max-width: 1400px; }
    h1 { font-size: 22px; margin: 0 0 12px; }
    h2 { font-size: 17px; margin: 24px 0 8px; }
    code { font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, monospace; font-size: 12px; }
    ul.summary { padding-left: 20px; }
    li.warning { color: #9a3412; }
    div.scroll { overflow-x: auto; }
    table { border-collapse: collapse; font-size: 12px; }
    th, td { border: 1px solid #d8dbe0; padding: 2px 5px; text-align: right; white-space: nowrap; }
    td { vertical-align: top; }
    td code { font-size: 11px; }
    th { background: #f3f4f6; white-space: normal; vertical-align: bottom; }
    th.text, td.text { text-align: left; }
    td.wrap { white-space: normal; min-width: 150px; text-align: left; }
    tr:nth-child(even) td { background: #fafafa; }
    div.chart svg { max-width: 100%; height: auto; }
    p.note { color: #555555; font-size: 12px; }
    """

  /// A header row; `textColumns` left-aligned like their cells.
  static func headerRow(_ cells: [String], textColumns: Set<Int> = []) -> String {
    var html = "<tr>"
    for (column, cell) in cells.enumerated() {
      html +=
        textColumns.contains(column)
        ? "<th class=\"text\">\(Markup.escape(cell))</th>" : "<th>\(Markup.escape(cell))</th>"
    }
    return html + "</tr>"
  }

  /// A table row, every cell escaped; `textColumns` left-aligned, `codeColumns` in code,
  /// `wrapColumns` allowed to wrap.
  static func row(_ cells: [String], textColumns: Set<Int>, codeColumns: Set<Int> = [], wrapColumns: Set<Int> = [])
    -> String
  {
    var html = "<tr>"
    for (column, cell) in cells.enumerated() {
      let text = codeColumns.contains(column) ? "<code>\(Markup.escape(cell))</code>" : Markup.escape(cell)
      let classes = [textColumns.contains(column) ? "text" : nil, wrapColumns.contains(column) ? "wrap" : nil]
        .compactMap { $0 }.joined(separator: " ")
      html += classes.isEmpty ? "<td>\(text)</td>" : "<td class=\"\(classes)\">\(text)</td>"
    }
    return html + "</tr>"
  }
}
