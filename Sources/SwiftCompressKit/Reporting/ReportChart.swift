import Foundation

// The per-layer chart (size before and after, relative error) of a report, as an SVG
// file and inline in the HTML page (HTMLReporter.swift).

/// `swiftcompress-report.svg`: the per-layer chart as an SVG 1.1 document: size before
/// and after, and the relative error, one row per layer. The same report gives the same
/// bytes.
public struct SVGChartReporter: Reporter {
  public init() {}

  public var fileName: String { Report.svgFileName }

  public func render(_ report: Report) -> String {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + report.svgElement()
  }
}

extension Report {
  /// The per-layer chart every compressing run writes beside the report.
  public static let svgFileName = "swiftcompress-report.svg"

  /// The tensors of one layer, summed for the chart.
  public struct LayerSummary: Sendable, Equatable {
    /// The layer index found in the tensor names (`layers.N.`, `layer.N.`, `h.N.`,
    /// `blocks.N.`); nil for the group of every other tensor.
    public var index: Int?
    /// The layer's tensors, in report order.
    public var tensorNames: [String] = []
    /// How many of them were transformed.
    public var transformed = 0
    /// Weights in the layer, every tensor counted.
    public var parameters = 0
    /// Summed `bytes_before` of the layer's tensors.
    public var bytesBefore = 0
    /// Summed `bytes_after` (every output counted).
    public var bytesAfter = 0
    /// ||W||^2 summed over the layer's measured transformed tensors.
    public var referenceEnergy = 0.0
    /// ||W - W'||^2 summed over the same tensors.
    public var errorEnergy = 0.0
    /// sqrt(errorEnergy / referenceEnergy): the layer's relative Frobenius error, the
    /// way `totals.metrics` aggregates the whole run. nil when no transformed tensor of
    /// the layer has metrics (nothing transformed, or not comparable element-wise).
    public var relativeError: Double?
    /// True when a tensor's metrics carried no energies (a report decoded from JSON
    /// written before they were recorded): the error is then the parameter-weighted
    /// root mean square of the tensors' relative errors, an approximation.
    public var errorIsApproximate = false

    /// "0", "1", ... or "other".
    public var label: String { index.map(String.init) ?? "other" }

    public init(index: Int?) { self.index = index }
  }

  /// The layer index in a tensor name: N of the first `layers.N.`, `layer.N.`, `h.N.`
  /// or `blocks.N.` (whole name components); nil when there is none.
  public static func layerIndex(of name: String) -> Int? { layerComponent(of: name)?.index }

  /// The name up to and including its layer index: "model.layers.3" for
  /// "model.layers.3.mlp"; nil when `layerIndex(of:)` is nil.
  public static func layerPrefix(of name: String) -> String? {
    guard let (_, component) = layerComponent(of: name) else { return nil }
    return name.split(separator: ".", omittingEmptySubsequences: false)[...component].joined(separator: ".")
  }

  /// The layer index and the position of its name component.
  private static func layerComponent(of name: String) -> (index: Int, component: Int)? {
    let parts = name.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count >= 3 else { return nil }
    for i in 0..<(parts.count - 2) where layerContainers.contains(String(parts[i])) {
      let digits = parts[i + 1]
      if !digits.isEmpty, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }), let index = Int(digits) {
        return (index, i + 1)
      }
    }
    return nil
  }

  static let layerContainers: Set<String> = ["layers", "layer", "h", "blocks"]

  /// The tensors grouped by layer, in layer order, with the "other" group (tensors
  /// outside any layer) last.
  public func layerSummaries() -> [LayerSummary] {
    var groups: [Int: LayerAccumulator] = [:]
    var other: LayerAccumulator?
    for tensor in tensors {
      if let index = Report.layerIndex(of: tensor.name) {
        groups[index, default: LayerAccumulator(index: index)].add(tensor)
      } else {
        other = other ?? LayerAccumulator(index: nil)
        other?.add(tensor)
      }
    }
    var result = groups.keys.sorted().compactMap { groups[$0]?.summary }
    if let other { result.append(other.summary) }
    return result
  }
}

// MARK: - Per-layer aggregation

/// Sums one layer's tensors.
private struct LayerAccumulator {
  var summary: Report.LayerSummary
  /// Some non-exact metrics came without energies.
  var energiesMissing = false
  /// Fallback without energies: sum of parameters x relative error^2, and of parameters.
  var weightedSquares = 0.0
  var weight = 0.0

  init(index: Int?) { summary = Report.LayerSummary(index: index) }

  mutating func add(_ tensor: Report.TensorEntry) {
    summary.tensorNames.append(tensor.name)
    summary.parameters += tensor.parameters
    summary.bytesBefore += tensor.bytesBefore
    summary.bytesAfter += tensor.bytesAfter
    guard !tensor.isKept else { return }
    summary.transformed += 1
    guard let metrics = tensor.metrics else { return }
    let relative = metrics.relativeFrobeniusError
    weightedSquares += relative * relative * Double(tensor.parameters)
    weight += Double(tensor.parameters)
    if let reference = metrics.referenceEnergy, let error = metrics.errorEnergy {
      summary.referenceEnergy += reference
      summary.errorEnergy += error
    } else if relative != 0 {
      energiesMissing = true
    }
    // else: an exact transform (no energies) adds nothing; the totals leave exact
    // transforms out of both sums too.
    summary.errorIsApproximate = energiesMissing
    summary.relativeError =
      if energiesMissing {
        weight > 0 ? (weightedSquares / weight).squareRoot() : 0
      } else if summary.referenceEnergy > 0 {
        (summary.errorEnergy / summary.referenceEnergy).squareRoot()
      } else {
        summary.errorEnergy > 0 ? .infinity : 0
      }
  }
}

// MARK: - SVG

extension Report {
  /// The layer's error for a table or label: "-" without one, "~" when approximate.
  static func errorText(_ layer: LayerSummary) -> String {
    guard let error = layer.relativeError else { return "-" }
    return (layer.errorIsApproximate ? "~" : "") + Format.metric(error)
  }

  /// The `<svg>` element (without the XML declaration, so HTML can embed it), for
  /// `layers` (computed when not given).
  func svgElement(_ layers: [LayerSummary]? = nil) -> String {
    let layers = layers ?? layerSummaries()
    let e = Markup.escape
    let n = Markup.number
    let g = ChartGeometry(rows: layers.count)
    var s: [String] = []
    s.append(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(g.width)\" height=\"\(g.height)\" viewBox=\"0 0 \(g.width) \(g.height)\" font-family=\"DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif\" font-size=\"11\" fill=\"#222222\">"
    )
    let title = "swiftcompress \(command): size and relative error per layer"
    s.append("<title>\(e(title))</title>")
    s.append("<rect x=\"0\" y=\"0\" width=\"\(g.width)\" height=\"\(g.height)\" fill=\"#ffffff\"/>")
    s.append("<text x=\"16\" y=\"24\" font-size=\"16\" font-weight=\"bold\">\(e(title))</text>")
    let ratio = Format.fixed(totals.compressionRatio, 2)
    let subtitle =
      "\(Format.count(totals.tensors, "tensor")) (\(totals.transformed) transformed): \(Format.bytes(totals.bytesBefore)) -> \(Format.bytes(totals.bytesAfter)) (ratio \(ratio)x), \(Format.fixed(totals.bitsPerWeightBefore, 2)) -> \(Format.fixed(totals.bitsPerWeightAfter, 2)) bits/weight, relative error \(Format.metric(totals.metrics?.relativeFrobeniusError))"
    s.append("<text x=\"16\" y=\"44\" font-size=\"12\">\(e(subtitle))</text>")

    guard !layers.isEmpty else {
      s.append("<text x=\"16\" y=\"76\" font-size=\"12\" fill=\"#666666\">No tensors: nothing to chart.</text>")
      s.append("</svg>")
      return s.joined(separator: "\n") + "\n"
    }

    // Legend.
    let legendY = 58
    var x = 16
    for (color, label) in [
      (ChartGeometry.beforeColor, "size before"), (ChartGeometry.afterColor, "size after"),
      (ChartGeometry.errorColor, "relative Frobenius error"),
    ] {
      s.append("<rect x=\"\(x)\" y=\"\(legendY)\" width=\"12\" height=\"10\" fill=\"\(color)\"/>")
      s.append("<text x=\"\(x + 16)\" y=\"\(legendY + 9)\">\(label)</text>")
      x += 16 + 7 * label.count + 20
    }
    var legendNote = "-: no transformed tensor with metrics in the layer"
    if layers.contains(where: \.errorIsApproximate) { legendNote += "; ~: parameter-weighted estimate" }
    s.append("<text x=\"\(x)\" y=\"\(legendY + 9)\" fill=\"#666666\">\(e(legendNote))</text>")

    // Scales.
    let maxBytes = layers.map { max($0.bytesBefore, $0.bytesAfter) }.max() ?? 0
    var unit = 0
    while unit < ChartGeometry.byteUnits.count - 1 && Double(maxBytes) >= pow(1024, Double(unit + 1)) { unit += 1 }
    let unitSize = pow(1024, Double(unit))
    let sizeAxis = NiceAxis(maximum: Double(maxBytes) / unitSize)
    let sizeScale = Double(g.sizeWidth) / (sizeAxis.top * unitSize)
    let finiteErrors = layers.compactMap(\.relativeError).filter(\.isFinite)
    let errorAxis = NiceAxis(maximum: finiteErrors.max() ?? 0)
    let errorScale = Double(g.errorWidth) / errorAxis.top

    s.append(
      "<text x=\"\(g.sizeX)\" y=\"\(g.panelTitleY)\" font-size=\"12\" font-weight=\"bold\">Size per layer, before and after</text>"
    )
    s.append(
      "<text x=\"\(g.ratioX)\" y=\"\(g.panelTitleY)\" font-size=\"12\" font-weight=\"bold\">ratio</text>"
    )
    s.append(
      "<text x=\"\(g.errorX)\" y=\"\(g.panelTitleY)\" font-size=\"12\" font-weight=\"bold\">Relative Frobenius error per layer</text>"
    )

    // Row shading, grid and axes under the bars.
    for row in layers.indices where row % 2 == 1 {
      s.append(
        "<rect x=\"16\" y=\"\(g.rowY(row))\" width=\"\(g.width - 32)\" height=\"\(ChartGeometry.rowHeight)\" fill=\"#f3f4f6\"/>"
      )
    }
    let axes: [(x: Int, width: Int, axis: NiceAxis, title: String)] = [
      (g.sizeX, g.sizeWidth, sizeAxis, "size (\(ChartGeometry.byteUnits[unit]))"),
      (g.errorX, g.errorWidth, errorAxis, "||W - W'|| / ||W|| (Frobenius)"),
    ]
    for a in axes {
      for tick in a.axis.ticks {
        let tx = n(Double(a.x) + Double(a.width) * tick / a.axis.top)
        s.append(
          "<line x1=\"\(tx)\" y1=\"\(g.rowsTop)\" x2=\"\(tx)\" y2=\"\(g.rowsBottom + 4)\" stroke=\"#d8dbe0\" stroke-width=\"1\"/>"
        )
        s.append(
          "<text x=\"\(tx)\" y=\"\(g.rowsBottom + 16)\" text-anchor=\"middle\" font-size=\"10\">\(e(Format.metric(tick)))</text>"
        )
        if g.topTicks {
          s.append(
            "<text x=\"\(tx)\" y=\"\(g.rowsTop - 5)\" text-anchor=\"middle\" font-size=\"10\">\(e(Format.metric(tick)))</text>"
          )
        }
      }
      s.append(
        "<line x1=\"\(a.x)\" y1=\"\(g.rowsBottom)\" x2=\"\(a.x + a.width)\" y2=\"\(g.rowsBottom)\" stroke=\"#333333\" stroke-width=\"1\"/>"
      )
      s.append(
        "<line x1=\"\(a.x)\" y1=\"\(g.rowsTop)\" x2=\"\(a.x)\" y2=\"\(g.rowsBottom)\" stroke=\"#333333\" stroke-width=\"1\"/>"
      )
      s.append(
        "<text x=\"\(a.x + a.width / 2)\" y=\"\(g.rowsBottom + 34)\" text-anchor=\"middle\">\(e(a.title))</text>"
      )
    }
    let middle = (g.rowsTop + g.rowsBottom) / 2
    s.append(
      "<text x=\"24\" y=\"\(middle)\" text-anchor=\"middle\" transform=\"rotate(-90 24 \(middle))\">layer</text>"
    )

    // One group per layer.
    for (row, layer) in layers.enumerated() {
      let y = g.rowY(row)
      let id = layer.index.map { "layer-\($0)" } ?? "layer-other"
      s.append("<g id=\"\(id)\" class=\"layer\">")
      let ratio = layer.bytesAfter > 0 ? Format.fixed(Double(layer.bytesBefore) / Double(layer.bytesAfter), 2) : "-"
      let tooltip =
        "layer \(layer.label): \(Format.count(layer.tensorNames.count, "tensor")) (\(layer.transformed) transformed), \(Format.bytes(layer.bytesBefore)) -> \(Format.bytes(layer.bytesAfter)) (ratio \(ratio)x), relative error \(Report.errorText(layer))\n"
        + layer.tensorNames.joined(separator: "\n")
      s.append("<title>\(e(tooltip))</title>")
      s.append(
        "<text x=\"\(g.labelRight)\" y=\"\(y + 14)\" text-anchor=\"end\">\(e(layer.label))</text>"
      )
      s.append(
        "<rect class=\"before\" x=\"\(g.sizeX)\" y=\"\(y + 3)\" width=\"\(n(Double(layer.bytesBefore) * sizeScale))\" height=\"7\" fill=\"\(ChartGeometry.beforeColor)\"/>"
      )
      s.append(
        "<rect class=\"after\" x=\"\(g.sizeX)\" y=\"\(y + 10)\" width=\"\(n(Double(layer.bytesAfter) * sizeScale))\" height=\"7\" fill=\"\(ChartGeometry.afterColor)\"/>"
      )
      s.append("<text x=\"\(g.ratioX)\" y=\"\(y + 14)\" fill=\"#555555\">\(ratio == "-" ? "-" : ratio + "x")</text>")
      if let error = layer.relativeError {
        let width = error.isFinite ? error * errorScale : Double(g.errorWidth)
        s.append(
          "<rect class=\"error\" x=\"\(g.errorX)\" y=\"\(y + 4)\" width=\"\(n(width))\" height=\"12\" fill=\"\(ChartGeometry.errorColor)\"/>"
        )
        let text = e(Report.errorText(layer))
        if width > Double(g.errorWidth) * 0.8 {
          s.append(
            "<text x=\"\(n(Double(g.errorX) + width - 4))\" y=\"\(y + 14)\" text-anchor=\"end\" fill=\"#ffffff\">\(text)</text>"
          )
        } else {
          s.append("<text x=\"\(n(Double(g.errorX) + width + 4))\" y=\"\(y + 14)\">\(text)</text>")
        }
      } else {
        s.append("<text x=\"\(g.errorX + 4)\" y=\"\(y + 14)\" fill=\"#888888\">-</text>")
      }
      s.append("</g>")
    }
    s.append("</svg>")
    return s.joined(separator: "\n") + "\n"
  }
}

/// Where things go in the chart (pixels). Rows are a fixed height, so the chart grows
/// with the number of layers and every label keeps its size.
private struct ChartGeometry {
  static let rowHeight = 20
  static let beforeColor = "#9aa5b1"
  static let afterColor = "#2f6db5"
  static let errorColor = "#d9822b"
  static let byteUnits = ["B", "KiB", "MiB", "GiB", "TiB"]

  let width = 960
  let labelRight = 84
  let sizeX = 96
  let sizeWidth = 420
  /// The per-layer compression ratio, between the panels.
  let ratioX = 524
  let errorX = 584
  let errorWidth = 336
  let panelTitleY = 92
  let rows: Int
  /// Tick labels above the rows too, when the chart is too tall to see its bottom axis.
  let topTicks: Bool
  let rowsTop: Int

  init(rows: Int) {
    self.rows = rows
    topTicks = rows > 20
    rowsTop = topTicks ? 116 : 100
  }

  var rowsBottom: Int { rowsTop + rows * ChartGeometry.rowHeight }
  var height: Int { rows == 0 ? 96 : rowsBottom + 48 }
  func rowY(_ row: Int) -> Int { rowsTop + row * ChartGeometry.rowHeight }
}

/// A linear axis from 0 to a round number at or above `maximum`, with 1-2-5 steps.
private struct NiceAxis {
  let step: Double
  let top: Double

  init(maximum: Double) {
    guard maximum > 0, maximum.isFinite else {
      step = 0.2
      top = 1
      return
    }
    let raw = maximum / 5
    let magnitude = pow(10, (log10(raw)).rounded(.down))
    let fraction = raw / magnitude
    step = (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude
    top = max(1, (maximum / step - 1e-9).rounded(.up)) * step
  }

  var ticks: [Double] {
    let count = Int((top / step).rounded())
    return (0...count).map { Double($0) * step }
  }
}

/// Escaping and numbers shared by the SVG and the HTML.
enum Markup {
  /// `text` safe in XML and HTML text and attribute values: & < > " ' as entities,
  /// and the control characters XML 1.0 forbids (even as references) as U+FFFD.
  static func escape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
      switch scalar {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
      default:
        if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF {
          out.unicodeScalars.append("\u{FFFD}")
        } else {
          out.unicodeScalars.append(scalar)
        }
      }
    }
    return out
  }

  /// A coordinate with at most 2 decimals and no trailing zeros ("12.5", "40").
  static func number(_ value: Double) -> String {
    var text = Format.fixed(value, 2)
    while text.contains("."), text.hasSuffix("0") { text.removeLast() }
    if text.hasSuffix(".") { text.removeLast() }
    return text == "-0" ? "0" : text
  }
}
