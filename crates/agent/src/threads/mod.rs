//! The program's threads: stopping them for a checkpoint (`suspend`) and
//! recreating them in a restarted process (`restore`).

pub mod restore;
pub mod suspend;
