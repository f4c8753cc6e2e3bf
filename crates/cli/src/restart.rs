//! `hiber restart`: bring a computation back from its images.
//!
//! Every image is opened and verified completely (header, footer, tables,
//! every chunk checksum, vDSO compatibility) before any process is created,
//! so a bad image is refused with a clear message and nothing else happens.
//! Each image then becomes a restore plan (`hiber_sys::plan`) in a memfd,
//! and a child execs `hiber-restore` on it. Raw page-aligned chunks are
//! mapped straight from the image file; compressed chunks are first
//! unpacked in parallel into a memfd and read from there.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use hiber_image::format::{AreaKind, area_flags};
use hiber_image::{Image, ProcessMeta};
use hiber_protocol::client::Connection;
use hiber_protocol::handoff::RestartArgs as AgentArgs;
use hiber_protocol::{FromCoord, Role, ToCoord};
use hiber_sys::plan::*;

use crate::{CoordArg, control, coord_addr, paths};

/// Below this, a run is read rather than mapped (a mapping per tiny run
/// would cost more than the copy, and VMAs are a limited resource).
const MAP_MIN: u64 = 64 << 10;

#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    #[command(flatten)]
    pub coord: CoordArg,
    /// Directory for the next checkpoints [default: where each process wrote before]
    #[arg(long, value_name = "DIR")]
    pub ckpt_dir: Option<PathBuf>,
    /// Give every process and thread a new pid/tid instead of its original
    /// one (by default a restart keeps them: as root in this pid namespace,
    /// otherwise in a user and pid namespace of its own)
    #[arg(long, conflicts_with = "same_ids")]
    pub new_ids: bool,
    /// Keep the original ids, failing if that is impossible (instead of
    /// falling back to new ids with a warning)
    #[arg(long)]
    pub same_ids: bool,
    /// Image files (`ckpt_*.hiber`)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

struct Prepared {
    image: Image,
    process: ProcessMeta,
    /// Memfd with unpacked chunks (compressed images) and each chunk's offset.
    unpacked: Option<(File, Vec<u64>)>,
}

pub fn run(args: RestartArgs) -> anyhow::Result<ExitCode> {
    let restorer = paths::restorer()?;
    let own_vdso = own_vdso();
    let mut prepared = Vec::new();
    for path in &args.images {
        let image = Image::open(path)?;
        image.verify_data()?;
        let process = image.process()?;
        check_vdso(&image, &own_vdso)?;
        prepared.push(Prepared {
            image,
            process,
            unpacked: None,
        });
    }
    let first = &prepared[0].image;
    let computation = first.identity().computation;
    let generation = first.identity().generation;
    for p in &prepared {
        let id = p.image.identity();
        if id.computation != computation || id.generation != generation {
            bail!(
                "images {} and {} come from different checkpoints (computation {:x} gen {} vs {:x} gen {})",
                args.images[0].display(),
                p.image.path().display(),
                computation,
                generation,
                id.computation,
                id.generation
            );
        }
    }
    for p in &mut prepared {
        if p.image.is_compressed() {
            let fd = memfd("hiber-unpacked")?;
            let offsets = p.image.unpack_chunks_parallel(&fd)?;
            p.unpacked = Some((fd, offsets));
        }
    }

    // Images of a program that checkpointed itself (standalone mode) come
    // back without a coordinator, as they were taken.
    let standalone = prepared.iter().all(|p| p.process.standalone);
    if standalone && prepared.len() != 1 {
        bail!("standalone images are restarted one at a time");
    }
    let addr = if standalone {
        String::new()
    } else {
        coord_addr::resolve(&args.coord)
    };
    let default_dir = match args.images[0].parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::path::absolute(args.ckpt_dir.clone().unwrap_or(default_dir))?;
    if !standalone {
        control::ensure_coordinator(&addr, &dir)?;
        let (mut c, _) = Connection::connect(&addr, Role::Control)?;
        let reply = c.request(&ToCoord::RestartBegin {
            computation,
            generation,
            processes: prepared.len() as u32,
            ckpt_dir: dir.display().to_string(),
        })?;
        match reply {
            FromCoord::Ok => {}
            FromCoord::Error(e) => bail!("coordinator at {addr} refused the restart: {e}"),
            other => bail!("unexpected coordinator reply {other:?}"),
        }
    }

    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let new_ids = args.new_ids || std::env::var("HIBER_NEW_IDS").is_ok_and(|v| v == "1");
    // Unprivileged: a user+pid namespace gives the ids back; as root the
    // current pid namespace does.
    // As root, in this pid namespace if every original pid and tid is free
    // (else threads would get new tids: pid_max is often only 32768).
    let pids_free = ids_free(&prepared);
    let same_ids = !new_ids && (!root || !pids_free);
    // The host's /proc, for processes that will see only their own.
    let host_proc = if same_ids {
        let p = std::ffi::CString::new("/proc")?;
        // SAFETY: open with a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                p.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening /proc");
        }
        // SAFETY: a fresh descriptor we own.
        Some(unsafe { File::from_raw_fd(fd) })
    } else {
        None
    };
    let host_proc_fd = host_proc.as_ref().map_or(-1, |f| f.as_raw_fd());
    // Each process's own descriptors: its image, unpacked chunks, the host
    // /proc, and its plan (created now, filled below once every plan fd of
    // the tree is known).
    let mut plans = Vec::new();
    let mut keeps = Vec::new();
    // Each program's executable, for /proc/self/exe (when allowed).
    let exes: Vec<Option<File>> = prepared
        .iter()
        .map(|p| File::open(&p.process.exe).ok())
        .collect();
    for (i, p) in prepared.iter().enumerate() {
        let plan_fd = memfd("hiber-plan")?;
        let mut keep = vec![p.image.file().as_raw_fd()];
        if let Some((f, _)) = &p.unpacked {
            keep.push(f.as_raw_fd());
        }
        if host_proc_fd >= 0 {
            keep.push(host_proc_fd);
        }
        keep.push(plan_fd.as_raw_fd());
        if let Some(f) = &exes[i] {
            keep.push(f.as_raw_fd());
        }
        plans.push(plan_fd);
        keeps.push(keep);
    }
    let tree = Tree::new(&prepared);
    let pipes =
        crate::pipes::Pipes::create(&prepared.iter().map(|p| &p.image).collect::<Vec<_>>())?;
    let files =
        crate::files::SharedFiles::create(&prepared.iter().map(|p| &p.image).collect::<Vec<_>>())?;
    // System V objects first: they may move us into an IPC namespace of our
    // own, where the restorers must run.
    let sysv = crate::sysv::SysvIpc::create(
        &prepared
            .iter()
            .map(|p| (&p.image, &p.process))
            .collect::<Vec<_>>(),
    )?;
    // POSIX queues after them, in the same namespace.
    crate::mqueue::recreate(&prepared.iter().map(|p| &p.image).collect::<Vec<_>>())?;
    let shm = crate::shm::SharedMemory::create(
        &prepared.iter().map(|p| &p.image).collect::<Vec<_>>(),
        &|i, start| sysv.takes(i, start),
    )?;
    for w in &shm.warnings {
        eprintln!("hiber: warning: {w}");
    }
    let sockets =
        crate::sockets::Sockets::create(&prepared.iter().map(|p| &p.image).collect::<Vec<_>>())?;
    let ptys = crate::ptys::Ptys::create(&prepared.iter().map(|p| &p.image).collect::<Vec<_>>())?;
    for (i, keep) in keeps.iter_mut().enumerate() {
        keep.extend(ptys.fds_of(i));
        keep.extend(pipes.fds_of(i));
        keep.extend(files.fds_of(i));
        keep.extend(shm.fds_of(i));
        keep.extend(sockets.fds_of(i));
    }
    let all_fds: Vec<RawFd> = {
        let mut v: Vec<RawFd> = keeps.iter().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut launches = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        let rargs = AgentArgs {
            coord: addr.clone(),
            ckpt_dir: args.ckpt_dir.as_ref().map(|d| dir_string(d)),
            image: p.image.path().display().to_string(),
            temp_fds: keeps[i]
                .iter()
                .copied()
                .filter(|fd| {
                    !pipes.fds_of(i).contains(fd)
                        && !files.fds_of(i).contains(fd)
                        && !sockets.fds_of(i).contains(fd)
                        && !ptys.fds_of(i).contains(fd)
                })
                .collect(),
            host_proc_fd,
            pipes: pipes.inherited_by(i),
            files: files.inherited_by(i),
            sockets: sockets.inherited_by(i),
            ptys: ptys.inherited_by(i),
        };
        let mut children: Vec<PlanChild> = tree.children[i]
            .iter()
            .map(|&c| {
                let m = &prepared[c].process;
                let pid = prepared[c].image.identity().virtual_pid as i32;
                PlanChild {
                    pid,
                    plan_fd: plans[c].as_raw_fd(),
                    pgid: m.pgid as i32,
                    flags: if m.sid != 0 && m.sid as i32 == pid {
                        CHILD_SETSID
                    } else {
                        0
                    },
                    ..PlanChild::default()
                }
            })
            .collect();
        // Children that had exited but were not reaped come back as zombies.
        children.extend(p.process.zombies.iter().map(|&(pid, status)| PlanChild {
            pid: pid as i32,
            plan_fd: -1,
            flags: CHILD_ZOMBIE,
            status,
            ..PlanChild::default()
        }));
        children.sort_by_key(|c| c.pid);
        let close: Vec<i32> = all_fds
            .iter()
            .copied()
            .filter(|fd| !keeps[i].contains(fd))
            .collect();
        let shared = |start: u64| {
            sysv.area(i, start)
                .map(|id| (id, 0, AREA_SYSV))
                .or_else(|| shm.area(i, start).map(|(fd, off)| (fd, off, AREA_SHARED)))
        };
        let exe_fd = exes[i].as_ref().map(|f| f.as_raw_fd());
        let plan = build_plan(p, &rargs, &children, &close, &shared, exe_fd)?;
        std::io::Write::write_all(&mut &plans[i], &plan).context("writing the restore plan")?;
        if tree.parent[i].is_none() {
            // A root: started by us (or the namespace's init) and handed
            // every descriptor of the tree below it.
            launches.push(crate::namespace::Launch {
                plan_fd: plans[i].as_raw_fd(),
                keep: all_fds.clone(),
                pid: p.image.identity().virtual_pid as i32,
            });
        }
    }
    let held = (plans, pipes, files, shm, sockets, ptys);
    let (plans, pipes, files, shm, sockets, ptys) = if same_ids {
        // Our copies of what the restorers inherited go as soon as they all
        // run (kept, they would hold pipe ends open for the whole run).
        let mut held = Some(held);
        let mut release = || drop(held.take());
        let r = crate::namespace::restart_in_namespace(&restorer, &launches, &mut release);
        match (r, held.take()) {
            (Ok(code), _) => {
                report_crash(code.checked_sub(128).filter(|_| code > 128));
                drop(host_proc);
                return Ok(ExitCode::from(code as u8));
            }
            (Err(e), Some(h)) if !args.same_ids && crate::namespace::setup_failed(&e) => {
                tracing::warn!("{e:#}; restarting with new process and thread ids");
                eprintln!("hiber: warning: {e:#}; restarting with new process and thread ids");
                h
            }
            (Err(e), _) => return Err(e),
        }
    } else {
        held
    };
    let mut children = Vec::new();
    for l in &launches {
        if root && !new_ids {
            match crate::namespace::spawn_with_pid(&restorer, l)? {
                Some(pid) => {
                    children.push(Child::Raw(pid));
                    continue;
                }
                None if args.same_ids => {
                    bail!("pid {} is taken: cannot restart with the same ids", l.pid)
                }
                None => eprintln!(
                    "hiber: warning: pid {} is taken; the process gets a new pid",
                    l.pid
                ),
            }
        }
        let mut cmd = Command::new(&restorer);
        cmd.arg(l.plan_fd.to_string());
        let keep = l.keep.clone();
        // The closure only calls fcntl (async-signal-safe) between
        // fork and exec, to let the restorer inherit its descriptors.
        // SAFETY: see just above.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &keep {
                    clear_cloexec(fd)?;
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", restorer.display()))?;
        children.push(Child::Std(child));
    }
    drop(plans);
    // Our copies of the pipes go: a reader must see end-of-file when the
    // last writer of the computation closes its end.
    drop(pipes);
    drop(files);
    drop(shm);
    // And of the sockets: a reader must see end-of-file when its peer's
    // last holder closes it.
    drop(sockets);
    // And of the ptys: a master must see the slave hang up when the last
    // process that has it closes it.
    drop(ptys);
    drop(prepared);
    let mut root_status = None;
    for (i, c) in children.into_iter().enumerate() {
        let st = c.wait().context("waiting for a restarted process")?;
        report_crash(st.signal());
        if i == 0 {
            root_status = Some(st);
        }
    }
    let st = root_status.context("no process was restarted")?;
    Ok(match (st.code(), st.signal()) {
        (Some(c), _) => ExitCode::from(c as u8),
        (None, Some(sig)) => ExitCode::from(128u8.wrapping_add(sig as u8)),
        _ => ExitCode::FAILURE,
    })
}

/// A restored process that died of a signal other than SIGKILL (which is
/// how users and tests stop a computation) probably crashed: say so.
fn report_crash(signal: Option<i32>) {
    if let Some(sig) = signal
        && sig != libc::SIGKILL
    {
        // SAFETY: strsignal returns a static or thread-local string.
        let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) }
            .to_string_lossy()
            .into_owned();
        eprintln!("hiber: a restarted process was killed by signal {sig} ({name})");
    }
}

/// The checkpointed process tree: a process whose parent is among the
/// images is restored as that parent's child (forked by its restorer), the
/// others are roots.
struct Tree {
    parent: Vec<Option<usize>>,
    /// Each process's children, by pid.
    children: Vec<Vec<usize>>,
}

impl Tree {
    fn new(prepared: &[Prepared]) -> Tree {
        let pid = |i: usize| prepared[i].image.identity().virtual_pid;
        let host = |i: usize| prepared[i].image.identity().hostname.as_str();
        // Pids are per host: a parent is on the same host as its child.
        let by_pid: std::collections::HashMap<(&str, u32), usize> = (0..prepared.len())
            .map(|i| ((host(i), pid(i)), i))
            .collect();
        let parent: Vec<Option<usize>> = (0..prepared.len())
            .map(|i| {
                by_pid
                    .get(&(host(i), prepared[i].process.ppid))
                    .copied()
                    .filter(|&p| p != i)
            })
            .collect();
        let mut children = vec![Vec::new(); prepared.len()];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(i);
            }
        }
        // A parent that was its child's descendant would make a cycle (pids
        // reused across hosts): such "children" stay roots.
        let mut parent = parent;
        for i in 0..prepared.len() {
            let mut seen = 0;
            let mut cur = parent[i];
            while let Some(p) = cur {
                seen += 1;
                if p == i || seen > prepared.len() {
                    if let Some(q) = parent[i] {
                        children[q].retain(|&c| c != i);
                    }
                    parent[i] = None;
                    break;
                }
                cur = parent[p];
            }
        }
        for c in &mut children {
            c.sort_by_key(|&i| pid(i));
        }
        Tree { parent, children }
    }
}

/// A restored process we wait for: started by `Command`, or by a raw
/// `clone3` that gave it its original pid.
enum Child {
    Std(std::process::Child),
    Raw(i32),
}

impl Child {
    fn wait(self) -> std::io::Result<std::process::ExitStatus> {
        match self {
            Child::Std(mut c) => c.wait(),
            Child::Raw(pid) => {
                let mut st = 0;
                loop {
                    // SAFETY: waiting for our own child.
                    if unsafe { libc::waitpid(pid, &mut st, 0) } >= 0 {
                        return Ok(std::process::ExitStatus::from_raw(st));
                    }
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINTR) {
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Whether no task has any of the images' original pids or tids now (a
/// zombie still holds its pid). An image whose thread list can't be read
/// counts as not free.
fn ids_free(prepared: &[Prepared]) -> bool {
    // `kill` finds a task by any id, a thread's tid included.
    let free = |id: u32| {
        // SAFETY: signal 0 only checks existence.
        unsafe { libc::kill(id as i32, 0) != 0 && *libc::__errno_location() == libc::ESRCH }
    };
    prepared.iter().all(|p| {
        free(p.image.identity().virtual_pid)
            && p.image
                .threads()
                .is_ok_and(|ts| ts.iter().all(|t| free(t.tid)))
            && p.process.zombies.iter().all(|&(pid, _)| free(pid))
    })
}

fn dir_string(d: &std::path::Path) -> String {
    std::path::absolute(d)
        .unwrap_or_else(|_| d.to_path_buf())
        .display()
        .to_string()
}

fn memfd(name: &str) -> anyhow::Result<File> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: NUL-terminated name; returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn clear_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor number; no memory involved.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// (vdso_len, vvar_len, vvar_vclock_len, vdso_crc) of this process's kernel.
fn own_vdso() -> (u64, u64, u64, u32) {
    let mut v = (0, 0, 0, 0);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for line in maps.lines() {
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        if line.ends_with("[vdso]") {
            v.0 = e - s;
            // SAFETY: the vDSO is mapped readable for the life of the process.
            let bytes = unsafe { std::slice::from_raw_parts(s as *const u8, (e - s) as usize) };
            v.3 = crc32c::crc32c(bytes);
        } else if line.ends_with("[vvar]") {
            v.1 = e - s;
        } else if line.ends_with("[vvar_vclock]") {
            v.2 = e - s;
        }
    }
    v
}

fn check_vdso(image: &Image, own: &(u64, u64, u64, u32)) -> anyhow::Result<()> {
    let id = &image.identity().vdso;
    if (id.vdso_len, id.vvar_len, id.vvar_vclock_len, id.vdso_crc) != *own {
        bail!(
            "image {}: it was taken under kernel {} whose vDSO differs from this kernel's ({}); \
             restart it on a host running the same kernel",
            image.path().display(),
            image.identity().kernel_release,
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        );
    }
    Ok(())
}

fn build_plan(
    p: &Prepared,
    args: &AgentArgs,
    children: &[PlanChild],
    close: &[i32],
    // (descriptor or shmid, offset, AREA_SHARED or AREA_SYSV)
    shared: &dyn Fn(u64) -> Option<(RawFd, u64, u32)>,
    exe_fd: Option<RawFd>,
) -> anyhow::Result<Vec<u8>> {
    let image = &p.image;
    let image_fd = image.file().as_raw_fd();
    let mut hdr = PlanHeader {
        magic: PLAN_MAGIC,
        ..Default::default()
    };
    let mut areas = Vec::new();
    let mut sources = Vec::new();
    let mut nspecial = 0;
    let chunk_index = |c: &hiber_image::ChunkRecord| -> usize {
        // Chunks of an area are a contiguous slice of the chunk table.
        (c as *const _ as usize - image.chunks().as_ptr() as usize)
            / std::mem::size_of::<hiber_image::ChunkRecord>()
    };
    for a in image.areas() {
        let kind = AreaKind::from_u32(a.kind);
        let special = match kind {
            Some(AreaKind::Vdso) => SPECIAL_VDSO,
            Some(AreaKind::Vvar) => SPECIAL_VVAR,
            Some(AreaKind::VvarVclock) => SPECIAL_VVAR_VCLOCK,
            Some(AreaKind::Vsyscall) => continue,
            _ => SPECIAL_NONE,
        };
        if special != SPECIAL_NONE {
            if nspecial == hdr.specials.len() {
                bail!("image {}: too many vDSO areas", image.path().display());
            }
            hdr.specials[nspecial] = Special {
                addr: a.start,
                len: a.end - a.start,
                kind: special,
                _pad: 0,
            };
            nspecial += 1;
            continue;
        }
        if a.flags & area_flags::SHARED != 0
            && let Some((fd, offset, how)) = shared(a.start)
        {
            areas.push(PlanArea {
                start: a.start,
                len: a.end - a.start,
                prot: a.prot,
                flags: how,
                first_source: sources.len() as u32,
                n_sources: 0,
                shared_offset: offset,
                shared_fd: fd,
                _pad: 0,
            });
            continue;
        }
        let first = sources.len() as u32;
        for c in image.chunks_of(a) {
            let (fd, offset, mappable) = match &p.unpacked {
                Some((f, offs)) => (f.as_raw_fd(), offs[chunk_index(c)], false),
                None => (
                    image_fd,
                    c.file_offset,
                    image.is_page_aligned() && c.file_offset % 4096 == 0,
                ),
            };
            let how = if mappable && c.len >= MAP_MIN {
                SOURCE_MAP
            } else {
                SOURCE_READ
            };
            sources.push(PlanSource {
                addr: c.addr,
                len: c.len,
                offset,
                fd,
                how,
            });
        }
        let mut flags = 0;
        if a.flags & area_flags::SPARSE != 0 {
            flags |= AREA_NORESERVE;
        }
        areas.push(PlanArea {
            start: a.start,
            len: a.end - a.start,
            prot: a.prot,
            flags,
            first_source: first,
            n_sources: sources.len() as u32 - first,
            ..PlanArea::default()
        });
    }
    let m = &p.process.mm;
    hdr.mm = hiber_sys::PrctlMmMap {
        start_code: m.start_code,
        end_code: m.end_code,
        start_data: m.start_data,
        end_data: m.end_data,
        start_brk: m.start_brk,
        brk: m.brk,
        start_stack: m.start_stack,
        arg_start: m.arg_start,
        arg_end: m.arg_end,
        env_start: m.env_start,
        env_end: m.env_end,
        auxv: 0,
        auxv_size: 0,
        exe_fd: exe_fd.map_or(u32::MAX, |fd| fd as u32),
    };
    hdr.entry = p.process.restart_entry;
    if hdr.entry == 0 {
        bail!(
            "image {}: no restart entry recorded",
            image.path().display()
        );
    }
    let args_bytes = postcard::to_allocvec(args).context("encoding restart arguments")?;
    let hsize = std::mem::size_of::<PlanHeader>() as u64;
    hdr.n_areas = areas.len() as u32;
    hdr.n_sources = sources.len() as u32;
    hdr.areas_off = hsize.next_multiple_of(8);
    hdr.sources_off = (hdr.areas_off + (areas.len() * std::mem::size_of::<PlanArea>()) as u64)
        .next_multiple_of(8);
    hdr.args_off = (hdr.sources_off + (sources.len() * std::mem::size_of::<PlanSource>()) as u64)
        .next_multiple_of(8);
    hdr.args_len = args_bytes.len() as u64;
    hdr.children_off = (hdr.args_off + hdr.args_len).next_multiple_of(8);
    hdr.n_children = children.len() as u32;
    hdr.close_off = hdr.children_off + std::mem::size_of_val(children) as u64;
    hdr.n_close = close.len() as u32;
    hdr.total_len = hdr.close_off + (close.len() * 4) as u64;
    let mut out = Vec::with_capacity(hdr.total_len as usize);
    out.extend_from_slice(as_bytes(&hdr));
    out.resize(hdr.areas_off as usize, 0);
    for a in &areas {
        out.extend_from_slice(as_bytes(a));
    }
    out.resize(hdr.sources_off as usize, 0);
    for s in &sources {
        out.extend_from_slice(as_bytes(s));
    }
    out.resize(hdr.args_off as usize, 0);
    out.extend_from_slice(&args_bytes);
    out.resize(hdr.children_off as usize, 0);
    for c in children {
        out.extend_from_slice(as_bytes(c));
    }
    for fd in close {
        out.extend_from_slice(&fd.to_ne_bytes());
    }
    Ok(out)
}
