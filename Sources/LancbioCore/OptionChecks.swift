/// The range checks that several methods' options share, with the messages the C and
/// Python layers pass on unchanged.
enum OptionChecks {
    /// The largest iteration count, step count or number of terms an option may ask for.
    static let maximumCount = 1 << 30

    /// A step size: finite and > 0.
    static func positive(_ x: Double, _ name: String) throws(EstimatorError) {
        guard x.isFinite, x > 0 else { throw .invalidArgument("\(name) must be finite and > 0 (got \(x))") }
    }

    /// A count in low...maximumCount.
    static func count(_ k: Int, _ name: String, atLeast low: Int) throws(EstimatorError) {
        guard k >= low, k <= maximumCount else {
            throw .invalidArgument("\(name) must be in \(low)...\(maximumCount) (got \(k))")
        }
    }

    /// A relative tolerance: finite and >= 0.
    static func tolerance(_ tol: Double, _ name: String) throws(EstimatorError) {
        guard tol.isFinite, tol >= 0 else { throw .invalidArgument("\(name) must be finite and >= 0 (got \(tol))") }
    }
}
