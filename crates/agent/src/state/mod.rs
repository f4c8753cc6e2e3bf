//! Process-wide kernel state that memory does not hold. Each kind saves
//! itself into the image's metadata and restores itself on restart, in the
//! checkpoint thread, while the program's threads are parked.

pub mod fs;
pub mod limits;
pub mod mm;
pub mod signals;
pub mod sysvipc;
pub mod timers;
