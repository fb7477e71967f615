import Testing

@testable import LinearAlgebra

@Suite("Error mapping")
struct ErrorTests {
  @Test func nanInputIsRejectedBeforeLAPACK() throws {
    var a = gaussianMatrix(6, 5, seed: 400)
    a[4, 2] = .nan
    let calls: [(String, (Matrix) throws -> Void)] = [
      ("svd", { _ = try svd($0) }),
      ("singularValues", { _ = try singularValues($0) }),
      ("qr", { _ = try qr($0) }),
      ("lq", { _ = try lq($0) }),
      ("lqViaTransposedQR", { _ = try lqViaTransposedQR($0) }),
      ("pivotedQR", { _ = try pivotedQR($0) }),
      ("pivotedLQ", { _ = try pivotedLQ($0) }),
    ]
    for (name, call) in calls {
      #expect(throws: LinearAlgebraError.nonFiniteInput(operation: name, row: 4, column: 2)) {
        try call(a)
      }
    }
    var s = symmetricMatrix(4, seed: 401)
    s[1, 3] = -.infinity
    #expect(
      throws: LinearAlgebraError.nonFiniteInput(
        operation: "symmetricEigen", row: 1, column: 3)
    ) { try symmetricEigen(s) }
    #expect(
      throws: LinearAlgebraError.nonFiniteInput(
        operation: "cholesky", row: 1, column: 3)
    ) { try cholesky(s) }
  }

  @Test func lapackInfoMapping() {
    // LAPACKE's _work functions report Fortran argument N as info = -(N + 1).
    #expect(throws: LinearAlgebraError.illegalArgument(routine: "sgesdd", argument: 5)) {
      try LAPACKInterop.check(-6, .sgesdd)
    }
    #expect(throws: LinearAlgebraError.didNotConverge(routine: "sgesvd", info: 3)) {
      try LAPACKInterop.check(3, .sgesvd)
    }
    #expect(throws: LinearAlgebraError.didNotConverge(routine: "ssyevd", info: 7)) {
      try LAPACKInterop.check(7, .ssyevd)
    }
    #expect(throws: LinearAlgebraError.notPositiveDefinite(routine: "spotrf", leadingMinor: 2)) {
      try LAPACKInterop.check(2, .spotrf)
    }
    #expect(throws: LinearAlgebraError.outOfMemory(routine: "sgeqrf")) {
      try LAPACKInterop.check(-1010, .sgeqrf)
    }
    #expect(throws: LinearAlgebraError.lapackFailure(routine: "sgeqp3", info: 1)) {
      try LAPACKInterop.check(1, .sgeqp3)
    }
    #expect(throws: Never.self) { try LAPACKInterop.check(0, .sgesdd) }
  }

  @Test func messagesNameRoutineInfoAndRemedy() {
    let illegal = LinearAlgebraError.illegalArgument(routine: "sgesdd", argument: 5)
    #expect(illegal.errorDescription?.contains("sgesdd") == true)
    #expect(illegal.errorDescription?.contains("argument 5 had an illegal value") == true)
    #expect(illegal.errorDescription?.contains("info = -5") == true)
    #expect(illegal.errorDescription?.contains("report") == true)
    #expect(illegal.lapackInfo == -5)
    #expect(illegal.routine == "sgesdd")

    let converge = LinearAlgebraError.didNotConverge(routine: "sgesdd", info: 2)
    #expect(converge.errorDescription?.contains("sgesdd did not converge (info = 2)") == true)
    #expect(converge.lapackInfo == 2)

    let spd = LinearAlgebraError.notPositiveDefinite(routine: "spotrf", leadingMinor: 3)
    #expect(spd.errorDescription?.contains("leading minor of order 3") == true)

    let nan = LinearAlgebraError.nonFiniteInput(operation: "svd", row: 1, column: 2)
    #expect(nan.errorDescription?.contains("NaN") == true)
    #expect(nan.lapackInfo == nil && nan.routine == nil)
  }

  @Test func workspaceSizesRoundUp() throws {
    // 2^24 + 2 is not representable in Float: the query can round down, we round up.
    let query = Float(16_777_218)
    #expect(try LAPACKInterop.workspaceCount(query, operation: "t") >= 16_777_218)
    #expect(try LAPACKInterop.workspaceCount(0, operation: "t") >= 1)
    #expect(throws: LinearAlgebraError.self) {
      try LAPACKInterop.workspaceCount(3e9, operation: "t")
    }
    #expect(throws: LinearAlgebraError.self) {
      try LAPACKInterop.workspaceCount(.nan, operation: "t")
    }
  }

  @Test func tooLargeDimensionsAreRejected() {
    #expect(throws: LinearAlgebraError.self) {
      try LAPACKInterop.int32(Int(Int32.max) + 1, "rows", operation: "svd")
    }
  }
}
