import Foundation

/// The text, Markdown and HTML forms of an `EvaluationReport` (JSON is its Codable form).
public enum EvaluationReporter {
  /// The format a report path's extension picks.
  public enum FileFormat: String, Sendable {
    case json, markdown, html

    /// .json, .md/.markdown, .html/.htm; nil for anything else.
    public init?(path: String) {
      switch (path as NSString).pathExtension.lowercased() {
      case "json": self = .json
      case "md", "markdown": self = .markdown
      case "html", "htm": self = .html
      default: return nil
      }
    }
  }

  /// The report in `format`.
  public static func render(_ report: EvaluationReport, as format: FileFormat) -> String {
    switch format {
    case .json: Format.json(report)
    case .markdown: markdown(report)
    case .html: html(report)
    }
  }

  static func number(_ value: Double?, _ uncertainty: Double? = nil, digits: Int = 6) -> String {
    guard let value else { return "-" }
    guard value.isFinite else { return "\(value)" }
    var text = String(format: "%.\(digits)f", value)
    if let uncertainty, uncertainty.isFinite { text += " ± " + String(format: "%.\(digits)f", uncertainty) }
    return text
  }

  static func percent(_ value: MeanAndUncertainty) -> String {
    number(value.mean * 100, value.uncertainty.map { $0 * 100 }, digits: 3) + " %"
  }

  /// (label, value) rows: llama-perplexity's names for decoders.
  public static func rows(_ report: EvaluationReport) -> [(String, String)] {
    var rows: [(String, String)] = [
      ("Reference", report.reference.path), ("Candidate", report.candidate.path),
      ("Model", "\(report.reference.architecture) (\(report.kind), vocabulary \(report.reference.vocabularySize))"),
      (
        "Data",
        "\(report.data.file) (\(report.data.format.rawValue)): \(Format.count(report.data.samples, "sample")) of \(report.data.fileSamples), \(Format.count(report.data.tokens, "token")), \(report.data.mode)\(report.data.seqLen.map { " to \($0)" } ?? "")"
      ),
    ]
    if let d = report.decoder {
      rows += [
        ("Scored positions", "\(d.positions)"),
        ("Mean PPL(Q)", number(d.candidatePerplexity.mean, d.candidatePerplexity.uncertainty)),
        ("Mean PPL(base)", number(d.referencePerplexity.mean, d.referencePerplexity.uncertainty)),
        ("Mean ln(PPL(Q)/PPL(base))", number(d.meanLogPerplexityRatio.mean, d.meanLogPerplexityRatio.uncertainty)),
        ("Mean KLD", number(d.kld.mean, d.kld.uncertainty)),
      ]
      rows += d.kld.rows.map { ("\($0.0) KLD", number($0.1)) }
      rows += [
        ("Mean Δp", percent(MeanAndUncertainty(mean: d.deltaP.mean, uncertainty: d.deltaP.uncertainty))),
        ("Same top p", percent(d.sameTop)),
      ]
    }
    if let e = report.encoder {
      rows += [
        ("Samples", "\(e.samples)"), ("Mean cosine", number(e.cosineMean)), ("Minimum cosine", number(e.cosineMin)),
        ("Spearman (pairwise cosines)", number(e.spearman)),
      ]
    }
    for gate in report.gates { rows.append(("Gate \(gate.gate)", gate.summary)) }
    return rows
  }

  /// The summary `evaluate` prints.
  public static func text(_ report: EvaluationReport) -> String {
    let rows = rows(report)
    let width = rows.map(\.0.count).max() ?? 0
    return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + " : " + $0.1 }
      .joined(separator: "\n") + "\n"
  }

  static func markdown(_ report: EvaluationReport) -> String {
    var text = "# swiftcompress evaluate\n\n| figure | value |\n| --- | ---: |\n"
    for (label, value) in rows(report) {
      text += "| \(Format.markdownCell(label.trimmingCharacters(in: .whitespaces))) | \(Format.markdownCell(value)) |\n"
    }
    text += "\nResult: \(report.passed ? "passed" : "failed") (\(report.gates.count) gates).\n"
    return text
  }

  static func escape(_ text: String) -> String {
    var out = ""
    for scalar in Format.visible(text).unicodeScalars {
      switch scalar {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out
  }

  static func html(_ report: EvaluationReport) -> String {
    var text = """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8"><title>swiftcompress evaluate</title>
      <style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
      td,th{border:1px solid #ccc;padding:.3em .6em}td.v{text-align:right;font-variant-numeric:tabular-nums}</style>
      </head><body><h1>swiftcompress evaluate</h1>
      <table><thead><tr><th>figure</th><th>value</th></tr></thead><tbody>

      """
    for (label, value) in rows(report) {
      text +=
        "<tr><td>\(escape(label.trimmingCharacters(in: .whitespaces)))</td><td class=\"v\">\(escape(value))</td></tr>\n"
    }
    text += "</tbody></table>\n<p>Result: \(report.passed ? "passed" : "failed") (\(report.gates.count) gates).</p>\n"
    text += "</body></html>\n"
    return text
  }
}
