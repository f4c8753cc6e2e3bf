//! The restore plan: what `hiber restart` hands to `hiber-restore`.
//!
//! The image file is parsed and verified by `hiber restart` (safe Rust, full
//! error messages, before any process state is touched). The restorer, which
//! has no libc and no allocator, then only executes this flat plan: map
//! these areas, fill them from these (fd, offset) sources, move the vDSO,
//! set the mm layout, and jump to the agent's restart entry with an opaque
//! argument block. Both ends are built from the same source tree, so the
//! plan is an internal ABI, not a file format.

/// `b"HIBPLAN1"` little-endian.
pub const PLAN_MAGIC: u64 = u64::from_le_bytes(*b"HIBPLAN1");
/// `b"HIBHAND1"`: the block the restorer passes to the agent.
pub const HANDOFF_MAGIC: u64 = u64::from_le_bytes(*b"HIBHAND1");

pub const SPECIAL_NONE: u32 = 0;
pub const SPECIAL_VDSO: u32 = 1;
pub const SPECIAL_VVAR: u32 = 2;
pub const SPECIAL_VVAR_VCLOCK: u32 = 3;

/// Area flag: map with `MAP_NORESERVE` (huge sparse reservations).
pub const AREA_NORESERVE: u32 = 1;
/// Area flag: map `MAP_SHARED` from `shared_fd` at `shared_offset` (a
/// shared memory object `hiber restart` recreated, or the file itself); the
/// area has no sources.
pub const AREA_SHARED: u32 = 2;
/// Area flag: attach System V shared memory segment `shared_fd` (here a
/// shmid, not a descriptor) at the area's start with `shmat`; the area
/// covers the whole segment and has no sources.
pub const AREA_SYSV: u32 = 4;

/// Fill a source by `pread` into anonymous memory.
pub const SOURCE_READ: u32 = 0;
/// Map a source `MAP_PRIVATE` from its file (page-aligned offset required).
pub const SOURCE_MAP: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Special {
    pub addr: u64,
    pub len: u64,
    pub kind: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanHeader {
    pub magic: u64,
    pub total_len: u64,
    pub n_areas: u32,
    pub n_sources: u32,
    pub areas_off: u64,
    pub sources_off: u64,
    pub specials: [Special; 3],
    pub mm: crate::PrctlMmMap,
    /// Address of the agent's restart entry in the restored memory.
    pub entry: u64,
    /// Opaque bytes for the agent (its restart arguments).
    pub args_off: u64,
    pub args_len: u64,
    /// Processes this restorer forks before anything else (its children in
    /// the checkpointed tree): `n_children` [`PlanChild`] records.
    pub children_off: u64,
    pub n_children: u32,
    /// Descriptors (`i32`) of the other processes' restores, inherited
    /// through the tree: closed once the children are forked.
    pub n_close: u32,
    pub close_off: u64,
}

/// `PlanChild::flags`: the child was a session leader (`setsid`).
pub const CHILD_SETSID: u32 = 1;
/// `PlanChild::flags`: the child had exited and was not reaped: it is
/// recreated as a zombie with wait status `status` (no plan).
pub const CHILD_ZOMBIE: u32 = 2;

/// A child to fork, with its pid, its own plan, and its process group.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanChild {
    pub pid: i32,
    pub plan_fd: i32,
    pub pgid: i32,
    pub flags: u32,
    pub status: i32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanArea {
    pub start: u64,
    pub len: u64,
    pub prot: u32,
    pub flags: u32,
    pub first_source: u32,
    pub n_sources: u32,
    pub shared_offset: u64,
    pub shared_fd: i32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanSource {
    pub addr: u64,
    pub len: u64,
    pub offset: u64,
    pub fd: i32,
    pub how: u32,
}

/// What the restorer passes to the agent's restart entry (in `rdi`).
/// It lives in the restorer's hole, which the agent unmaps once it has
/// copied what it needs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Handoff {
    pub magic: u64,
    pub hole_start: u64,
    pub hole_len: u64,
    pub args_ptr: u64,
    pub args_len: u64,
}

impl PlanHeader {
    pub const SIZE: usize = core::mem::size_of::<PlanHeader>();
}

/// Views a `repr(C)` plain-old-data value as bytes (for writing a plan).
pub fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // Only used with the `repr(C)` integer-only structs of this
    // module, which have no padding bytes left uninitialised in practice
    // (every padding field is explicit) and no invalid bit patterns.
    // SAFETY: see just above.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) }
}
