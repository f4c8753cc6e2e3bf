//! Interval timers (`alarm`, `setitimer`) and POSIX timers (`timer_create`).
//!
//! Captured with raw `getitimer`/`timer_gettime` while the program's threads
//! are stopped, so each timer's time left is what the program would have
//! seen at that instant; the list of POSIX timers, with how each notifies,
//! comes from `/proc/self/timers`. A restart re-arms every timer with that
//! time left: like DMTCP and CRIU, a timer's remaining time is frozen across
//! the time the process was down (an `alarm(10)` with 4 s left fires 4 s
//! after the restart, however long the image sat on disk; an absolute
//! `TIMER_ABSTIME` deadline moves by the same amount). CPU-time timers
//! count from the restarted process's CPU time on, which is what they
//! measure anyway. Overrun counts start again from 0; a timer signal that
//! was pending is re-posted by the signals mechanism as a plain signal.
//!
//! POSIX timers keep their ids (the program holds them as `timer_t`):
//! with `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.15+) `timer_create` takes
//! the id wanted from its `timer_t` argument; without it, timers are
//! created in id order and the ones below the id wanted deleted again (the
//! kernel hands out ids from a per-process counter), with a warning.
//! `SIGEV_THREAD_ID` timers target the thread's tid after the restart.
//! glibc's `SIGEV_THREAD` timers (a kernel timer aimed at glibc's helper
//! thread) are recreated the same way but are not supported: a warning
//! says so. (That helper thread blocks every signal, the checkpoint signal
//! too, so a checkpoint of such a program does not get that far yet.)

use hiber_image::meta::{Itimer, PosixTimer};
use hiber_sys::{Itimerspec, Itimerval, KernelSigevent, Timespec, Timeval};

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
/// glibc's `SIGTIMER`: the signal of its `SIGEV_THREAD` timers.
const GLIBC_SIGTIMER: i32 = 32;
/// In a CPU-time clock id, the bit that makes it a thread's clock.
const CPUCLOCK_PERTHREAD: i32 = 4;
/// Ids tried one after the other when the kernel cannot be told an id.
const MAX_ID_STEPS: u32 = 1 << 16;

fn us(tv: Timeval) -> u64 {
    (tv.sec.max(0) as u64)
        .saturating_mul(1_000_000)
        .saturating_add(tv.usec.max(0) as u64)
}

fn ns(ts: Timespec) -> u64 {
    (ts.sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.nsec.max(0) as u64)
}

fn timeval(us: u64) -> Timeval {
    Timeval {
        sec: (us / 1_000_000) as i64,
        usec: (us % 1_000_000) as i64,
    }
}

fn timespec(ns: u64) -> Timespec {
    Timespec {
        sec: (ns / 1_000_000_000) as i64,
        nsec: (ns % 1_000_000_000) as i64,
    }
}

/// The armed `setitimer` timers.
pub fn save_itimers() -> Vec<Itimer> {
    (0..3u32)
        .filter_map(|which| {
            let v = hiber_sys::getitimer(which).ok()?;
            let (value_us, interval_us) = (us(v.value), us(v.interval));
            (value_us != 0 || interval_us != 0).then_some(Itimer {
                which,
                value_us,
                interval_us,
            })
        })
        .collect()
}

/// One record of `/proc/self/timers`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Listed {
    id: i32,
    signo: i32,
    sigev_value: u64,
    notify: i32,
    /// The pid (or, for `SIGEV_THREAD_ID`, tid) the timer notifies.
    target: u32,
    clock: i32,
}

/// Parses `/proc/PID/timers`:
/// `ID: 0`, `signal: 36/000000001234abcd`, `notify: signal/tid.812`,
/// `ClockID: 1`, one group of lines per timer.
fn parse_listing(text: &str) -> Vec<Listed> {
    let mut out: Vec<Listed> = Vec::new();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        if key == "ID" {
            out.push(Listed {
                id: val.parse().unwrap_or(-1),
                ..Listed::default()
            });
            continue;
        }
        let Some(t) = out.last_mut() else { continue };
        match key {
            "signal" => {
                let (sig, value) = val.split_once('/').unwrap_or((val, "0"));
                t.signo = sig.parse().unwrap_or(0);
                t.sigev_value = u64::from_str_radix(value, 16).unwrap_or(0);
            }
            "notify" => {
                let (kind, who) = val.split_once('/').unwrap_or((val, ""));
                let base = match kind {
                    "none" => SIGEV_NONE,
                    "thread" => SIGEV_THREAD,
                    _ => SIGEV_SIGNAL,
                };
                let thread = who.starts_with("tid.");
                t.notify = if thread { base | SIGEV_THREAD_ID } else { base };
                t.target = who
                    .split_once('.')
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0);
            }
            "ClockID" => t.clock = val.parse().unwrap_or(0),
            _ => {}
        }
    }
    out.retain(|t| t.id >= 0);
    out
}

/// The POSIX timers, in id order, with the time left on each.
pub fn save_posix_timers() -> Vec<PosixTimer> {
    let text = std::fs::read_to_string("/proc/self/timers").unwrap_or_default();
    let mut out: Vec<PosixTimer> = parse_listing(&text)
        .into_iter()
        .filter_map(|l| {
            let v = hiber_sys::timer_gettime(l.id).ok()?;
            Some(PosixTimer {
                id: l.id,
                clock: l.clock,
                notify: l.notify,
                signo: l.signo,
                sigev_value: l.sigev_value,
                tid: if l.notify & SIGEV_THREAD_ID != 0 {
                    l.target
                } else {
                    0
                },
                value_ns: ns(v.value),
                interval_ns: ns(v.interval),
            })
        })
        .collect();
    out.sort_by_key(|t| t.id);
    out
}

/// A thread's (or the process's: the main thread's) id after the restart.
fn new_tid(old: u32) -> Option<u32> {
    use std::sync::atomic::Ordering::Relaxed;
    crate::threads::suspend::slots()
        .iter()
        .find(|s| s.tid.load(Relaxed) == old)
        .map(|s| s.new_tid.load(Relaxed))
        .filter(|&t| t != 0)
}

/// The clock to create `t` on: a CPU-time clock naming a thread or
/// process by id (`~id << 3 | flags`) gets that id after the restart.
fn clock_of(t: &PosixTimer, warnings: &mut Vec<String>) -> i32 {
    if t.clock >= 0 {
        return t.clock;
    }
    let id = !(t.clock >> 3);
    if id == 0 {
        if t.clock & CPUCLOCK_PERTHREAD != 0 {
            warnings.push(format!(
                "POSIX timer {} counts the CPU time of the thread that created it, which \
                 the kernel does not tell: it now counts the checkpoint thread's",
                t.id
            ));
        }
        return t.clock;
    }
    match new_tid(id as u32) {
        Some(n) => (!(n as i32) << 3) | (t.clock & 7),
        None => t.clock,
    }
}

/// What the timer notifies, with a `SIGEV_THREAD_ID` target's new tid.
fn sigevent_of(t: &PosixTimer, warnings: &mut Vec<String>) -> KernelSigevent {
    let mut ev = KernelSigevent {
        value: t.sigev_value,
        signo: t.signo,
        notify: t.notify,
        ..KernelSigevent::default()
    };
    if t.notify & SIGEV_THREAD_ID == 0 {
        return ev;
    }
    if t.signo == GLIBC_SIGTIMER {
        warnings.push(format!(
            "POSIX timer {} is a SIGEV_THREAD timer (glibc's helper thread): \
             recreated, but such timers are not supported",
            t.id
        ));
    }
    match new_tid(t.tid) {
        Some(tid) => ev.tid = tid as i32,
        None => {
            // Its thread exited before the checkpoint: the timer could
            // notify nobody. Keep the id and the time left.
            warnings.push(format!(
                "POSIX timer {}: its thread {} is gone; recreated without notification",
                t.id, t.tid
            ));
            ev.notify = SIGEV_NONE;
        }
    }
    ev
}

/// Creates `t` with the id it had. `exact`: the kernel takes the id wanted.
fn create(t: &PosixTimer, exact: bool, warnings: &mut Vec<String>) -> Result<i32, String> {
    let ev = sigevent_of(t, warnings);
    let clock = clock_of(t, warnings);
    if exact {
        let mut id = t.id;
        hiber_sys::timer_create(clock, &ev, &mut id)
            .map_err(|e| format!("cannot recreate POSIX timer {}: {e}", t.id))?;
        return Ok(id);
    }
    for _ in 0..MAX_ID_STEPS {
        let mut id = 0;
        hiber_sys::timer_create(clock, &ev, &mut id)
            .map_err(|e| format!("cannot recreate POSIX timer {}: {e}", t.id))?;
        if id >= t.id {
            if id != t.id {
                warnings.push(format!("POSIX timer {} was recreated as {id}", t.id));
            }
            return Ok(id);
        }
        let _ = hiber_sys::timer_delete(id);
    }
    Err(format!(
        "cannot recreate POSIX timer {}: id not reached after {MAX_ID_STEPS} tries",
        t.id
    ))
}

/// Time to the first expiry: a periodic timer whose signal was pending
/// (not yet re-armed) at the checkpoint waits one interval.
fn first_expiry(value: u64, interval: u64) -> u64 {
    if value == 0 { interval } else { value }
}

pub fn restore(itimers: &[Itimer], posix: &[PosixTimer]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut timers: Vec<&PosixTimer> = posix.iter().collect();
    timers.sort_by_key(|t| t.id);
    let exact = !timers.is_empty() && hiber_sys::timer_create_restore_ids(true).is_ok();
    if !exact && !timers.is_empty() {
        warnings.push(
            "the kernel cannot recreate a POSIX timer with a given id \
             (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15+): creating them in id order"
                .into(),
        );
    }
    let mut created = Vec::with_capacity(timers.len());
    for t in timers {
        match create(t, exact, &mut warnings) {
            Ok(id) => created.push((id, t)),
            Err(e) => warnings.push(e),
        }
    }
    if exact {
        let _ = hiber_sys::timer_create_restore_ids(false);
    }
    // Armed only once all exist, and the interval timers last: the time
    // the creation took does not count.
    for (id, t) in created {
        let value = first_expiry(t.value_ns, t.interval_ns);
        if value == 0 {
            continue;
        }
        let spec = Itimerspec {
            interval: timespec(t.interval_ns),
            value: timespec(value),
        };
        if let Err(e) = hiber_sys::timer_settime(id, 0, &spec) {
            warnings.push(format!("cannot re-arm POSIX timer {}: {e}", t.id));
        }
    }
    for t in itimers {
        let v = Itimerval {
            interval: timeval(t.interval_us),
            value: timeval(first_expiry(t.value_us, t.interval_us)),
        };
        if let Err(e) = hiber_sys::setitimer(t.which, &v) {
            warnings.push(format!("cannot re-arm interval timer {}: {e}", t.which));
        }
    }
    warnings
}

/// `alarm`, `setitimer` and POSIX timers as a mechanism.
pub struct Timers;

impl crate::mechanisms::Mechanism for Timers {
    fn name(&self) -> &'static str {
        "timers"
    }

    fn capture(&self, ctx: &mut crate::mechanisms::Capture<'_>) -> Result<(), String> {
        ctx.saved.process.itimers = save_itimers();
        ctx.saved.process.posix_timers = save_posix_timers();
        Ok(())
    }

    fn restore(&self, ctx: &mut crate::mechanisms::Restore<'_>) {
        let p = &ctx.saved.process;
        ctx.warnings.extend(restore(&p.itimers, &p.posix_timers));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_proc_timers() {
        let text = "ID: 43\nsignal: 14/0000000000000000\nnotify: signal/pid.10353\nClockID: 0\n\
                    ID: 1\nsignal: 10/000000001234abcd\nnotify: signal/tid.10354\nClockID: -6\n\
                    ID: 2\nsignal: 0/0000000000000000\nnotify: none/pid.10353\nClockID: 1\n";
        let l = parse_listing(text);
        assert_eq!(l.len(), 3);
        assert_eq!(
            l[0],
            Listed {
                id: 43,
                signo: 14,
                sigev_value: 0,
                notify: SIGEV_SIGNAL,
                target: 10353,
                clock: 0
            }
        );
        assert_eq!(l[1].notify, SIGEV_SIGNAL | SIGEV_THREAD_ID);
        assert_eq!(l[1].sigev_value, 0x1234_abcd);
        assert_eq!(l[1].target, 10354);
        assert_eq!(l[1].clock, -6);
        assert_eq!(l[2].notify, SIGEV_NONE);
    }

    #[test]
    fn pending_periodic_timer_waits_an_interval() {
        assert_eq!(first_expiry(0, 50), 50);
        assert_eq!(first_expiry(7, 50), 7);
        assert_eq!(first_expiry(0, 0), 0);
    }
}
