// swift-tools-version:6.0
import PackageDescription

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
        .target(name: "LancbioCore", dependencies: [.product(name: "RealModule", package: "swift-numerics")]),
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
