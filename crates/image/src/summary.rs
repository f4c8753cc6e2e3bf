//! A serializable description of an image: what `hiber inspect` prints, as
//! text or JSON, kept here so other tools (tests, scripts, a future
//! `hiber diff`) get the same view without re-deriving it.
//!
//! Addresses are hex strings in JSON: that is how people compare them with
//! `/proc/PID/maps`, and JSON numbers above 2^53 lose precision in many
//! consumers (JavaScript, jq). Sizes stay numbers.

use core::fmt;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, write, writeln};

use serde::Serialize;

use crate::identity::Identity;
use crate::meta::{FdKind, FdMeta, ProcessMeta, ThreadMeta};
use crate::reader::Image;

/// Everything `hiber inspect` shows about an image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    pub path: String,
    pub format_version: u32,
    pub compressed: bool,
    pub page_aligned: bool,
    pub file_bytes: u64,
    pub identity: Identity,
    /// `created_unix_ns` as UTC, RFC 3339.
    pub created: String,
    pub process: Option<ProcessMeta>,
    pub areas: Vec<AreaSummary>,
    pub threads: Vec<ThreadMeta>,
    pub fds: Vec<FdMeta>,
    pub totals: Totals,
}

/// One area.
#[derive(Clone, Debug, Serialize)]
pub struct AreaSummary {
    /// Hex, `0x…`.
    pub start: String,
    /// Hex, `0x…`.
    pub end: String,
    pub size: u64,
    /// `/proc/self/maps` style, e.g. `r-xp`.
    pub perms: String,
    pub kind: String,
    pub path: String,
    pub file_offset: u64,
    pub has_data: bool,
    pub chunks: u32,
    /// Uncompressed bytes saved (the rest of the area is holes).
    pub memory_bytes: u64,
    /// Bytes those take in the file.
    pub stored_bytes: u64,
}

/// Totals over the image.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub areas: usize,
    pub chunks: usize,
    /// Sum of area sizes (address space covered).
    pub mapped_bytes: u64,
    pub memory_bytes: u64,
    pub stored_bytes: u64,
    /// memory_bytes / stored_bytes (1.0 when nothing is stored).
    pub compression_ratio: f64,
}

impl ImageSummary {
    /// Describes an opened (hence validated) image.
    pub fn from_image(image: &Image) -> ImageSummary {
        let areas: Vec<AreaSummary> = image
            .areas()
            .iter()
            .map(|a| {
                let chunks = image.chunks_of(a);
                AreaSummary {
                    start: format!("{:#x}", a.start),
                    end: format!("{:#x}", a.end),
                    size: a.len(),
                    perms: String::from_utf8_lossy(&a.perms()).into_owned(),
                    kind: a
                        .area_kind()
                        .map_or_else(|| format!("kind{}", a.kind), |k| k.name().to_string()),
                    path: image.area_path(a).to_string(),
                    file_offset: a.file_offset,
                    has_data: a.has_data(),
                    chunks: a.chunk_count,
                    memory_bytes: chunks.iter().map(|c| c.len).sum(),
                    stored_bytes: chunks.iter().map(|c| c.stored_len).sum(),
                }
            })
            .collect();
        let memory_bytes = image.memory_bytes();
        let stored_bytes = image.stored_bytes();
        let header = image.header();
        ImageSummary {
            path: image.path().display().to_string(),
            format_version: header.format_version,
            compressed: image.is_compressed(),
            page_aligned: image.is_page_aligned(),
            file_bytes: header.file_length,
            identity: image.identity().clone(),
            created: rfc3339(header.created_unix_ns),
            process: image.process().ok(),
            totals: Totals {
                areas: areas.len(),
                chunks: image.chunks().len(),
                mapped_bytes: image.areas().iter().map(|a| a.len()).sum(),
                memory_bytes,
                stored_bytes,
                compression_ratio: if stored_bytes == 0 {
                    1.0
                } else {
                    memory_bytes as f64 / stored_bytes as f64
                },
            },
            areas,
            threads: image.threads().unwrap_or_default(),
            fds: image.fds().unwrap_or_default(),
        }
    }
}

/// Formats nanoseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`
/// (Howard Hinnant's civil-from-days; no time crate needed for one line).
pub fn rfc3339(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let millis = (unix_ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Binary size with a unit, for people.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn fd_description(kind: &FdKind) -> String {
    match kind {
        FdKind::File {
            path,
            flags,
            offset,
            size,
            deleted,
            ..
        } => format!(
            "{path}{} flags=0{flags:o} offset={offset} size={size}",
            if *deleted { " (deleted)" } else { "" }
        ),
        FdKind::Directory {
            path,
            flags,
            offset,
        } => format!("{path} flags=0{flags:o} offset={offset}"),
        FdKind::Terminal { path, flags } => format!("{path} flags=0{flags:o}"),
        FdKind::Pipe {
            inode,
            flags,
            path,
            data,
            ..
        } => {
            let name = if path.is_empty() {
                format!("pipe:[{inode}]")
            } else {
                format!("fifo {path}")
            };
            format!("{name} flags=0{flags:o} {} bytes in flight", data.len())
        }
        FdKind::Socket { inode, flags } => format!("socket:[{inode}] flags=0{flags:o}"),
        FdKind::Other { link, flags } => format!("{link} flags=0{flags:o}"),
        FdKind::EventFd {
            flags,
            count,
            semaphore,
        } => format!(
            "eventfd count={count}{} flags=0{flags:o}",
            if *semaphore { " semaphore" } else { "" }
        ),
        FdKind::TimerFd {
            flags,
            clock,
            value_ns,
            interval_ns,
            ticks,
            ..
        } => format!(
            "timerfd clock={clock} left={value_ns}ns interval={interval_ns}ns ticks={ticks} flags=0{flags:o}"
        ),
        FdKind::SignalFd { flags, mask } => format!("signalfd mask={mask:#x} flags=0{flags:o}"),
        FdKind::Epoll { flags, targets } => {
            let fds: Vec<String> = targets.iter().map(|t| t.fd.to_string()).collect();
            format!("epoll [{}] flags=0{flags:o}", fds.join(","))
        }
        FdKind::Inotify { flags, watches } => {
            let w: Vec<String> = watches
                .iter()
                .map(|w| format!("{}:{}", w.wd, w.path))
                .collect();
            format!("inotify [{}] flags=0{flags:o}", w.join(" "))
        }
        FdKind::UnixSocket {
            inode,
            peer,
            sock_type,
            flags,
            queue,
            ..
        } => format!(
            "unix socket:[{inode}] type {sock_type} peer socket:[{peer}] flags=0{flags:o} \
             {} messages, {} bytes in its receive queue",
            queue.len(),
            queue.iter().map(Vec::len).sum::<usize>()
        ),
        FdKind::UnixListener {
            inode,
            sock_type,
            flags,
            name,
            backlog,
            pending,
            ..
        } => format!(
            "unix socket:[{inode}] type {sock_type} listening on {:?} backlog {backlog} \
             flags=0{flags:o}, {pending} connections waiting",
            String::from_utf8_lossy(name)
        ),
        FdKind::Mqueue {
            name,
            flags,
            messages,
            ..
        } => format!("mqueue {name} flags=0{flags:o} messages={}", messages.len()),
        FdKind::TcpSocket {
            inode,
            flags,
            local,
            remote,
            internal,
            queue,
            ..
        } => format!(
            "tcp socket:[{inode}] {local} -> {remote} ({}) flags=0{flags:o}{}",
            if *internal {
                "in the computation"
            } else {
                "outside"
            },
            queue
                .as_ref()
                .map_or(String::new(), |q| format!(", {} bytes unread", q.len()))
        ),
        FdKind::InetSocket {
            inode,
            flags,
            sock_type,
            local,
            remote,
            listen,
            ..
        } => {
            // SOCK_STREAM, SOCK_DGRAM.
            let what = match (*sock_type, listen) {
                (1, Some(b)) => format!("tcp listening, backlog {b}"),
                (1, None) => "tcp unconnected".into(),
                (2, _) => "udp".into(),
                (t, _) => format!("type {t}"),
            };
            let local = if local.is_empty() { "unbound" } else { local };
            let remote = if remote.is_empty() {
                String::new()
            } else {
                format!(" -> {remote}")
            };
            format!("{what} socket:[{inode}] {local}{remote} flags=0{flags:o}")
        }
        FdKind::UnixDgram {
            inode,
            flags,
            name,
            peer_name,
            queue,
            ..
        } => format!(
            "unix datagram socket:[{inode}] {:?} -> {:?} flags=0{flags:o}, {} messages waiting",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(peer_name),
            queue.len()
        ),
        FdKind::PtyMaster {
            index,
            flags,
            state,
            packet,
            from_slave,
            to_slave,
            ..
        } => format!(
            "pty master of /dev/pts/{index} flags=0{flags:o} {}x{}{} lflag={:#o}, \
             {} bytes from the slave, {} to it",
            state.winsize[1],
            state.winsize[0],
            if *packet { " packet" } else { "" },
            state.lflag,
            from_slave.len(),
            to_slave.len()
        ),
        FdKind::PtySlave {
            path,
            flags,
            state,
            ctty,
            fg_pgrp,
            ..
        } => format!(
            "pty slave {path} flags=0{flags:o} {}x{} lflag={:#o}{}",
            state.winsize[1],
            state.winsize[0],
            state.lflag,
            if *ctty {
                format!(" controlling terminal, foreground group {fg_pgrp}")
            } else {
                String::new()
            }
        ),
    }
}

/// Armed timers on one line: `real 1.500s/0.050s` (time left / interval),
/// then POSIX timers as `#id 0.040s/0.040s`.
fn timers_line(p: &ProcessMeta) -> String {
    const NAMES: [&str; 3] = ["real", "virtual", "prof"];
    let secs = |ns: u64| format!("{}.{:03}s", ns / 1_000_000_000, ns / 1_000_000 % 1000);
    let mut parts: Vec<String> = p
        .itimers
        .iter()
        .map(|t| {
            let name = NAMES.get(t.which as usize).copied().unwrap_or("?");
            format!(
                "{name} {}/{}",
                secs(t.value_us.saturating_mul(1000)),
                secs(t.interval_us.saturating_mul(1000))
            )
        })
        .collect();
    parts.extend(
        p.posix_timers
            .iter()
            .map(|t| format!("#{} {}/{}", t.id, secs(t.value_ns), secs(t.interval_ns))),
    );
    parts.join(", ")
}

/// The text form `hiber inspect` prints.
impl fmt::Display for ImageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.identity;
        writeln!(f, "image      {}", self.path)?;
        writeln!(
            f,
            "format     version {}, {}, {}",
            self.format_version,
            if self.compressed {
                "compressed (zstd)"
            } else {
                "uncompressed"
            },
            if self.page_aligned {
                "page-aligned (mappable)"
            } else {
                "packed"
            }
        )?;
        writeln!(f, "program    {}", id.program)?;
        writeln!(
            f,
            "pid        {} (real {}), process id {}",
            id.virtual_pid, id.real_pid, id.process_id
        )?;
        writeln!(f, "host       {}", id.hostname)?;
        writeln!(f, "kernel     {}", id.kernel_release)?;
        writeln!(f, "glibc      {}", id.glibc_version)?;
        writeln!(
            f,
            "computation {:#x}, generation {}",
            id.computation, id.generation
        )?;
        writeln!(f, "created    {}", self.created)?;
        writeln!(
            f,
            "vdso       {} bytes (crc {:#010x}), vvar {} bytes, vvar_vclock {} bytes",
            id.vdso.vdso_len, id.vdso.vdso_crc, id.vdso.vvar_len, id.vdso.vvar_vclock_len
        )?;
        if let Some(p) = &self.process {
            writeln!(f, "argv       {}", p.argv.join(" "))?;
            writeln!(f, "cwd        {}", p.cwd)?;
            if !p.itimers.is_empty() || !p.posix_timers.is_empty() {
                writeln!(f, "timers     {}", timers_line(p))?;
            }
        }

        writeln!(f, "\nareas ({}):", self.areas.len())?;
        for a in &self.areas {
            write!(
                f,
                "  {:>18}-{:<18} {} {:>10} {:<11} stored {:>10}",
                a.start,
                a.end,
                a.perms,
                human(a.size),
                a.kind,
                human(a.stored_bytes)
            )?;
            if !a.path.is_empty() {
                write!(f, "  {}", a.path)?;
            }
            writeln!(f)?;
        }

        writeln!(f, "\nthreads ({}):", self.threads.len())?;
        for t in &self.threads {
            let role = match (t.is_main, t.is_agent) {
                (true, _) => " main",
                (_, true) => " agent",
                _ => "",
            };
            writeln!(
                f,
                "  tid {:<7} {:<16}{role} rip {:#x} rsp {:#x}",
                t.tid, t.name, t.rip, t.rsp
            )?;
        }

        writeln!(f, "\nfds ({}):", self.fds.len())?;
        for d in &self.fds {
            writeln!(
                f,
                "  {:>4} {:<6}{} {}",
                d.fd,
                d.kind.name(),
                if d.cloexec { " cloexec" } else { "" },
                fd_description(&d.kind)
            )?;
        }

        let t = &self.totals;
        writeln!(
            f,
            "\ntotal      {} areas ({} mapped), {} chunks, {} of memory in {} stored (ratio {:.2}), file {}",
            t.areas,
            human(t.mapped_bytes),
            t.chunks,
            human(t.memory_bytes),
            human(t.stored_bytes),
            t.compression_ratio,
            human(self.file_bytes)
        )
    }
}
