import Testing
@testable import LancbioCore

/// The helper polls for the next pass only while that usually bridges the gap; the rule,
/// fed with gap sequences (Tests/c/test_helper_polling.c checks the core time it saves).
@Suite("Helper polling window")
struct HelperPollingTests {
    static let short = HelperThread.pollNanoseconds / 2          // bridged by the long window
    static let long = 8 * HelperThread.pollNanoseconds           // a slow product between calls
    static let withinCall = HelperThread.minimumPollNanoseconds / 4

    /// The window after `gaps`, from the starting share.
    static func window(after gaps: [Int], from share: Int = HelperThread.shareScale) -> (window: Int, share: Int) {
        var share = share
        for gap in gaps { share = HelperThread.bridgeableShare(after: share, gap: gap) }
        return (HelperThread.pollWindow(share: share), share)
    }

    @Test("steps whose gaps polling bridges keep the long window")
    func shortGapsKeepPolling() {
        let gaps = Array(repeating: [Self.withinCall, Self.withinCall, Self.short], count: 50).flatMap { $0 }
        #expect(Self.window(after: gaps).window == HelperThread.pollNanoseconds)
    }

    @Test("a product longer than polling can bridge, every other gap, drops to the short window")
    func slowProductsStopPolling() {
        // Per step: the passes of begin (within a call), a slow product, the passes of
        // resume, then a quick next b: half the gaps between calls are long.
        let step = [Self.withinCall, Self.long, Self.withinCall, Self.short]
        let after = Self.window(after: Array(repeating: step, count: 10).flatMap { $0 })
        #expect(after.window == HelperThread.minimumPollNanoseconds)
        // And within a few such steps, not only eventually.
        #expect(Self.window(after: Array(repeating: step, count: 4).flatMap { $0 }).window
                == HelperThread.minimumPollNanoseconds)
    }

    @Test("gaps within a call, however many, do not count for polling")
    func passesWithinACallDoNotCount() {
        let start = Self.window(after: Array(repeating: Self.long, count: 20))
        #expect(start.window == HelperThread.minimumPollNanoseconds)
        let after = Self.window(after: Array(repeating: Self.withinCall, count: 1000), from: start.share)
        #expect(after.share == start.share)
    }

    @Test("once the gaps are short again, the long window comes back within a few")
    func pollingResumes() {
        let start = Self.window(after: Array(repeating: Self.long, count: 40))
        #expect(start.window == HelperThread.minimumPollNanoseconds)
        let back = Self.window(after: Array(repeating: Self.short, count: 12), from: start.share)
        #expect(back.window == HelperThread.pollNanoseconds)
    }
}
