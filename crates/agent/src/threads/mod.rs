//! The program's threads: stopping them for a checkpoint (`suspend`),
//! recreating them in a restarted process (`restore`), and keeping the
//! agent's own threads out of the program's sight (`hide`).

pub mod hide;
pub mod restore;
pub mod suspend;
