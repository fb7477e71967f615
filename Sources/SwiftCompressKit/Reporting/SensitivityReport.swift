import CheckpointIO
import Foundation

extension Sensitivity {
  /// Per candidate over all rows: stored bits per weight and the summed loss, nil when some
  /// row cannot take it.
  public func totals() -> [(choice: SchemeChoice, bitsPerWeight: Double, loss: Double, relativeError: Double)?] {
    let weights = Double(rows.reduce(0) { $0 + $1.elementCount })
    return candidates.map { choice in
      let cells = rows.compactMap { row in row.cells.first { $0.choice == choice } }
      guard cells.count == rows.count, weights > 0 else { return nil }
      let referenceSquares = rows.reduce(0) { $0 + $1.squaredNorm }
      let errorSquares = cells.reduce(0) { $0 + $1.squaredError }
      return (
        choice, cells.reduce(0) { $0 + $1.bits } / weights, cells.reduce(0) { $0 + $1.loss },
        referenceSquares > 0 ? (errorSquares / referenceSquares).squareRoot() : 0
      )
    }
  }

  /// A self-contained HTML page: the tensor x scheme heat map of the loss, each cell
  /// coloured by its share of the row's largest loss on a log scale, with the bits per
  /// weight of each candidate.
  public func html(title: String) -> String {
    let e = Markup.escape
    var h = [
      "<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
      "<title>swiftcompress analyze: \(e(title))</title>", "<style>", Report.pageStyle,
      "td.heat { text-align: right; font-variant-numeric: tabular-nums; }", "</style>", "</head>", "<body>",
      "<h1>swiftcompress analyze</h1>",
      "<p>\(e(title)): \(Format.count(rows.count, "weight")) x \(Format.count(candidates.count, "candidate")). Each cell is the \(weighted ? "output error proxy Σ (W - Q)² ||x||² (calibrate's statistics)" : "squared weight error ||W - Q||²") of the weight stored in that scheme; the colour runs from green (least) to red (most) on a log scale over the whole map; the relative error is in the tooltip.</p>",
      "<div class=\"scroll\"><table>",
      Report.headerRow(["tensor"] + candidates.map(\.description), textColumns: [0]),
    ]
    let losses = rows.flatMap { $0.cells.map(\.loss) }.filter { $0 > 0 }
    let (low, high) = (log10(losses.min() ?? 1), log10(losses.max() ?? 1))
    for row in rows {
      var line = "<tr><td class=\"text\"><code>\(e(row.tensor))</code></td>"
      for choice in candidates {
        guard let cell = row.cells.first(where: { $0.choice == choice }) else {
          line += "<td class=\"heat\">-</td>"
          continue
        }
        let t = cell.loss > 0 && high > low ? (log10(cell.loss) - low) / (high - low) : 0
        let hue = Int((120 * (1 - t)).rounded())
        line +=
          "<td class=\"heat\" style=\"background: hsl(\(hue), 70%, 80%)\" title=\"relative error \(Format.metric(cell.relativeError)), \(Format.fixed(cell.bitsPerWeight, 3)) bits/weight\">\(Format.metric(cell.loss))</td>"
      }
      h.append(line + "</tr>")
    }
    let totals = totals()
    h.append(
      Report.row(
        ["bits per weight"] + totals.map { $0.map { Format.fixed($0.bitsPerWeight, 3) } ?? "-" }, textColumns: [0]))
    h.append(Report.row(["summed loss"] + totals.map { $0.map { Format.metric($0.loss) } ?? "-" }, textColumns: [0]))
    h += ["</table></div>", "</body>", "</html>", ""]
    return h.joined(separator: "\n")
  }
}
