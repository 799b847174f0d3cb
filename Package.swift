// swift-tools-version:6.0
import Foundation
import PackageDescription

/// Swift compiles for the baseline x86-64 (SSE2) unless told otherwise, which leaves the
/// Float32 kernels and cache-resident problems compute-bound. lancbio is always built from
/// source on the machine that runs it (make, pip), so when the building CPU has AVX2 and
/// FMA the core targets that level (x86-64-v3, "haswell"), and the baseline otherwise.
/// Not higher: valgrind, which `make check` runs, cannot execute AVX-512. Set
/// LANCBIO_PORTABLE=1 when the library will be copied to machines without AVX2.
let portable = Context.environment["LANCBIO_PORTABLE"].map { $0 != "0" && !$0.isEmpty } ?? false
let cpuFlags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
    .split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? []
let hasAVX2 = cpuFlags.contains("avx2") && cpuFlags.contains("fma")
/// LANCBIO_FMA tells the kernels that fused multiply-add is an instruction here (without
/// it, SIMD addingProduct would call libm's fma, one element at a time).
let coreSettings: [SwiftSetting] = !portable && hasAVX2
    ? [.unsafeFlags(["-target-cpu", "haswell"]), .define("LANCBIO_FMA")] : []

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
