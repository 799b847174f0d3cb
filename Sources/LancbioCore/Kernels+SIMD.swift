// Loads of four consecutive values as a Double vector, for the multi-column kernels:
// vectorising along each column (rather than across columns) keeps every load contiguous.
// In code specialised for Double or Float the type tests fold away.

extension Kernels {
    @inlinable @inline(__always)
    static func load4<T: BinaryFloatingPoint>(_ p: UnsafePointer<T>, _ i: Int) -> SIMD4<Double> {
        if T.self == Double.self {
            return UnsafeRawPointer(p + i).loadUnaligned(as: SIMD4<Double>.self)
        }
        if T.self == Float.self {
            return SIMD4<Double>(UnsafeRawPointer(p + i).loadUnaligned(as: SIMD4<Float>.self))
        }
        return SIMD4(Double(p[i]), Double(p[i &+ 1]), Double(p[i &+ 2]), Double(p[i &+ 3]))
    }

    @inlinable @inline(__always)
    static func store4<T: BinaryFloatingPoint>(_ value: SIMD4<Double>, _ p: UnsafeMutablePointer<T>, _ i: Int) {
        if T.self == Double.self {
            UnsafeMutableRawPointer(p + i).storeBytes(of: value, as: SIMD4<Double>.self)
        } else if T.self == Float.self {
            UnsafeMutableRawPointer(p + i).storeBytes(of: SIMD4<Float>(value), as: SIMD4<Float>.self)
        } else {
            for k in 0..<4 { p[i &+ k] = T(value[k]) }
        }
    }

    /// v rounded to T's precision (the values a store4 to T keeps), as Doubles.
    @inlinable @inline(__always)
    static func rounded<T: BinaryFloatingPoint>(_ v: SIMD4<Double>, to: T.Type) -> SIMD4<Double> {
        if T.self == Double.self { return v }
        if T.self == Float.self { return SIMD4<Double>(SIMD4<Float>(v)) }
        return SIMD4(Double(T(v[0])), Double(T(v[1])), Double(T(v[2])), Double(T(v[3])))
    }

    /// c + a * b, fused (one rounding) where the target has FMA, else multiply then add.
    /// Either way every caller of a kernel gets the same bits on a given build.
    @inlinable @inline(__always)
    static func multiplyAdd(_ a: SIMD4<Double>, _ b: SIMD4<Double>, _ c: SIMD4<Double>) -> SIMD4<Double> {
        #if LANCBIO_FMA
        return c.addingProduct(a, b)
        #else
        return c + a * b
        #endif
    }

    /// Sums a vector's lanes in a fixed order.
    @inlinable @inline(__always)
    static func total(_ v: SIMD4<Double>) -> Double { (v[0] + v[1]) + (v[2] + v[3]) }
}
