//! Game section of the demo (written next)

/// Run the game timeline
pub fn run() {}
