/// The search for the smallest eigenvalue lambda_1 of a symmetric tridiagonal T (the
/// largest of T is minus the smallest of -T, so one search serves both ends).
///
/// Two kinds of knowledge are kept apart. `low` and `high` come from Sturm counts, which
/// are backward stable: no eigenvalue below `low`, at least one below `high`. The search
/// ends when they are within 2.08 w (w = `halfWidth`), and only they decide the answer's
/// accuracy.
/// `lowerBound`, `upperBound` and `estimate` come from Laguerre's method on the
/// characteristic polynomial and only choose where to count next: they converge cubically
/// to a simple eigenvalue, but in rounding they can be wrong, and then they are dropped.
///
/// The bounds, for p(x) = det(T - x I) with all roots real, g = p'/p = sum 1/(x - lambda_k)
/// and h = -(p'/p)' = sum 1/(x - lambda_k)^2 (Cauchy-Schwarz on the n - 1 other roots):
/// - from x below lambda_1 (g < 0): x + n / (-g + sqrt((n-1)(n h - g^2))) <= lambda_1
///   <= x - g/h. The lower one is Laguerre's step; the upper one is exact for an m-fold
///   root, where Laguerre's step converges only linearly.
/// - from x in (lambda_1, lambda_2): lambda_1 <= x - n / (g + sqrt((n-1)(n h - g^2))), and
///   x - 1/g <= lambda_1 when g > 0 (Newton's step overshoots, as the other roots lie
///   above x).
/// - from x above lambda_2: nothing (Laguerre's method would find another eigenvalue).
///
/// Each round counts at two points. Early on they are the lower bound and the estimate
/// (the latest Laguerre step, preferably from inside), so both sides close in on lambda_1;
/// once the bounds agree to within 2w, the points are their midpoint -+ w, and counts 0
/// and >= 1 there finish the search. Clusters of eigenvalues are what slow Laguerre's
/// method down: from below, the estimate uses the multiplicity that g^2 / h suggests, and
/// when a step from inside (slow next to a close lambda_2) leaves the counted interval
/// more than half as wide, the second point bisects instead. After `laguerreRounds` rounds
/// only trisection is used, which bounds the work whatever the bounds do.
struct ExtremeEigenvalueSearch {
    /// A sample at one point, in the search's coordinates.
    struct Sample {
        var x: Double
        var below: Int
        var g: Double
        var h: Double
    }

    static let laguerreRounds = 16

    let order: Int
    let halfWidth: Double
    /// No eigenvalue below (counted, or Gershgorin).
    private(set) var low: Double
    /// At least one eigenvalue below (counted, or Gershgorin).
    private(set) var high: Double
    /// How many eigenvalues lie below `high`.
    private var belowHigh: Int
    private var lowerBound = -Double.infinity
    private var upperBound = Double.infinity
    private var estimate: Double?
    private var hint: Double?
    private var rounds = 0
    private var stalled = false

    /// - Parameters:
    ///   - low, high: an interval known to contain lambda_1 and no eigenvalue below it.
    ///   - tolerance: the width the counted interval must shrink to, at most.
    ///   - hint: a point expected in [lambda_1, lambda_2] (by interlacing, the leading
    ///     submatrix's smallest eigenvalue); when lambda_1 is already within the tolerance
    ///     of it, the first round finishes the search.
    init(order: Int, low: Double, high: Double, tolerance: Double, hint: Double?) {
        self.order = order
        self.low = low
        self.high = high
        belowHigh = order
        // Certifying pairs are 2w apart and the search stops at 2.08 w: slack for rounding.
        halfWidth = 0.24 * tolerance
        self.hint = hint
    }

    var isDone: Bool { high - low <= 2.08 * halfWidth }

    /// lambda_1 to within the counted interval: the estimate when it lies inside, else the
    /// interval's midpoint.
    var result: Double {
        let middle = low + (high - low) / 2
        return Swift.min(Swift.max(estimate ?? middle, low), high)
    }

    /// Where to count next.
    func nextPoints() -> (Double, Double) {
        let w = halfWidth
        if rounds == 0, let hint, low < hint, hint < high {
            return (Swift.max(hint - 2 * w, low), hint)
        }
        if rounds >= Self.laguerreRounds {
            let third = (high - low) / 3
            return (low + third, high - third)
        }
        let lower = Swift.max(low, lowerBound), upper = Swift.min(high, upperBound)
        if estimate != nil, upper - lower <= 2 * w {
            let centre = Swift.min(Swift.max(lower + (upper - lower) / 2, low + w), high - w)
            return (centre - w, centre + w)
        }
        // From below: the lower bound, or `low` itself while nothing is known, which costs
        // no information there and yields the first bounds. Never closer than 2w to `low`,
        // so that a count >= 1 finishes.
        let first = lowerBound.isFinite ? Swift.max(lower, low + 2 * w) : low
        var second = estimate.map { Swift.min($0, high - 2 * w) } ?? low + (high - low) / 2
        if second <= first || stalled { second = first + (upper - first) / 2 }
        return (first, second)
    }

    /// Takes in the samples at the points `nextPoints` returned.
    mutating func update(_ first: Sample, _ second: Sample) {
        let width = high - low
        count(first)
        count(second)
        var inside: Double?, outside: Sample?
        bound(first, inside: &inside, outside: &outside)
        bound(second, inside: &inside, outside: &outside)
        rounds += 1
        stalled = high - low > width / 2 && inside != nil
        let lower = Swift.max(low, lowerBound), upper = Swift.min(high, upperBound)
        if lower > upper + halfWidth {
            // The bounds contradict the counts: rounding spoiled them.
            lowerBound = -.infinity
            upperBound = .infinity
            estimate = nil
            return
        }
        if let guess = inside ?? outside.map(multipleRootStep), guess.isFinite {
            estimate = guess
        } else {
            estimate = lowerBound.isFinite ? lower : nil
        }
        if let guess = estimate {
            estimate = upper - lower <= 2 * halfWidth
                ? lower + (upper - lower) / 2 : Swift.min(Swift.max(guess, lower), upper)
        }
    }

    private mutating func count(_ s: Sample) {
        if s.below == 0 {
            low = Swift.max(low, s.x)
        } else if s.x < high {
            high = s.x
            belowHigh = s.below
        }
    }

    /// Tightens the bounds from one sample; `inside` keeps the best Laguerre step from
    /// within (lambda_1, lambda_2), `outside` the highest sample below lambda_1.
    private mutating func bound(_ s: Sample, inside: inout Double?, outside: inout Sample?) {
        guard s.g.isFinite, s.h > 0, s.h.isFinite else { return }
        let n = Double(order)
        let root = ((n - 1) * Swift.max(0, n * s.h - s.g * s.g)).squareRoot()
        if s.below == 0, s.g < 0 {
            lowerBound = Swift.max(lowerBound, s.x + n / (root - s.g))
            upperBound = Swift.min(upperBound, s.x - s.g / s.h)
            if s.x > outside?.x ?? -.infinity { outside = s }
        } else if s.below == 1, s.g + root > 0 {
            let bound = s.x - n / (s.g + root)
            upperBound = Swift.min(upperBound, bound)
            if s.g > 0 { lowerBound = Swift.max(lowerBound, s.x - 1 / s.g) }
            inside = Swift.min(inside ?? bound, bound)
        }
    }

    /// Laguerre's step from below for an m-fold root, m = g^2 / h rounded, at most the
    /// number of eigenvalues counted below `high` (m = 1 is the plain step).
    private func multipleRootStep(_ s: Sample) -> Double {
        let n = Double(order)
        let m = Swift.min(Swift.max((s.g * s.g / s.h).rounded(), 1), Double(belowHigh))
        return s.x + n / (((n - m) / m * Swift.max(0, n * s.h - s.g * s.g)).squareRoot() - s.g)
    }
}
