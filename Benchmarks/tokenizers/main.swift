// Tokenizer throughput on Fixtures/text/corpus.txt: encodes every line with each fixture tokenizer,
// best of 5 runs, and prints lines, tokens, seconds and tokens per second. Built by bench.sh.
import Foundation

let root = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "."
let data = FileManager.default.contents(atPath: root + "/Fixtures/text/corpus.txt")!
var lines = Array(data).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map {
  String(decoding: $0, as: UTF8.self)
}
if lines.last == "" { lines.removeLast() }
let bytes = lines.reduce(0) { $0 + $1.utf8.count }
print("corpus: \(lines.count) lines, \(bytes) bytes")
for name in ["llama3-bpe", "gpt2-bpe", "qwen2-bpe", "llama2-spm", "mistral-spm", "bert-wordpiece"] {
  let loadStart = Date()
  let tokenizer = try Tokenizer(contentsOf: root + "/Fixtures/tokenizers/\(name)/tokenizer.json")
  let loadTime = Date().timeIntervalSince(loadStart)
  var best = Double.infinity
  var tokens = 0
  for _ in 0..<5 {
    let start = Date()
    tokens = 0
    for line in lines { tokens += tokenizer.encode(line).count }
    best = min(best, Date().timeIntervalSince(start))
  }
  let rate = Double(tokens) / best
  print(
    "\(name): \(tokens) tokens in \(String(format: "%.3f", best)) s = \(String(format: "%.0f", rate)) tokens/s"
      + " (load \(String(format: "%.3f", loadTime)) s)")
}
