// swift-tools-version:6.0
import Foundation
import PackageDescription

/// Swift compiles for the baseline x86-64 (SSE2) unless told otherwise, which leaves the
/// Float32 kernels and cache-resident problems compute-bound. lancbio is always built from
/// source on the machine that runs it (make, pip), so the core targets the highest level
/// the building CPU has: AVX-512 when it has AVX-512 F, BW, CD, DQ and VL (the x86-64-v4
/// set, named "skylake-avx512" because swiftc does not know "x86-64-v4"), AVX2 and FMA
/// (x86-64-v3, "haswell") when it has those, the baseline otherwise. Set
/// LANCBIO_AVX512=0 to stop at AVX2 (valgrind, which `make check` runs, cannot execute
/// AVX-512), and LANCBIO_PORTABLE=1 when the library will be copied to other machines.
func setting(_ name: String) -> Bool? {
    Context.environment[name].map { $0 != "0" && !$0.isEmpty }
}
let portable = setting("LANCBIO_PORTABLE") ?? false
let cpuFlags = Set((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
    .split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
let hasAVX2 = cpuFlags.isSuperset(of: ["avx2", "fma"])
let hasAVX512 = hasAVX2 && cpuFlags.isSuperset(of: ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"])
    && setting("LANCBIO_AVX512") ?? true
/// LANCBIO_FMA tells the kernels that fused multiply-add is an instruction here (without
/// it, SIMD addingProduct would call libm's fma, one element at a time); LANCBIO_AVX512
/// gives them 8-wide vectors (Kernels+SIMD.swift).
let coreSettings: [SwiftSetting] = portable || !hasAVX2 ? []
    : hasAVX512 ? [.unsafeFlags(["-target-cpu", "skylake-avx512"]), .define("LANCBIO_FMA"), .define("LANCBIO_AVX512")]
    : [.unsafeFlags(["-target-cpu", "haswell"]), .define("LANCBIO_FMA")]

let package = Package(
    name: "lancbio",
    products: [
        // MARK: - Public API
        /// liblancbio.so: the C ABI declared in include/lancbio.h.
        .library(name: "lancbio", type: .dynamic, targets: ["LancbioCABI"]),
        /// The pure-Swift numeric core, for Swift callers.
        .library(name: "LancbioCore", targets: ["LancbioCore"]),
    ],
    dependencies: [
        // RealModule only: pow for the decaying step sizes, without Foundation.
        .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
    ],
    targets: [
        // MARK: - Public API
        /// Estimators of A^{-1} b and the bilevel outer loop: generic over Float and Double,
        /// no Foundation, no C.
        .target(
            name: "LancbioCore",
            dependencies: [.product(name: "RealModule", package: "swift-numerics")],
            swiftSettings: coreSettings
        ),
        /// The hand-written C header, as a module so the exports are checked against it.
        .target(name: "CLancbio", path: "include", publicHeadersPath: "."),

        // MARK: - Implementation details
        /// @c exports: converts and checks caller buffers, then calls the core.
        .target(
            name: "LancbioCABI",
            dependencies: ["LancbioCore", "CLancbio"],
            linkerSettings: [
                // Export only the lancbio_* symbols; the Swift-mangled ones stay private.
                .unsafeFlags(["-Xlinker", "--version-script=\(Context.packageDirectory)/include/lancbio.map"]),
            ]
        ),
        .testTarget(name: "LancbioCoreTests", dependencies: ["LancbioCore"]),
    ]
)
