//! [`Config`]: the tracker's settings (the environment's reading of
//! them for the global tracker is in `settings.rs`).

use super::{LogFormat, LogTarget, StackMode};

/// Tracker settings; `const`, so a `static` tracker can use them.
///
/// ```
/// use mallocator::backtracing::{Config, StackMode};
/// let c = Config { depth: 8, stack_mode: StackMode::FramePointers, ..Config::DEFAULT };
/// assert!(c.free_stacks);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Frames kept per stack (default 32, at most [`MAX_DEPTH`](super::MAX_DEPTH)).
    pub depth: usize,
    /// How stacks are captured (default [`StackMode::Auto`]).
    pub stack_mode: StackMode,
    /// Log mode: where every event goes (default [`LogTarget::None`]).
    pub log: LogTarget,
    /// The log's format (default [`LogFormat::Compact`]).
    pub log_format: LogFormat,
    /// Capture a stack at every free, so that a double free can show
    /// where the block was first freed (default true). The frames are
    /// copied raw into the shard's ring of recent frees and interned only
    /// when a double free is reported; turning this off saves the stack
    /// walk on every free (and the compact log's free events then have no
    /// stack). A bad free's own stack is taken when it is caught either
    /// way.
    pub free_stacks: bool,
    /// Show whole stacks in reports (default false: only the program's
    /// frames, without the allocation machinery above them and the
    /// runtime below; see [`user_frames`](super::user_frames)).
    pub full_stacks: bool,
}

impl Config {
    /// The defaults: depth 32, [`StackMode::Auto`], no log, free stacks on.
    ///
    /// ```
    /// assert_eq!(mallocator::backtracing::Config::DEFAULT.depth, 32);
    /// ```
    pub const DEFAULT: Config = Config {
        depth: 32,
        stack_mode: StackMode::Auto,
        log: LogTarget::None,
        log_format: LogFormat::Compact,
        free_stacks: true,
        full_stacks: false,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}
