import ArgumentParser
import Foundation
import SwiftCompressKit

extension SwiftCompressCommand {
  struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "tokenize",
      abstract: "Print the token ids of each sample as evaluate and calibrate see them.",
      discussion: """
        The samples are read, drawn (--samples, --seed), tokenized with the model folder's \
        tokenizer.json and cut (--seq-len, --pack) exactly as evaluate and calibrate do (to the \
        config.json's max_position_embeddings and a sentence-transformers folder's max_seq_length; \
        text is truncated by the tokenizer, which keeps its special tokens), and checked against \
        config.json's vocab_size (exit 65 naming the sample); one line per \
        sample, ids separated by spaces, or with --json a JSON list per line (the --tokens format).
        """)

    @Argument(help: "The model folder (its tokenizer.json and config.json are read).")
    var model: String

    @OptionGroup(title: "Data") var data: DataOptions

    func validate() throws { try data.requireGiven() }

    @Flag(name: .long, help: "Print JSON lines (a list of ids per sample), which --tokens reads.")
    var json = false

    func run() throws {
      try Diagnostics.reportingErrors {
        let samples = try data.samples(data.load(model: model), models: [model])
        var text = ""
        for sequence in samples.sequences {
          let ids = sequence.map { String($0) }
          text += json ? "[" + ids.joined(separator: ",") + "]\n" : ids.joined(separator: " ") + "\n"
        }
        printResult(text)
      }
    }
  }
}
