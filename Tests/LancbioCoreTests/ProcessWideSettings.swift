import Testing

/// Suites that change process-wide settings (`BasisSplit`'s thresholds), or whose checks
/// an estimator created under other settings would break (exact byte counts), nested here
/// so that they run one at a time: `.serialized` holds for nested suites, while suites
/// apart run in parallel.
@Suite(.serialized)
enum ProcessWideSettings {}
