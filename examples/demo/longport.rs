//! LongPort section of the demo (written next)

/// Run the LongPort timeline
pub fn run() {}
