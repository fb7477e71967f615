import CheckpointIO
import Foundation
import TestSupport
import Testing

@testable import SwiftCompressKit

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// The elements of an XML document, with their attributes and the id of the
/// enclosing `<g class="layer">`; nil when the text is not well-formed XML.
final class ParsedSVG: NSObject, XMLParserDelegate {
  struct Element {
    var name: String
    var attributes: [String: String]
    /// The id of the layer group the element is in (the group itself included).
    var layer: String?
  }

  private(set) var elements: [Element] = []
  private var stack: [String?] = []

  static func parse(_ text: String) -> ParsedSVG? {
    let document = ParsedSVG()
    let parser = XMLParser(data: Data(text.utf8))
    parser.delegate = document
    return parser.parse() ? document : nil
  }

  func parser(
    _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
    attributes: [String: String] = [:]
  ) {
    var layer = stack.last ?? nil
    if elementName == "g", attributes["class"] == "layer" { layer = attributes["id"] }
    stack.append(layer)
    elements.append(Element(name: elementName, attributes: attributes, layer: layer))
  }

  func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
    stack.removeLast()
  }

  /// The ids of the layer groups, in document order.
  var layerGroups: [String] {
    elements.filter { $0.name == "g" && $0.attributes["class"] == "layer" }.compactMap { $0.attributes["id"] }
  }

  /// The width of the rect of `kind` ("before", "after", "error") in `layer`.
  func barWidth(_ layer: String, _ kind: String) -> Double? {
    elements.first { $0.name == "rect" && $0.layer == layer && $0.attributes["class"] == kind }
      .flatMap { $0.attributes["width"] }.flatMap(Double.init)
  }
}

@Suite("Report chart and HTML page")
struct ReportChartTests {
  /// A real report: tiny Llama F32 through a pass, in a temporary folder.
  func run(
    _ pass: any CompressionPass, exclude: [String] = [], in folder: TemporaryFolder, named name: String = "o"
  ) throws -> Report {
    try Compressor.run(
      pass: pass,
      options: CompressionOptions(
        input: fixture("tiny-llama-f32"), output: folder.file(name),
        selection: try TensorSelection(exclude: exclude), command: "quantize"))
  }

  func quantized(in folder: TemporaryFolder) throws -> Report {
    try run(QuantizePass(configuration: .init(scheme: .w4a16)), in: folder)
  }

  @Test func layerIndexIsFoundInTheUsualNamings() {
    #expect(Report.layerIndex(of: "model.layers.12.mlp.up_proj.weight") == 12)
    #expect(Report.layerIndex(of: "bert.encoder.layer.3.attention.self.query.weight") == 3)
    #expect(Report.layerIndex(of: "transformer.h.0.attn.c_attn.weight") == 0)
    #expect(Report.layerIndex(of: "blocks.7.norm1.weight") == 7)
    #expect(Report.layerIndex(of: "model.norm.weight") == nil)
    #expect(Report.layerIndex(of: "lm_head.weight") == nil)
    #expect(Report.layerIndex(of: "model.layers.5") == nil)  // no component after the index
    #expect(Report.layerIndex(of: "model.sublayers.5.weight") == nil)  // whole components only
    #expect(Report.layerIndex(of: "model.layers.x.weight") == nil)
  }

  @Test func svgIsWellFormedWithOneBarGroupPerLayer() throws {
    let folder = TemporaryFolder()
    let report = try quantized(in: folder)
    let svg = SVGChartReporter().render(report)
    let parsed = try #require(ParsedSVG.parse(svg), "the SVG is not well-formed XML")
    #expect(parsed.elements.first?.name == "svg")
    #expect(parsed.elements.first?.attributes["version"] == "1.1")
    // tiny-llama has layers 0 and 1; embeddings, final norm and lm_head are "other".
    #expect(parsed.layerGroups == ["layer-0", "layer-1", "layer-other"])
    #expect(report.layerSummaries().map(\.label) == ["0", "1", "other"])
    for layer in parsed.layerGroups {
      #expect(parsed.barWidth(layer, "before") != nil && parsed.barWidth(layer, "after") != nil, "\(layer)")
    }
    #expect(svg.contains("swiftcompress quantize"))
    #expect(SVGChartReporter().render(report) == svg)  // deterministic
  }

  @Test func barLengthsAreProportionalToBytes() throws {
    let folder = TemporaryFolder()
    let report = try quantized(in: folder)
    let parsed = try #require(ParsedSVG.parse(SVGChartReporter().render(report)))
    let layers = Dictionary(uniqueKeysWithValues: report.layerSummaries().map { ($0.label, $0) })
    let zero = try #require(layers["0"])
    let other = try #require(layers["other"])
    #expect(zero.bytesAfter < zero.bytesBefore)  // W4A16 shrinks the layer
    let before0 = try #require(parsed.barWidth("layer-0", "before"))
    let after0 = try #require(parsed.barWidth("layer-0", "after"))
    let beforeOther = try #require(parsed.barWidth("layer-other", "before"))
    let afterOther = try #require(parsed.barWidth("layer-other", "after"))
    func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-3 * max(abs(a), abs(b)) }
    #expect(close(after0 / before0, Double(zero.bytesAfter) / Double(zero.bytesBefore)))
    #expect(close(beforeOther / before0, Double(other.bytesBefore) / Double(zero.bytesBefore)))
    #expect(close(afterOther / after0, Double(other.bytesAfter) / Double(zero.bytesAfter)))
    // The longest bar fits the 420 px panel.
    #expect([before0, after0, beforeOther, afterOther].allSatisfy { $0 > 0 && $0 <= 420 })
  }

  @Test func layerErrorIsAggregatedFromEnergies() throws {
    let folder = TemporaryFolder()
    let report = try quantized(in: folder)
    let layers = report.layerSummaries()
    // quantize leaves lm_head, the embeddings and the norms alone: "other" has no error.
    #expect(layers.last?.label == "other" && layers.last?.relativeError == nil)
    for layer in layers where layer.transformed > 0 {
      let measured = report.tensors.filter { layer.tensorNames.contains($0.name) && !$0.isKept }.compactMap(\.metrics)
      let reference = measured.reduce(0) { $0 + ($1.referenceEnergy ?? 0) }
      let error = measured.reduce(0) { $0 + ($1.errorEnergy ?? 0) }
      let relative = try #require(layer.relativeError)
      #expect(abs(relative - (error / reference).squareRoot()) <= 1e-12)
      #expect(!layer.errorIsApproximate)
    }
    // Summed over the layers, the energies give the run's total error.
    let reference = layers.reduce(0) { $0 + $1.referenceEnergy }
    let error = layers.reduce(0) { $0 + $1.errorEnergy }
    let total = try #require(report.totals.metrics?.relativeFrobeniusError)
    #expect(abs((error / reference).squareRoot() - total) <= 1e-9 * total)
    // Unlike a plain mean of the tensors' relative errors.
    let zero = try #require(layers.first)
    let errors = report.tensors.filter { zero.tensorNames.contains($0.name) }.compactMap {
      $0.metrics?.relativeFrobeniusError
    }
    #expect(abs(errors.reduce(0, +) / Double(errors.count) - (zero.relativeError ?? 0)) > 1e-6)
  }

  @Test func layerWithoutTransformedTensorHasNoErrorBar() throws {
    let folder = TemporaryFolder()
    let report = try run(
      QuantizePass(configuration: .init(scheme: .w4a16)), exclude: ["layers\\.1\\."], in: folder)
    let layers = report.layerSummaries()
    #expect(layers.first { $0.label == "1" }?.relativeError == nil)
    let parsed = try #require(ParsedSVG.parse(SVGChartReporter().render(report)))
    #expect(parsed.barWidth("layer-1", "error") == nil)
    #expect(parsed.barWidth("layer-0", "error") != nil)
    #expect(parsed.barWidth("layer-1", "before") != nil)
  }

  @Test func reportsWithoutEnergiesFallBackToParameterWeights() throws {
    let folder = TemporaryFolder()
    var report = try quantized(in: folder)
    for i in report.tensors.indices {
      report.tensors[i].metrics?.referenceEnergy = nil
      report.tensors[i].metrics?.errorEnergy = nil
    }
    let zero = try #require(report.layerSummaries().first)
    #expect(zero.errorIsApproximate)
    let entries = report.tensors.filter { zero.tensorNames.contains($0.name) && $0.metrics != nil }
    let weighted = entries.reduce(0.0) {
      $0 + Double($1.parameters) * pow($1.metrics?.relativeFrobeniusError ?? 0, 2)
    }
    let parameters = entries.reduce(0.0) { $0 + Double($1.parameters) }
    #expect(abs((zero.relativeError ?? 0) - (weighted / parameters).squareRoot()) <= 1e-12)
    #expect(SVGChartReporter().render(report).contains("~" + Format.metric(zero.relativeError)))
  }

  @Test func tensorNamesAreEscaped() throws {
    let folder = TemporaryFolder()
    var report = try quantized(in: folder)
    report.tensors[0].name = "model.layers.0.<&>\"'.weight"
    report.command = "quantize <&>"
    let svg = SVGChartReporter().render(report)
    let html = HTMLReporter().render(report)
    #expect(ParsedSVG.parse(svg) != nil)
    for text in [svg, html] {
      #expect(text.contains("model.layers.0.&lt;&amp;&gt;&quot;&#39;.weight"))
      #expect(!text.contains("<&>"))
      #expect(text.contains("quantize &lt;&amp;&gt;"))
    }
    // The SVG embedded in the page is well-formed on its own.
    let start = try #require(html.range(of: "<svg "))
    let end = try #require(html.range(of: "</svg>"))
    #expect(ParsedSVG.parse(String(html[start.lowerBound..<end.upperBound])) != nil)
  }

  @Test func zeroOneAndTwoHundredLayers() throws {
    let folder = TemporaryFolder()
    let base = try quantized(in: folder)
    let template = try #require(base.tensors.first { $0.name == "model.layers.0.mlp.up_proj.weight" })

    var empty = base
    empty.tensors = []
    let emptyParsed = try #require(ParsedSVG.parse(SVGChartReporter().render(empty)))
    #expect(emptyParsed.layerGroups.isEmpty)
    #expect(HTMLReporter().render(empty).contains("<svg "))

    var one = base
    one.tensors = base.tensors.filter { Report.layerIndex(of: $0.name) == 0 }
    let oneParsed = try #require(ParsedSVG.parse(SVGChartReporter().render(one)))
    #expect(oneParsed.layerGroups == ["layer-0"])

    var many = base
    many.tensors = (0..<200).map { i in
      var entry = template
      entry.name = "model.layers.\(i).mlp.up_proj.weight"
      entry.bytesBefore = template.bytesBefore * (1 + i % 7)
      return entry
    }
    let svg = SVGChartReporter().render(many)
    let parsed = try #require(ParsedSVG.parse(svg))
    #expect(parsed.layerGroups == (0..<200).map { "layer-\($0)" })
    // The chart grows with the layers instead of squeezing them: 20 px a row.
    let height = { (p: ParsedSVG) in p.elements.first?.attributes["height"].flatMap(Double.init) ?? 0 }
    #expect(height(parsed) >= 200 * 20)
    #expect(height(parsed) > height(oneParsed))
    let before3 = try #require(parsed.barWidth("layer-3", "before"))
    let before0 = try #require(parsed.barWidth("layer-0", "before"))
    #expect(abs(before3 / before0 - 4) < 1e-3)
    #expect(SVGChartReporter().render(many) == svg)
  }

  @Test func htmlIsOneSelfContainedPage() throws {
    let folder = TemporaryFolder()
    let report = try quantized(in: folder)
    let html = HTMLReporter().render(report)
    #expect(html.hasPrefix("<!DOCTYPE html>"))
    #expect(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""))
    #expect(html.contains("id=\"layer-0\""))
    #expect(!html.contains("<?xml"))  // the SVG is inlined without its declaration
    for external in ["src=", "href=", "<script", "@import", "url(", "<link"] {
      #expect(!html.lowercased().contains(external), "\(external)")
    }
    for tensor in report.tensors { #expect(html.contains(Markup.escape(tensor.name))) }
    #expect(html.contains(Format.bytes(report.totals.bytesAfter)))
  }

  @Test func aRunWritesTheChartAndThePage() throws {
    let folder = TemporaryFolder()
    let report = try run(CastPass(configuration: .init(dtype: .bf16)), in: folder, named: "cast")
    let svgPath = folder.file("cast/" + Report.svgFileName)
    let htmlPath = folder.file("cast/" + Report.htmlFileName)
    let svg = try String(contentsOfFile: svgPath, encoding: .utf8)
    let html = try String(contentsOfFile: htmlPath, encoding: .utf8)
    #expect(svg == SVGChartReporter().render(report))
    #expect(html == HTMLReporter().render(report))
    #expect(ParsedSVG.parse(svg)?.layerGroups.count == 3)
  }
}
