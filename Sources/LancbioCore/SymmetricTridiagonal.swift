/// A symmetric tridiagonal matrix T, viewed in storage that the caller owns.
///
/// The mathematics: T is n x n with diagonal entries d_0 ... d_{n-1} and off-diagonal
/// entries e_0 ... e_{n-2}, where e_i couples rows i and i + 1 (T_{i,i+1} = T_{i+1,i} =
/// e_i) and every other entry is zero. The view records only where d and e lie and n, so
/// forming one allocates nothing and copies nothing: the methods (eigendecomposition,
/// extreme eigenvalues, solves) run on the per-step path of a Lanczos cycle, where T grows
/// by one row a step inside storage allocated once. The sizes are checked once, here, so
/// that the methods' loops need not check them.
///
/// The storage must outlive every use of the view and must not change while a method
/// runs; the methods never write to it.
///
/// Edge cases:
/// - n = 1: T has no off-diagonal entry, and an empty off-diagonal buffer is valid (even
///   one without a base address).
/// - An off-diagonal buffer of n entries, the layout of storage sized for a growing T, is
///   valid too; its last entry is never read.
/// - The entries are not checked here: each method says what non-finite entries give.
public struct SymmetricTridiagonal {
    /// n >= 1.
    public let dimension: Int
    /// d_0 ... d_{n-1}.
    let diagonal: UnsafePointer<Double>
    /// e_0 ... e_{n-2}. For n = 1 a valid address that is never read, so that the loops
    /// need no optional.
    let offDiagonal: UnsafePointer<Double>

    /// Views T in the given storage.
    ///
    /// - Parameters:
    ///   - diagonal: The n >= 1 diagonal entries; its count is the dimension n.
    ///   - offDiagonal: Count n - 1 or n; entry i couples rows i and i + 1, and only the
    ///     first n - 1 entries are read.
    /// - Returns: nil when `diagonal` is empty or `offDiagonal` has neither n - 1 nor n
    ///   entries; another count means the two buffers do not describe one matrix.
    public init?(diagonal: UnsafeBufferPointer<Double>, offDiagonal: UnsafeBufferPointer<Double>) {
        let n = diagonal.count
        guard n >= 1, let d = diagonal.baseAddress, offDiagonal.count == n - 1 || offDiagonal.count == n
        else { return nil }
        dimension = n
        self.diagonal = d
        self.offDiagonal = offDiagonal.baseAddress ?? d
    }
}
