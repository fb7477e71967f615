import Testing
import Tokenizers

@Suite struct TokenizerErrorTests {
  @Test func missingFileIsAnError() {
    #expect(throws: TokenizerError.self) { try Tokenizer(contentsOf: "/nonexistent/tokenizer.json") }
  }
}
