//! The program's threads: stopping them for a checkpoint (`suspend`),
//! recreating them in a restarted process (`restore`), keeping the
//! agent's own threads out of the program's sight (`hide`), and starting
//! the checkpoint thread only when it is needed (`dormant`).

pub mod dormant;
pub mod hide;
pub mod restore;
pub mod suspend;
