import CheckpointIO
import SwiftCompressKit

/// The `--dry-run` table: one row per output tensor, the input's columns on its first.
enum PlanTable {
  static func render(_ plan: PlanReport) -> String {
    var rows: [[String]] = []
    for t in plan.tensors {
      for (i, o) in t.outputs.enumerated() {
        let first = i == 0
        rows.append([
          first ? t.name : "", first ? t.action : "", o.name, o.dtype,
          "[" + o.shape.map(String.init).joined(separator: ", ") + "]",
          "\(o.bytes)", first ? "\(t.bytesBefore)" : "", first ? "\(t.bytesAfter)" : "",
          first ? Format.fixed(t.bitsPerWeightAfter, 2) : "",
        ])
      }
      if t.outputs.isEmpty {
        rows.append([t.name, t.action, "-", "", "", "0", "\(t.bytesBefore)", "0", Format.fixed(0, 2)])
      }
    }
    let header = ["tensor", "action", "output", "dtype", "shape", "bytes", "bytes before", "bytes after", "bits/w"]
    var text = TextTable.render(header: header, rows: rows, rightAligned: Set([5, 6, 7, 8])) + "\n"
    for t in plan.tensors where !t.isKept {
      if let reason = t.reason { text += "\(t.name): \(reason)\n" }
    }
    let x = plan.totals
    text +=
      "plan: \(x.transformed) of \(Format.count(x.tensors, "tensor")) transformed, \(x.kept) kept; \(Format.bytes(x.bytesBefore)) -> \(Format.bytes(x.bytesAfter)) (ratio \(Format.fixed(x.compressionRatio, 3)), \(Format.fixed(x.bitsPerWeightBefore, 2)) -> \(Format.fixed(x.bitsPerWeightAfter, 2)) bits/weight) in \(Format.count(plan.files.count, "file"))\n"
    for gate in plan.gates { text += "gate \(gate.summary)\n" }
    text += "dry run: nothing was written to \(plan.output)\n"
    return text
  }
}

/// The summary printed after a run (or by merge). With `split`, the run wrote only that
/// part's output shards.
enum SummaryTable {
  static func render(_ report: Report, split: ShardSplit? = nil) -> String {
    let t = report.totals
    let pruning = t.sparsity != nil
    var rows: [[String]] = []
    for entry in report.tensors where entry.action == "transformed" {
      let m = entry.metrics
      var row = [
        entry.name, entry.dtype + " -> " + Set(entry.outputs.map(\.dtype)).sorted().joined(separator: "+"),
        "\(entry.bytesBefore)", "\(entry.bytesAfter)", Format.fixed(entry.bitsPerWeightAfter, 2),
      ]
      if pruning { row.append(entry.sparsity.map { Format.fixed($0.achieved * 100, 1) + "%" } ?? "-") }
      row += [
        Format.metric(m?.relativeFrobeniusError), Format.sqnr(m), Format.cosine(m?.cosineSimilarity),
        Format.metric(m?.maxAbsError),
      ]
      rows.append(row)
    }
    var text = ""
    if !rows.isEmpty {
      let header =
        ["tensor", "dtype", "bytes before", "bytes after", "bits/w"] + (pruning ? ["sparsity"] : [])
        + ["rel. error", "SQNR dB", "cosine", "max abs err"]
      text += TextTable.render(header: header, rows: rows, rightAligned: Set(2..<header.count))
      text += "\n"
    }
    let m = t.metrics
    text +=
      "\(t.transformed) of \(Format.count(t.tensors, "tensor")) transformed, \(t.kept) kept; \(Format.bytes(t.bytesBefore)) -> \(Format.bytes(t.bytesAfter)) (ratio \(Format.fixed(t.compressionRatio, 3)), \(Format.fixed(t.bitsPerWeightBefore, 2)) -> \(Format.fixed(t.bitsPerWeightAfter, 2)) bits/weight)\n"
    if let sparsity = t.sparsity {
      text += Format.sparsitySummary(sparsity) + "\n"
    }
    if let m {
      text +=
        "error: relative \(Format.metric(m.relativeFrobeniusError)), SQNR \(Format.sqnr(m)) dB, cosine \(Format.cosine(m.cosineSimilarity)), max abs \(Format.metric(m.maxAbsError))\n"
    }
    for gate in report.gates { text += "gate \(gate.summary)\n" }
    let files = split?.shards(of: report.output.files.count).count ?? report.output.files.count
    text +=
      "wrote \(report.output.path) (\(Format.count(files, "weight file"))) in \(Format.fixed(report.timing.seconds, 2)) s; report: \(report.output.path)/\(Report.markdownFileName)\n"
    return text
  }
}
