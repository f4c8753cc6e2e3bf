//! Where the coordinator is: `--coord`, else `$HIBER_COORD`, else the default.

use crate::CoordArg;

pub fn resolve(arg: &CoordArg) -> String {
    arg.coord
        .clone()
        .or_else(|| std::env::var("HIBER_COORD").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| hiber_protocol::DEFAULT_COORD.to_string())
}
