// The vector type of the kernels and its loads and stores. Kernels vectorise along each
// column (rather than across columns), so every load is contiguous. In code specialised
// for Double or Float the type tests fold away.

#if LANCBIO_AVX512
/// One vector register of Doubles: 512 bits where the build targets AVX-512, whose 32
/// registers also hold the multi-column kernels' sums without spilling. Twice the values
/// per instruction matter even in memory-bound passes: a pass runs in about its memory
/// time plus its arithmetic time, not the larger of the two (measured at n = 1e5, j = 40:
/// the orthogonality products cost the same 130 us in either basis pass).
@usableFromInline typealias DoubleLanes = SIMD8<Double>
@usableFromInline typealias FloatLanes = SIMD8<Float>
#else
@usableFromInline typealias DoubleLanes = SIMD4<Double>
@usableFromInline typealias FloatLanes = SIMD4<Float>
#endif

extension Kernels {
    /// Values per vector: rows advance by this much per vector step.
    @inlinable @inline(__always)
    static var laneCount: Int { DoubleLanes.scalarCount }

    /// Values p[i ..< i + laneCount] as Doubles.
    @inlinable @inline(__always)
    static func loadLanes<T: BinaryFloatingPoint>(_ p: UnsafePointer<T>, _ i: Int) -> DoubleLanes {
        if T.self == Double.self {
            return UnsafeRawPointer(p + i).loadUnaligned(as: DoubleLanes.self)
        }
        if T.self == Float.self {
            return widened(UnsafeRawPointer(p + i).loadUnaligned(as: FloatLanes.self))
        }
        var v = DoubleLanes()
        for k in 0..<laneCount { v[k] = Double(p[i &+ k]) }
        return v
    }

    /// Stores value, rounded to T, at p[i ..< i + laneCount].
    @inlinable @inline(__always)
    static func storeLanes<T: BinaryFloatingPoint>(_ value: DoubleLanes, _ p: UnsafeMutablePointer<T>, _ i: Int) {
        if T.self == Double.self {
            UnsafeMutableRawPointer(p + i).storeBytes(of: value, as: DoubleLanes.self)
        } else if T.self == Float.self {
            UnsafeMutableRawPointer(p + i).storeBytes(of: narrowed(value), as: FloatLanes.self)
        } else {
            for k in 0..<laneCount { p[i &+ k] = T(value[k]) }
        }
    }

    /// v rounded to T's precision (the values a storeLanes to T keeps), as Doubles.
    @inlinable @inline(__always)
    static func rounded<T: BinaryFloatingPoint>(_ v: DoubleLanes, to: T.Type) -> DoubleLanes {
        if T.self == Double.self { return v }
        if T.self == Float.self { return widened(narrowed(v)) }
        var r = v
        for k in 0..<laneCount { r[k] = Double(T(v[k])) }
        return r
    }

    /// Float to Double and back, half by half: the standard library's 8-wide conversions
    /// are not inlined (a call per vector), its 4-wide ones are, and the halves compile to
    /// one 8-wide conversion instruction.
    @inlinable @inline(__always)
    static func widened(_ v: FloatLanes) -> DoubleLanes {
        #if LANCBIO_AVX512
        return DoubleLanes(lowHalf: SIMD4<Double>(v.lowHalf), highHalf: SIMD4<Double>(v.highHalf))
        #else
        return DoubleLanes(v)
        #endif
    }

    @inlinable @inline(__always)
    static func narrowed(_ v: DoubleLanes) -> FloatLanes {
        #if LANCBIO_AVX512
        return FloatLanes(lowHalf: SIMD4<Float>(v.lowHalf), highHalf: SIMD4<Float>(v.highHalf))
        #else
        return FloatLanes(v)
        #endif
    }

    /// c + a * b, fused (one rounding) where the target has FMA, else multiply then add.
    /// Either way every caller of a kernel gets the same bits on a given build.
    @inlinable @inline(__always)
    static func multiplyAdd(_ a: DoubleLanes, _ b: DoubleLanes, _ c: DoubleLanes) -> DoubleLanes {
        #if LANCBIO_FMA
        return c.addingProduct(a, b)
        #else
        return c + a * b
        #endif
    }

    /// Sums a vector's lanes in a fixed order.
    @inlinable @inline(__always)
    static func total(_ v: DoubleLanes) -> Double {
        #if LANCBIO_AVX512
        let h = v.lowHalf + v.highHalf
        return (h[0] + h[1]) + (h[2] + h[3])
        #else
        return (v[0] + v[1]) + (v[2] + v[3])
        #endif
    }
}
